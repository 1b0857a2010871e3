#include "starvation_guard.hpp"

#include "device_privileges.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <string_view>

namespace copyoffload {

namespace {

UniqueFd open_thread_file(pid_t tid, const char *name)
{
	char path[64];
	std::snprintf(path, sizeof(path), "/proc/self/task/%d/%s", static_cast<int>(tid), name);
	return UniqueFd(::open(path, O_RDONLY | O_CLOEXEC));
}

// The file from its start, into `buffer`; empty if the thread has gone.
std::string_view read_from_start(const UniqueFd &file, std::span<char> buffer)
{
	if (!file) {
		return {};
	}
	const ssize_t got = ::pread(file.get(), buffer.data(), buffer.size(), 0);
	return got > 0 ? std::string_view(buffer.data(), static_cast<std::size_t>(got))
		       : std::string_view();
}

// The next space-separated number of `text`, which it then starts past.
std::optional<unsigned long long> next_number(std::string_view &text)
{
	while (!text.empty() && text.front() == ' ') {
		text.remove_prefix(1);
	}
	unsigned long long value = 0;
	const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (error != std::errc()) {
		return std::nullopt;
	}
	text.remove_prefix(static_cast<std::size_t>(end - text.data()));
	return value;
}

} // namespace

bool starved(const ThreadSample &before, const ThreadSample &after,
	     std::chrono::nanoseconds interval)
{
	if (interval.count() <= 0) {
		return false;
	}
	const bool waited_most = (after.waited - before.waited) * 2 >= interval;
	const bool never_ran = before.runnable && after.runnable &&
			       (after.on_cpu - before.on_cpu) * 10 < interval;
	return waited_most || never_ran;
}

ThreadStats::ThreadStats(pid_t tid)
	: tid_(tid),
	  schedstat_(open_thread_file(tid, "schedstat")),
	  stat_(open_thread_file(tid, "stat"))
{
}

std::optional<ThreadSample> ThreadStats::sample() const
{
	// "time on the CPU, time waiting on a run queue, timeslices", in ns.
	std::array<char, 96> schedstat_buffer;
	std::string_view schedstat = read_from_start(schedstat_, schedstat_buffer);
	const auto on_cpu = next_number(schedstat);
	const auto waited = next_number(schedstat);
	if (!on_cpu || !waited) {
		return std::nullopt;
	}
	// "pid (comm) state ...": the comm, at most 15 bytes, may hold
	// anything but ')', and no field after it holds one.
	std::array<char, 128> stat_buffer;
	const std::string_view stat = read_from_start(stat_, stat_buffer);
	const auto end_of_comm = stat.rfind(')');
	if (end_of_comm == std::string_view::npos || end_of_comm + 2 >= stat.size()) {
		return std::nullopt;
	}
	return ThreadSample{std::chrono::nanoseconds(*on_cpu), std::chrono::nanoseconds(*waited),
			    stat[end_of_comm + 2] == 'R'};
}

bool allow_lifting_to_nice(int nice)
{
	// The kernel lets a thread leave SCHED_IDLE for SCHED_OTHER at nice
	// value N if 20 - N <= RLIMIT_NICE (sched_setscheduler(2)).
	const rlim_t needed = static_cast<rlim_t>(20 - nice);
	rlimit limit{};
	if (::getrlimit(RLIMIT_NICE, &limit) != 0) {
		return false;
	}
	if (limit.rlim_cur >= needed) {
		return true;
	}
	limit.rlim_cur = needed;
	if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) {
		limit.rlim_max = needed;
	}
	return ::setrlimit(RLIMIT_NICE, &limit) == 0;
}

StarvationGuard::StarvationGuard(const IdleCgroup &cgroup, std::size_t max_workers)
	: cgroup_(cgroup), max_workers_(max_workers), last_(max_workers)
{
}

void StarvationGuard::forget()
{
	for (auto &sample : last_) {
		sample.reset();
	}
	starved_ticks_ = 0;
}

void StarvationGuard::turn_off(const Failure &failure)
{
	failure_ = failure;
	off_.store(true);
}

bool StarvationGuard::set_policy(std::span<const ThreadStats> workers, int policy)
{
	sched_param param{};
	// Leaving SCHED_IDLE takes RLIMIT_NICE or CAP_SYS_NICE; the daemon
	// keeps the capability permitted only when the limit could not be
	// raised (main.cpp), and it is effective only here.
	const device::ScopedCapability may_lift(CAP_SYS_NICE);
	for (const ThreadStats &worker : workers) {
		const pid_t tid = worker.tid();
		if (::sched_setscheduler(tid, policy, &param) != 0) {
			const int error = errno;
			if (error == ESRCH) {
				continue; // a worker that has just ended
			}
			turn_off(Failure{.tid = tid, .policy = policy, .error = error});
			return false;
		}
	}
	return true;
}

