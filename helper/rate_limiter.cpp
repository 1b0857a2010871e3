#include "rate_limiter.hpp"

#include <algorithm>
#include <limits>

namespace copyoffload {

namespace {

// Far enough ahead for any booking, and safe to add to a time point.
std::chrono::nanoseconds capped(unsigned __int128 ns)
{
	constexpr auto longest = static_cast<unsigned __int128>(
		std::numeric_limits<std::int64_t>::max() / 2);
	return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(ns, longest)));
}

std::chrono::nanoseconds transfer_time(std::uint64_t bytes, std::uint64_t rate)
{
	return capped(static_cast<unsigned __int128>(bytes) * 1'000'000'000u / rate);
}

} // namespace

void RateLimiter::set_rate(std::uint64_t bytes_per_second)
{
	std::lock_guard lock(mutex_);
	const std::uint64_t old = rate_.exchange(bytes_per_second);
	const Clock::time_point now = Clock::now();
	if (old == bytes_per_second || old == 0 || next_free_ <= now) {
		return; // with no limit before, nothing was booked
	}
	if (bytes_per_second == 0) {
		next_free_ = {};
		return;
	}
	const auto left = static_cast<std::uint64_t>((next_free_ - now).count());
	next_free_ = now + capped(static_cast<unsigned __int128>(left) * old / bytes_per_second);
}

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

RateLimiter::Clock::time_point RateLimiter::ready_at()
{
	if (rate_.load() == 0) {
		return {};
	}
	std::lock_guard lock(mutex_);
	return next_free_;
}

bool RateLimiter::acquire(std::uint64_t bytes, const std::stop_token &stop)
{
	const Clock::time_point now = Clock::now();
	const Clock::time_point start = reserve(bytes, now);
	// No wait due (no limit, or an idle share): return without touching the
	// condition variable. A wait_until for a time already past still
	// sleeps in the kernel for the timer slack (50 us by default), which
	// cost every unlimited copy that much per slice.
	if (start <= now) {
		return !stop.stop_requested();
	}
	std::unique_lock lock(mutex_);
	wake_.wait_until(lock, stop, start, [] { return false; });
	return !stop.stop_requested();
}

} // namespace copyoffload
