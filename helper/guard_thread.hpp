// The thread that runs the starvation guard (starvation_guard.hpp).
//
// Not the main thread: that one allocates, logs and takes the workers'
// locks, any of which a starved SCHED_IDLE worker may hold, preempted, for
// the seconds it waits for its next turn; a guard behind it would never
// lift it (seen: a copy that outlasted its client's 10 s under
// AddressSanitizer). This thread, created by the main thread, runs under
// SCHED_OTHER outside the workers' idle cgroup, sleeps while no copy is in
// flight, and otherwise only reads /proc, sets policies and pokes the
// main thread to log what it did.
#pragma once

#include "idle_cgroup.hpp"
#include "starvation_guard.hpp"
#include "unique_fd.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <stop_token>
#include <thread>
#include <vector>

namespace copyoffload {

class GuardThread {
public:
	// `busy`: whether copies are in flight (called on the guard thread);
	// `report`: the guard did something worth a log line (called on the
	// guard thread, so it must not block: write an eventfd). `cgroup` must
	// outlive this. Throws std::system_error if the eventfd cannot be made.
	GuardThread(const IdleCgroup &cgroup, std::size_t max_workers, std::function<bool()> busy,
		    std::function<void()> report);
	~GuardThread() { stop(); }

	GuardThread(const GuardThread &) = delete;
	GuardThread &operator=(const GuardThread &) = delete;

	// Main thread, once `busy` may be called. Throws std::system_error if
	// the thread cannot be started.
	void start();
	// Main thread: ends and joins the thread, before what `busy` reads goes.
	void stop();

	// Main thread: one more worker thread to look at (the first
	// max_workers are). Opens its files in /proc here, not on the guard
	// thread.
	void watch(pid_t tid);
	// Any thread, when copies in flight go from none to some: wakes the
	// guard if it sleeps.
	void copies_started();

	// Main thread: logs what the guard did since the last report.
	void report(const Logger &log) { guard_.report(log); }
	[[nodiscard]] std::uint64_t lifts() const { return guard_.lifts(); }

private:
	void run(const std::stop_token &stop);
	// Sleeps until woken or `timeout_ms` (-1: no limit) has passed.
	void wait(int timeout_ms);
	void wake();

	StarvationGuard guard_;
	std::function<bool()> busy_;
	std::function<void()> report_;
	UniqueFd wake_fd_; // eventfd: copies started, or stop
	// The first watched_ are set, each before watched_ counts it, and never
	// change after.
	std::vector<ThreadStats> workers_;
	std::atomic<std::size_t> watched_{0};
	std::atomic<bool> sleeping_{false};
	std::jthread thread_; // last: stopped before the members it uses go
};

} // namespace copyoffload
