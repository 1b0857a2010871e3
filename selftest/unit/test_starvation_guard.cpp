// The starvation guard for SCHED_IDLE workers, on real threads: a
// SCHED_IDLE thread that wants a CPU, normal threads that keep every CPU
// busy, and the kernel's own accounting of how long the first one waited.

#include "starvation_guard.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace std::chrono_literals;

namespace {

const Logger quiet(LogLevel::error, -1);
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

// Runs the guard every tick for `span`, as the daemon's main thread does.
void guard_for(StarvationGuard &guard, const std::vector<pid_t> &workers,
	       std::chrono::milliseconds span)
{
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
	auto self = sample_thread(current_thread_id());
	assert_true(self.has_value());
	assert_true(self->runnable); // this thread, reading
	assert_true(self->on_cpu.count() > 0);
	// No such thread in this process.
	assert_false(sample_thread(0).has_value());
}

// A SCHED_IDLE worker alone gets its CPU: it is not lifted.
void test_an_idle_worker_with_a_cpu_stays_idle(void **)
{
	Spinner worker(true);
	StarvationGuard guard(quiet, no_cgroup);
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
	StarvationGuard guard(quiet, no_cgroup);
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

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_what_starved_means),
		cmocka_unit_test(test_samples_a_thread),
		cmocka_unit_test(test_an_idle_worker_with_a_cpu_stays_idle),
		cmocka_unit_test(test_a_starved_worker_is_lifted_then_lowered),
	};
	return cmocka_run_group_tests_name("copyoffloadd_starvation_guard", tests, nullptr,
					   nullptr);
}
