#include "rate_limiter.hpp"

#include <algorithm>
#include <limits>

namespace copyoffload {

namespace {

std::chrono::nanoseconds transfer_time(std::uint64_t bytes, std::uint64_t rate)
{
	unsigned __int128 ns = static_cast<unsigned __int128>(bytes) * 1'000'000'000u / rate;
	constexpr auto longest = static_cast<unsigned __int128>(
		std::numeric_limits<std::int64_t>::max() / 2);
	return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(ns, longest)));
}

} // namespace

RateLimiter::Clock::time_point RateLimiter::reserve(std::uint64_t bytes,
						    Clock::time_point now)
{
	std::uint64_t rate = rate_.load();
	std::lock_guard lock(mutex_);
	if (rate == 0) {
		return now;
	}
	Clock::time_point start = std::max(now, next_free_);
	next_free_ = start + transfer_time(bytes, rate);
	return start;
}

bool RateLimiter::acquire(std::uint64_t bytes, const std::stop_token &stop)
{
	Clock::time_point start = reserve(bytes, Clock::now());
	std::unique_lock lock(mutex_);
	wake_.wait_until(lock, stop, start, [] { return false; });
	return !stop.stop_requested();
}

} // namespace copyoffload
