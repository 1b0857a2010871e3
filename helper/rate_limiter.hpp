// Bandwidth limit of one share, shared by all its copies on every
// connection: each slice of data reserves its transfer time at the share's
// rate and starts once the slices reserved before it have had theirs (a
// token bucket that holds one slice, so an idle share starts at once).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stop_token>

namespace copyoffload {

class RateLimiter {
public:
	using Clock = std::chrono::steady_clock;

	// Bytes per second; 0 lifts the limit. Takes effect for later slices,
	// and for what is booked and not yet due: its time is counted again at
	// the new rate, so raising the limit does not leave the share waiting
	// out bookings made at the old one.
	void set_rate(std::uint64_t bytes_per_second);
	[[nodiscard]] std::uint64_t rate() const { return rate_.load(); }

	// Reserves `bytes` and waits for their turn. False if `stop` was
	// requested before the wait was over.
	bool acquire(std::uint64_t bytes, const std::stop_token &stop);

	// The reservation alone: when `bytes` may start, given the time now.
	Clock::time_point reserve(std::uint64_t bytes, Clock::time_point now);

	// When the next reservation may start at once: the worker pool takes
	// a piece of a limited share only then, instead of having a worker
	// sleep in acquire(). The epoch when there is no limit.
	[[nodiscard]] Clock::time_point ready_at();

private:
	std::atomic<std::uint64_t> rate_{0};
	std::mutex mutex_;
	std::condition_variable_any wake_; // only a stop request wakes it early
	Clock::time_point next_free_{};
};

} // namespace copyoffload
