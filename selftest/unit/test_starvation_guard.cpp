// The starvation guard for SCHED_IDLE workers, on real threads: a
// SCHED_IDLE thread that wants a CPU, normal threads that keep every CPU
// busy, and the kernel's own accounting of how long the first one waited.

#include "guard_thread.hpp"
#include "starvation_guard.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace std::chrono_literals;

namespace {

const IdleCgroup no_cgroup; // the guard lifts only the workers

pid_t current_thread_id()
{
	return static_cast<pid_t>(::syscall(SYS_gettid));
}

unsigned usable_cpus()
{
	cpu_set_t set;
	CPU_ZERO(&set);
	assert_int_equal(::sched_getaffinity(0, sizeof(set), &set), 0);
	return static_cast<unsigned>(CPU_COUNT(&set));
}

// A thread that spins until told to stop: at nice 10 under SCHED_IDLE
// (a worker with work), or at normal priority (a hog).
class Spinner {
public:
	explicit Spinner(bool idle_worker)
		: thread_([this, idle_worker] {
			  if (idle_worker) {
				  ::setpriority(PRIO_PROCESS, 0, 10);
				  sched_param param{};
				  ::sched_setscheduler(0, SCHED_IDLE, &param);
			  }
			  id_.store(current_thread_id());
			  while (!stop_.load(std::memory_order_relaxed)) {
			  }
		  })
	{
		while (id_.load() == 0) {
			std::this_thread::sleep_for(1ms);
		}
	}
	~Spinner()
	{
		stop_.store(true);
		thread_.join();
	}
	Spinner(const Spinner &) = delete;
	Spinner &operator=(const Spinner &) = delete;

