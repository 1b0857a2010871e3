// Fixed set of worker threads taking copy jobs from one FIFO queue. A job
// whose share is at its concurrency limit stays queued (it never fails for
// it) while later jobs of other shares go ahead.
#pragma once

#include "copy_job.hpp"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

namespace copyoffload {

class WorkerPool {
public:
	using JobHandler = std::function<void(CopyJob &)>;
	// Called on the worker after each job, once its descriptors are closed
	// and it no longer counts as running.
	using FinishedCallback = std::function<void()>;

	WorkerPool(unsigned workers, JobHandler handle_job, FinishedCallback job_finished);
	// Lets running jobs finish, drops queued ones, joins every worker.
	~WorkerPool();

	WorkerPool(const WorkerPool &) = delete;
	WorkerPool &operator=(const WorkerPool &) = delete;

	void submit(CopyJob job);

	// Discards queued jobs of a connection (closing their descriptors);
	// returns how many. Running ones are stopped via the connection.
	std::size_t drop_queued_jobs_for(const Connection &connection);

	[[nodiscard]] std::size_t jobs_in_flight() const; // queued + running
	[[nodiscard]] bool idle() const { return jobs_in_flight() == 0; }

private:
	void work(std::stop_token stop);
	// The first queued job its share lets run now; end() if none. Needs
	// mutex_.
	std::deque<CopyJob>::iterator next_runnable();

	JobHandler handle_job_;
	FinishedCallback job_finished_;
	mutable std::mutex mutex_;
	std::condition_variable_any work_available_;
	std::deque<CopyJob> queue_;
	std::size_t running_ = 0;
	// Last member: the threads are joined before anything they use dies.
	std::vector<std::jthread> workers_;
};

} // namespace copyoffload
