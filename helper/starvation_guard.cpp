#include "starvation_guard.hpp"

#include "device_privileges.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string>

namespace copyoffload {

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

std::optional<ThreadSample> sample_thread(pid_t tid)
{
	const std::string dir = "/proc/self/task/" + std::to_string(tid);
	// "time on the CPU, time waiting on a run queue, timeslices", in ns.
	std::ifstream schedstat(dir + "/schedstat");
	unsigned long long on_cpu = 0;
	unsigned long long waited = 0;
	if (!(schedstat >> on_cpu >> waited)) {
		return std::nullopt;
	}
	// "pid (comm) state ...": the comm may hold anything but ')'.
	std::ifstream stat_file(dir + "/stat");
	std::string stat;
	if (!std::getline(stat_file, stat)) {
		return std::nullopt;
	}
	const auto end_of_comm = stat.rfind(')');
	if (end_of_comm == std::string::npos || end_of_comm + 2 >= stat.size()) {
		return std::nullopt;
	}
	return ThreadSample{std::chrono::nanoseconds(on_cpu), std::chrono::nanoseconds(waited),
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

bool StarvationGuard::set_policy(std::span<const pid_t> workers, int policy)
{
	sched_param param{};
	// Leaving SCHED_IDLE takes RLIMIT_NICE or CAP_SYS_NICE; the daemon
	// keeps the capability permitted only when the limit could not be
	// raised (main.cpp), and it is effective only here.
	const device::ScopedCapability may_lift(CAP_SYS_NICE);
	for (pid_t tid : workers) {
		if (::sched_setscheduler(tid, policy, &param) != 0) {
			const int error = errno;
			if (error == ESRCH) {
				continue; // a worker that has just ended
			}
			log_.warning("cannot move worker thread {} to {}: {}; copies may starve "
				     "on busy CPUs (allow the workers' nice value with "
				     "RLIMIT_NICE, systemd: LimitNICE=, or use --worker-policy other)",
				     tid, policy == SCHED_IDLE ? "SCHED_IDLE" : "SCHED_OTHER",
				     describe_errno(error));
			off_ = true;
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
	log_.warning("cannot set cpu.idle to {} in {}: {}; copies may starve on busy CPUs",
		     idle ? 1 : 0, cgroup_.directory(), describe_errno(errno));
	off_ = true;
	return false;
}

void StarvationGuard::check(std::span<const pid_t> workers, Clock::time_point now)
{
	if (off_) {
		return;
	}
	if (lifted_) {
		if (now < lifted_until_) {
			return;
		}
		lifted_ = false;
		if (!set_policy(workers, SCHED_IDLE) || !set_cgroup_idle(true)) {
			return;
		}
		log_.debug("workers back under SCHED_IDLE");
		forget(); // what they did while lifted does not count
	}

	const auto interval = now - last_check_;
	// Looks further apart than two ticks (a late main thread) compare
	// samples too old to tell waiting from sleeping: start afresh.
	if (interval > 2 * tick) {
		forget();
	}
	bool any_starved = false;
	std::chrono::nanoseconds least_run = interval; // of the starved workers, for the log
	for (pid_t tid : workers) {
		const auto sample = sample_thread(tid);
		if (!sample) {
			continue; // a worker that has just ended
		}
		const auto before = samples_.find(tid);
		if (before != samples_.end() && starved(before->second, *sample, interval)) {
			any_starved = true;
			least_run = std::min<std::chrono::nanoseconds>(
				least_run, sample->on_cpu - before->second.on_cpu);
		}
		samples_[tid] = *sample;
	}
	last_check_ = now;
	starved_ticks_ = any_starved ? starved_ticks_ + 1 : 0;
	if (starved_ticks_ < 2 || !set_cgroup_idle(false) || !set_policy(workers, SCHED_OTHER)) {
		return;
	}
	starved_ticks_ = 0;
	lifted_ = true;
	lifted_until_ = now + lift_time;
	lifts_++;
	const auto ran_ms = std::chrono::duration_cast<std::chrono::milliseconds>(least_run);
	const auto interval_ms = std::chrono::duration_cast<std::chrono::milliseconds>(interval);
	// Once at info: it tells the admin the CPUs are saturated; then in
	// the debug log only, not ten lines a second.
	if (lifts_ == 1) {
		log_.info("a worker with work ran {} ms of the last {} ms under SCHED_IDLE, "
			  "waiting for a CPU: running the workers under SCHED_OTHER{} for {} ms "
			  "at a time while the CPUs stay this busy",
			  ran_ms.count(), interval_ms.count(),
			  cgroup_.in_use() ? " in a cgroup that is not idle" : "",
			  lift_time.count());
	} else {
		log_.debug("workers starved (ran {} of {} ms): lifted again ({} times)",
			   ran_ms.count(), interval_ms.count(), lifts_);
	}
}

} // namespace copyoffload
