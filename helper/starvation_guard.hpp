// Keeps SCHED_IDLE workers (--worker-policy idle) from starving.
//
// Under SCHED_IDLE a woken smbd takes a worker's CPU at once, but every
// other normal task goes first too: on CPUs that normal tasks keep busy
// the workers would get next to no time and their copies would hang while
// their clients wait. The guard thread (guard_thread.hpp) therefore looks,
// every tick while copies are in flight, at what the kernel says of each
// worker (/proc/self/task/TID/schedstat and stat): a worker starved if it
// waited for a CPU for most of the tick, or if it was runnable at both
// ends of the tick and ran for under a tenth of it (the kernel adds a wait
// to the run delay only once the thread runs again, so a thread that never
// runs shows none). Two starved ticks in a row (one could be a worker
// caught runnable twice between sleeps) lift every worker to SCHED_OTHER,
// keeping its nice value, and the workers' idle cgroup (--cpu-cgroup) to
// cpu.idle = 0, for a while; then both go back and the guard looks again.
//
// check() allocates nothing, takes no lock, opens nothing and writes no
// log: a starved worker may hold the allocator's locks, the process's
// memory map or a journal handle of the log's filesystem, and the guard
// must not wait for the very thread it is there to lift. What it did is
// counted in atomics, and report() logs it on the main thread.
#pragma once

#include "idle_cgroup.hpp"
#include "logging.hpp"
#include "unique_fd.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

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

// The kernel's files on one thread of this process, opened once: each
// sample() reads them again into a buffer on the stack.
class ThreadStats {
public:
	ThreadStats() = default; // none
	explicit ThreadStats(pid_t tid);

	[[nodiscard]] pid_t tid() const { return tid_; }
	// The thread now; nothing if it has gone (or never was, or its files
	// could not be opened).
	[[nodiscard]] std::optional<ThreadSample> sample() const;

private:
	pid_t tid_ = 0;
	UniqueFd schedstat_;
	UniqueFd stat_;
};

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
	// it must outlive the guard. `max_workers`: the most worker threads
	// check() is ever given.
	StarvationGuard(const IdleCgroup &cgroup, std::size_t max_workers);

	// One thread (the guard thread), about every tick while copies are in
	// flight or the workers are lifted; `workers`: the worker threads, in
	// the same order every time, those beyond max_workers ignored. True if
	// there is something for report().
	bool check(std::span<const ThreadStats> workers, Clock::time_point now);

	// The thread that calls check(), when no copy is in flight: what the
	// workers did until now says nothing of the next copy.
	void forget();

	// Main thread: logs what check() did since the last report.
	void report(const Logger &log);

	// Any thread: whether the workers run under SCHED_OTHER for now.
	[[nodiscard]] bool lifted() const { return lifted_.load(); }
	// Any thread: whether the guard gave up (the kernel refused a change).
	[[nodiscard]] bool off() const { return off_.load(); }
	[[nodiscard]] std::uint64_t lifts() const { return lifts_.load(); }

private:
	// Why the guard turned itself off, for report().
	struct Failure {
		pid_t tid = 0;  // the worker the kernel refused to move, else 0
		int policy = 0; // the policy it refused
		int cgroup_idle = 0; // else the cpu.idle value it refused
		int error = 0;
	};

	// Gives every worker `policy`; false (guard off) if the kernel refuses.
	bool set_policy(std::span<const ThreadStats> workers, int policy);
	// The idle cgroup's cpu.idle; false (guard off) if the kernel refuses.
	bool set_cgroup_idle(bool idle);
	void turn_off(const Failure &failure);
	void report_returns(const Logger &log);

	const IdleCgroup &cgroup_;
	const std::size_t max_workers_;
	// Each worker's sample at the last look, by its place in check()'s
	// list; max_workers_ of them from the start.
	std::vector<std::optional<ThreadSample>> last_;
	unsigned starved_ticks_ = 0;   // in a row
	Clock::time_point lifted_until_{};
	Clock::time_point last_check_{};

	// Written by check(), read by any thread.
	std::atomic<bool> lifted_{false};
	std::atomic<std::uint64_t> lifts_{0};
	std::atomic<std::uint64_t> returns_{0}; // back under SCHED_IDLE
	// The last lift's numbers, for its log line.
	std::atomic<std::int64_t> last_ran_ms_{0};
	std::atomic<std::int64_t> last_interval_ms_{0};
	Failure failure_;              // written once, before off_
	std::atomic<bool> off_{false}; // cannot read or change the workers

	// What report() has logged (main thread).
	std::uint64_t reported_lifts_ = 0;
	std::uint64_t reported_returns_ = 0;
	bool reported_off_ = false;
};

} // namespace copyoffload