bool StarvationGuard::set_cgroup_idle(bool idle)
{
	if (cgroup_.set_idle(idle)) {
		return true;
	}
	turn_off(Failure{.cgroup_idle = idle ? 1 : 0, .error = errno});
	return false;
}

bool StarvationGuard::check(std::span<const ThreadStats> workers, Clock::time_point now)
{
	if (off_.load()) {
		return false;
	}
	workers = workers.first(std::min(workers.size(), max_workers_));
	bool returned = false;
	if (lifted_.load()) {
		if (now < lifted_until_) {
			return false;
		}
		lifted_.store(false);
		if (!set_policy(workers, SCHED_IDLE) || !set_cgroup_idle(true)) {
			return true;
		}
		returns_++;
		returned = true;
		forget(); // what they did while lifted does not count
	}

	const auto interval = now - last_check_;
	// Looks further apart than two ticks (a late guard thread) compare
	// samples too old to tell waiting from sleeping: start afresh.
	if (interval > 2 * tick) {
		forget();
	}
	bool any_starved = false;
	std::chrono::nanoseconds least_run = interval; // of the starved workers, for the log
	for (std::size_t i = 0; i < workers.size(); i++) {
		const auto sample = workers[i].sample();
		const auto &last = last_[i];
		if (sample && last && starved(*last, *sample, interval)) {
			any_starved = true;
			least_run = std::min<std::chrono::nanoseconds>(least_run,
								       sample->on_cpu - last->on_cpu);
		}
		last_[i] = sample; // none for a worker that has just ended
	}
	last_check_ = now;
	starved_ticks_ = any_starved ? starved_ticks_ + 1 : 0;
	if (starved_ticks_ < 2) {
		return returned;
	}
	if (!set_cgroup_idle(false) || !set_policy(workers, SCHED_OTHER)) {
		return true;
	}
	starved_ticks_ = 0;
	lifted_until_ = now + lift_time;
	last_ran_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(least_run).count());
	last_interval_ms_.store(
		std::chrono::duration_cast<std::chrono::milliseconds>(interval).count());
	lifted_.store(true);
	lifts_++;
	return true;
}

void StarvationGuard::report(const Logger &log)
{
	if (off_.load() && !reported_off_) {
		reported_off_ = true;
		if (failure_.tid != 0) {
			log.warning("cannot move worker thread {} to {}: {}; copies may starve "
				    "on busy CPUs (allow the workers' nice value with "
				    "RLIMIT_NICE, systemd: LimitNICE=, or use --worker-policy other)",
				    failure_.tid,
				    failure_.policy == SCHED_IDLE ? "SCHED_IDLE" : "SCHED_OTHER",
				    describe_errno(failure_.error));
		} else {
			log.warning("cannot set cpu.idle to {} in {}: {}; copies may starve on "
				    "busy CPUs",
				    failure_.cgroup_idle, cgroup_.directory(),
				    describe_errno(failure_.error));
		}
	}
	// Both may have happened since the last report: a return comes
	// before the lift that follows it, and after the lift it ends.
	const bool lifted_now = lifted();
	if (lifted_now) {
		report_returns(log);
	}
	if (const auto lifts = lifts_.load(); lifts > reported_lifts_) {
		// Once at info: it tells the admin the CPUs are saturated; then
		// in the debug log only, not ten lines a second.
		if (reported_lifts_ == 0) {
			log.info("a worker with work ran {} ms of the last {} ms under SCHED_IDLE, "
				 "waiting for a CPU: running the workers under SCHED_OTHER{} for "
				 "{} ms at a time while the CPUs stay this busy",
				 last_ran_ms_.load(), last_interval_ms_.load(),
				 cgroup_.in_use() ? " in a cgroup that is not idle" : "",
				 lift_time.count());
		} else {
			log.debug("workers starved (ran {} of {} ms): lifted again ({} times)",
				  last_ran_ms_.load(), last_interval_ms_.load(), lifts);
		}
		reported_lifts_ = lifts;
	}
	if (!lifted_now) {
		report_returns(log);
	}
}

void StarvationGuard::report_returns(const Logger &log)
{
	if (const auto returns = returns_.load(); returns > reported_returns_) {
		log.debug("workers back under SCHED_IDLE");
		reported_returns_ = returns;
	}
}

} // namespace copyoffload
