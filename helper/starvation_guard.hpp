// Keeps SCHED_IDLE workers (--worker-policy idle) from starving.
//
// Under SCHED_IDLE a woken smbd takes a worker's CPU at once, but every
// other normal task goes first too: on CPUs that normal tasks keep busy
// the workers would get next to no time and their copies would hang while
// their clients wait. The main thread therefore looks, every tick while
// copies are in flight, at what the kernel says of each worker
// (/proc/self/task/TID/schedstat and stat): a worker starved if it waited
// for a CPU for most of the tick, or if it was runnable at both ends of
// the tick and ran for under a tenth of it (the kernel adds a wait to the
// run delay only once the thread runs again, so a thread that never runs
// shows none). Two starved ticks in a row (one could be a worker caught
// runnable twice between sleeps) lift every worker to SCHED_OTHER, keeping
// its nice value, and the workers' idle cgroup (--cpu-cgroup) to
// cpu.idle = 0, for a while; then both go back and the guard looks again.
#pragma once

#include "idle_cgroup.hpp"
#include "logging.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>

namespace copyoffload {

// What the kernel says of one thread at one moment.
struct ThreadSample {
	std::chrono::nanoseconds on_cpu{0}; // time run so far
	std::chrono::nanoseconds waited{0}; // time runnable without a CPU, once it ran
	bool runnable = false;              // running or waiting for a CPU now
};

// Whether a thread sampled `before` and, `interval` later, `after` starved.
[[nodiscard]] bool starved(const ThreadSample &before, const ThreadSample &after,
			   std::chrono::nanoseconds interval);

// Thread `tid` of this process now; nothing if it has gone.
[[nodiscard]] std::optional<ThreadSample> sample_thread(pid_t tid);

// Before the capabilities go: lets this process's threads move from
// SCHED_IDLE back to SCHED_OTHER at `nice` without CAP_SYS_NICE, by raising
// RLIMIT_NICE to 20 - nice. False if the limit stays lower (no
// CAP_SYS_RESOURCE to raise its hard limit, and none set by the service
// manager: LimitNICE=).
bool allow_lifting_to_nice(int nice);

class StarvationGuard {
public:
	using Clock = std::chrono::steady_clock;
	// How often the guard looks, and how long a lift lasts.
	static constexpr std::chrono::milliseconds tick{100};
	static constexpr std::chrono::milliseconds lift_time{1000};

	// `cgroup`: the workers' idle cgroup, lifted with them (may be none);
	// it must outlive the guard.
	StarvationGuard(const Logger &log, const IdleCgroup &cgroup) : log_(log), cgroup_(cgroup)
	{
	}

	// Main thread, about every tick while copies are in flight or the
	// workers are lifted; `workers`: the worker threads' ids.
	void check(std::span<const pid_t> workers, Clock::time_point now);

	// Main thread, when no copy is in flight: what the workers did until
	// now says nothing of the next copy.
	void forget()
	{
		samples_.clear();
		starved_ticks_ = 0;
	}

	// Whether the workers run under SCHED_OTHER for now.
	[[nodiscard]] bool lifted() const { return lifted_; }
	[[nodiscard]] std::uint64_t lifts() const { return lifts_; }

private:
	// Gives every worker `policy`; false (logged once, guard off) if the
	// kernel refuses.
	bool set_policy(std::span<const pid_t> workers, int policy);
	// The idle cgroup's cpu.idle; false (logged once, guard off) if the
	// kernel refuses.
	bool set_cgroup_idle(bool idle);

	const Logger &log_;
	const IdleCgroup &cgroup_;
	bool lifted_ = false;
	bool off_ = false; // cannot read or change the workers: said once
	std::uint64_t lifts_ = 0;
	unsigned starved_ticks_ = 0; // in a row
	Clock::time_point lifted_until_{};
	Clock::time_point last_check_{};
	std::unordered_map<pid_t, ThreadSample> samples_; // at last_check_
};

} // namespace copyoffload