	[[nodiscard]] pid_t id() const { return id_.load(); }

private:
	std::atomic<bool> stop_{false};
	std::atomic<pid_t> id_{0};
	std::thread thread_;
};

// Runs the guard every tick for `span`, as the guard thread does.
void guard_for(StarvationGuard &guard, const std::vector<pid_t> &worker_ids,
	       std::chrono::milliseconds span)
{
	std::vector<ThreadStats> workers;
	for (pid_t id : worker_ids) {
		workers.emplace_back(id);
	}
	const auto end = StarvationGuard::Clock::now() + span;
	while (StarvationGuard::Clock::now() < end) {
		std::this_thread::sleep_for(StarvationGuard::tick);
		guard.check(workers, StarvationGuard::Clock::now());
	}
}

ThreadSample sample(std::chrono::nanoseconds on_cpu, std::chrono::nanoseconds waited,
		    bool runnable)
{
	return ThreadSample{on_cpu, waited, runnable};
}

void test_what_starved_means(void **)
{
	// Waited for a CPU for half the tick or more (a wait the kernel
	// accounts once the thread runs again).
	assert_false(starved(sample(0ms, 0ms, true), sample(50ms, 49ms, true), 100ms));
	assert_true(starved(sample(0ms, 0ms, false), sample(5ms, 50ms, false), 100ms));
	// Runnable at both ends and ran for under a tenth of the tick: it
	// waited the whole time, though no wait is accounted yet.
	assert_true(starved(sample(7ms, 3ms, true), sample(16ms, 3ms, true), 100ms));
	assert_false(starved(sample(7ms, 3ms, true), sample(17ms, 3ms, true), 100ms));
	// Asleep at either end (I/O, no work): not starved.
	assert_false(starved(sample(7ms, 3ms, false), sample(7ms, 3ms, true), 100ms));
	assert_false(starved(sample(7ms, 3ms, true), sample(7ms, 3ms, false), 100ms));
	// No interval: nothing to judge.
	assert_false(starved(sample(0ms, 0ms, true), sample(0ms, 9ms, true), 0ms));
}

void test_samples_a_thread(void **)
{
	const ThreadStats stats(current_thread_id());
	auto self = stats.sample();
	assert_true(self.has_value());
	assert_true(self->runnable); // this thread, reading
	assert_true(self->on_cpu.count() > 0);
	// Read again from the files kept open: the time only grows.
	auto again = stats.sample();
	assert_true(again.has_value());
	assert_true(again->on_cpu >= self->on_cpu);
	// No such thread in this process.
	assert_false(ThreadStats(0).sample().has_value());
	// A thread that has ended, its files opened while it ran. join()
	// returns when the thread's id is cleared, a little before the
	// kernel lets go of it.
	std::optional<ThreadStats> ended_stats;
	std::thread([&] { ended_stats.emplace(current_thread_id()); }).join();
	assert_true(ended_stats.has_value());
	const auto deadline = std::chrono::steady_clock::now() + 2s;
	while (ended_stats->sample() && std::chrono::steady_clock::now() < deadline) {
		std::this_thread::sleep_for(1ms);
	}
	assert_false(ended_stats->sample().has_value());
}

// A SCHED_IDLE worker alone gets its CPU: it is not lifted.
void test_an_idle_worker_with_a_cpu_stays_idle(void **)
{
	Spinner worker(true);
	StarvationGuard guard(no_cgroup, 1);
	guard_for(guard, {worker.id()}, 600ms);
	assert_false(guard.lifted());
	assert_int_equal(guard.lifts(), 0);
	assert_int_equal(::sched_getscheduler(worker.id()), SCHED_IDLE);
}

// Normal threads on every CPU starve the SCHED_IDLE worker: the guard
// lifts it to SCHED_OTHER with its nice value, and lowers it again once
// the lift is over and the CPUs are free.
void test_a_starved_worker_is_lifted_then_lowered(void **)
{
	Spinner worker(true);
	StarvationGuard guard(no_cgroup, 1);
	{
		// Two per CPU: whichever CPU the worker lands on has one,
		// however the kernel balances them.
		std::vector<std::unique_ptr<Spinner>> hogs;
		for (unsigned i = 0; i < 2 * usable_cpus(); i++) {
			hogs.push_back(std::make_unique<Spinner>(false));
		}
		guard_for(guard, {worker.id()}, 500ms);
		assert_true(guard.lifted());
		assert_int_equal(::sched_getscheduler(worker.id()), SCHED_OTHER);
		errno = 0;
		assert_int_equal(::getpriority(PRIO_PROCESS, static_cast<id_t>(worker.id())), 10);
	}
	guard_for(guard, {worker.id()}, StarvationGuard::lift_time + 300ms);
	assert_false(guard.lifted());
	assert_int_equal(::sched_getscheduler(worker.id()), SCHED_IDLE);
	assert_true(guard.lifts() >= 1);
}

// Spins until this thread has run for `cpu_time`.
void run_for(std::chrono::nanoseconds cpu_time)
{
	const auto used = [] {
		timespec now{};
		::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
		return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
	};
	const auto until = used() + cpu_time;
	while (used() < until) {
	}
}

// A starved SCHED_IDLE worker holds a lock the main thread waits for, as
// a worker preempted inside the allocator or the stall watch's mutex
// would: the guard, on a thread of its own, still lifts it, and the
// main thread gets the lock. (Under SCHED_IDLE beside a busy thread on
// every CPU the worker's 50 ms of CPU would take it half a minute.)
void test_the_guard_thread_lifts_while_the_main_thread_waits(void **)
{
	std::mutex lock;
	std::atomic<pid_t> worker_id{0};
	std::thread worker([&] {
		::setpriority(PRIO_PROCESS, 0, 10);
		sched_param param{};
		::sched_setscheduler(0, SCHED_IDLE, &param);
		const std::lock_guard holding(lock);
		worker_id.store(current_thread_id());
		run_for(50ms);
	});
	while (worker_id.load() == 0) {
		std::this_thread::sleep_for(1ms);
	}
	{
		std::vector<std::unique_ptr<Spinner>> hogs;
		for (unsigned i = 0; i < 2 * usable_cpus(); i++) {
			hogs.push_back(std::make_unique<Spinner>(false));
		}
		std::atomic<bool> copies_in_flight{true};
		std::atomic<unsigned> reports{0};
		GuardThread guard(
			no_cgroup, 1, [&] { return copies_in_flight.load(); }, [&] { reports++; });
		guard.watch(worker_id.load());
		guard.start();
		{
			const std::lock_guard waited(lock);
		}
		copies_in_flight.store(false);
		guard.stop();
		assert_true(guard.lifts() >= 1);
		assert_true(reports.load() >= 1);
	}
	worker.join();
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_what_starved_means),
		cmocka_unit_test(test_samples_a_thread),
		cmocka_unit_test(test_an_idle_worker_with_a_cpu_stays_idle),
		cmocka_unit_test(test_a_starved_worker_is_lifted_then_lowered),
		cmocka_unit_test(test_the_guard_thread_lifts_while_the_main_thread_waits),
	};
	return cmocka_run_group_tests_name("copyoffloadd_starvation_guard", tests, nullptr,
					   nullptr);
}
