#include "latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace copyoffload {

std::size_t LatencyHistogram::bucket_of(std::uint64_t usec)
{
	if (usec < exact_below) {
		return static_cast<std::size_t>(usec);
	}
	unsigned exponent = static_cast<unsigned>(std::bit_width(usec)) - 1; // >= 4
	if (exponent > top_exponent) {
		return bucket_count - 1;
	}
	unsigned sub = static_cast<unsigned>(usec >> (exponent - 3)) & (sub_buckets - 1);
	return exact_below + (exponent - 4) * sub_buckets + sub;
}

std::uint64_t LatencyHistogram::bucket_upper_bound(std::size_t bucket)
{
	if (bucket < exact_below) {
		return bucket;
	}
	if (bucket == bucket_count - 1) {
		return std::numeric_limits<std::uint64_t>::max();
	}
	std::size_t index = bucket - exact_below;
	unsigned exponent = 4 + static_cast<unsigned>(index / sub_buckets);
	std::uint64_t sub = index % sub_buckets;
	std::uint64_t width = std::uint64_t{1} << (exponent - 3);
	return (sub_buckets + sub) * width + width - 1;
}

void LatencyHistogram::record(std::uint64_t usec)
{
	counts_[bucket_of(usec)]++;
	count_++;
	max_ = std::max(max_, usec);
}

std::uint64_t LatencyHistogram::percentile(double quantile) const
{
	if (count_ == 0) {
		return 0;
	}
	auto rank = static_cast<std::uint64_t>(std::ceil(quantile * static_cast<double>(count_)));
	rank = std::clamp<std::uint64_t>(rank, 1, count_);
	std::uint64_t seen = 0;
	for (std::size_t bucket = 0; bucket < bucket_count; bucket++) {
		seen += counts_[bucket];
		if (seen >= rank) {
			return std::min(bucket_upper_bound(bucket), max_);
		}
	}
	return max_;
}

} // namespace copyoffload
