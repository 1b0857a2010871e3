#include "guard_thread.hpp"

#include "device_privileges.hpp"
#include "privileges.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>

namespace copyoffload {

GuardThread::GuardThread(const IdleCgroup &cgroup, std::size_t max_workers,
			 std::function<bool()> busy, std::function<void()> report)
	: guard_(cgroup, max_workers),
	  busy_(std::move(busy)),
	  report_(std::move(report)),
	  wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
	  workers_(max_workers)
{
	if (!wake_fd_) {
		throw std::system_error(errno, std::generic_category(), "eventfd");
	}
}

void GuardThread::start()
{
	thread_ = std::jthread([this](const std::stop_token &stop) { run(stop); });
	// Named before start() returns, so no one sees it nameless.
	::pthread_setname_np(thread_.native_handle(), "guard"); // top -H, ps -L
}

void GuardThread::stop()
{
	if (thread_.joinable()) {
		thread_.request_stop();
		wake();
		thread_.join();
	}
}

void GuardThread::watch(pid_t tid)
{
	const std::size_t index = watched_.load();
	if (index < workers_.size()) {
		workers_[index] = ThreadStats(tid);
		watched_.store(index + 1); // after it: the guard reads it only then
	}
}

void GuardThread::copies_started()
{
	// Sequentially consistent with run(): either the guard sees the copy
	// before it sleeps, or this sees it sleeping.
	if (sleeping_.load()) {
		wake();
	}
}

void GuardThread::wake()
{
	// Fails only if the counter would overflow: the guard is due to wake.
	::eventfd_write(wake_fd_.get(), 1);
}

void GuardThread::wait(int timeout_ms)
{
	pollfd woken{.fd = wake_fd_.get(), .events = POLLIN, .revents = 0};
	if (::poll(&woken, 1, timeout_ms) > 0) {
		eventfd_t count = 0;
		::eventfd_read(wake_fd_.get(), &count);
	}
}

void GuardThread::run(const std::stop_token &stop)
{
	using Clock = StarvationGuard::Clock;
	// Born with the main thread's permitted set: CAP_SYS_NICE, where it
	// is kept, is for this thread; those for device copies are not.
	try {
		for (int capability : device::device_capabilities) {
			drop_thread_capability(capability);
		}
	} catch (const std::system_error &) {
		// capset() refuses to raise, never to drop: not reached.
	}
	auto next_check = Clock::now();
	while (!stop.stop_requested()) {
		// Given up (logged by report()), or nothing to look at.
		if (guard_.off() || (!busy_() && !guard_.lifted())) {
			guard_.forget();
			sleeping_.store(true);
			if ((guard_.off() || !busy_()) && !stop.stop_requested()) {
				wait(-1);
			}
			sleeping_.store(false);
			next_check = Clock::now() + StarvationGuard::tick;
			continue;
		}
		const auto now = Clock::now();
		if (now < next_check) {
			wait(static_cast<int>(
				std::chrono::ceil<std::chrono::milliseconds>(next_check - now).count()));
			continue;
		}
		const std::span<const ThreadStats> workers(workers_.data(), watched_.load());
		if (guard_.check(workers, now)) {
			report_();
		}
		next_check = now + StarvationGuard::tick;
	}
}

} // namespace copyoffload
