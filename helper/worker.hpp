// One worker thread of the pool: its epoll set (its connections and a
// wake-up eventfd), its copy engine (io_uring ring and registered
// buffers, made on this thread, which alone submits to it), and its loop:
// read the sockets that are ready, then run one piece, and again.
#pragma once

#include "copy_engine.hpp"
#include "unique_fd.hpp"
#include "worker_pool.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <unordered_map>
#include <vector>

namespace copyoffload {

class WorkerPool::Worker {
public:
	Worker(WorkerPool &pool, std::size_t index);
	// Stops the thread and joins it; its connections close.
	~Worker();
	Worker(const Worker &) = delete;
	Worker &operator=(const Worker &) = delete;

	// Any thread: runs `command` on this worker, soon.
	void post(std::function<void()> command);
	// Any thread: makes the worker look for work.
	void wake();
	// Main thread: asks the thread to end, then waits for it.
	void stop();
	void join();
	// Main thread: counts a connection about to be posted to adopt(), so
	// the next accept sees it.
	void expect_connection() { connection_count_++; }
	// Any thread: the worker thread's id, once it runs (else 0).
	[[nodiscard]] pid_t thread_id() const { return thread_id_.load(); }

	[[nodiscard]] std::size_t connection_count() const { return connection_count_.load(); }

	// Worker thread only (commands):
	void adopt(std::shared_ptr<Connection> connection);
	void drain(int limit);

private:
	void run(std::stop_token stop);
	// Gives this thread the pool's scheduling policy; a warning if the
	// kernel refuses.
	void lower_priority() const;
	// One turn of the loop: a piece, or a look at the sockets (`looked`:
	// the last turn looked). False on a fatal error.
	bool step(bool &looked);
	// Waits up to `timeout` ms (-1: until something happens) for the
	// sockets and commands, and handles them; false on a fatal error.
	int poll(int timeout);
	// Right after a piece, looks at the sockets without sleeping for up
	// to the pool's poll_usec: true when something came.
	bool spin();
	void run_commands();
	void handle(int fd, std::uint32_t events);
	void start(std::vector<CopyJob> &jobs);
	void execute(Scheduler::Assignment &assignment);
	void finish(CopyTask &task);
	void disconnect(int fd, const char *why);

	WorkerPool &pool_;
	std::size_t index_;
	UniqueFd epoll_;
	UniqueFd wake_; // eventfd
	std::unordered_map<int, std::shared_ptr<Connection>> connections_;
	std::atomic<std::size_t> connection_count_{0};
	std::atomic<pid_t> thread_id_{0};
	std::mutex commands_mutex_;
	std::vector<std::function<void()>> commands_;
	CopyEngine engine_;
	std::chrono::steady_clock::time_point last_piece_{};
	// Last member: joined before the rest goes.
	std::jthread thread_;
};

} // namespace copyoffload
