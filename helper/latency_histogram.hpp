// Distribution of latencies in microseconds, in fixed memory: exact below
// 16 us, then 8 buckets per power of two up to 2^41 us (25 days; anything
// longer shares the last bucket). A percentile is reported as the upper
// bound of its bucket, capped at the largest value seen: never below the
// true value and at most 1/8 above it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace copyoffload {

class LatencyHistogram {
public:
	void record(std::uint64_t usec);

	[[nodiscard]] std::uint64_t count() const { return count_; }
	[[nodiscard]] std::uint64_t max() const { return max_; }
	// For 0 < quantile <= 1; 0 when nothing was recorded.
	[[nodiscard]] std::uint64_t percentile(double quantile) const;

	static constexpr unsigned exact_below = 16;
	static constexpr unsigned sub_buckets = 8; // per power of two
	static constexpr unsigned top_exponent = 40;
	// The last bucket holds everything from 2^(top_exponent + 1) on.
	static constexpr std::size_t bucket_count =
		exact_below + (top_exponent - 4 + 1) * sub_buckets + 1;

	static std::size_t bucket_of(std::uint64_t usec);
	static std::uint64_t bucket_upper_bound(std::size_t bucket);

private:
	std::array<std::uint64_t, bucket_count> counts_{};
	std::uint64_t count_ = 0;
	std::uint64_t max_ = 0;
};

} // namespace copyoffload
