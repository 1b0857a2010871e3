#include "worker_pool.hpp"

#include <algorithm>
#include <optional>

namespace copyoffload {

WorkerPool::WorkerPool(unsigned workers, JobHandler handle_job,
		       FinishedCallback job_finished)
	: handle_job_(std::move(handle_job)), job_finished_(std::move(job_finished))
{
	workers_.reserve(workers);
	for (unsigned i = 0; i < workers; i++) {
		workers_.emplace_back([this](std::stop_token stop) { work(stop); });
	}
}

WorkerPool::~WorkerPool()
{
	for (auto &worker : workers_) {
		worker.request_stop();
	}
	workers_.clear(); // joins
}

void WorkerPool::submit(CopyJob job)
{
	{
		std::lock_guard lock(mutex_);
		queue_.push_back(std::move(job));
	}
	work_available_.notify_one();
}

std::size_t WorkerPool::drop_queued_jobs_for(const Connection &connection)
{
	std::deque<CopyJob> dropped;
	{
		std::lock_guard lock(mutex_);
		auto first = std::stable_partition(
			queue_.begin(), queue_.end(), [&](const CopyJob &job) {
				return job.connection.get() != &connection;
			});
		std::move(first, queue_.end(), std::back_inserter(dropped));
		queue_.erase(first, queue_.end());
	}
	// The descriptors close here, outside the lock.
	return dropped.size();
}

std::size_t WorkerPool::jobs_in_flight() const
{
	std::lock_guard lock(mutex_);
	return queue_.size() + running_;
}

std::deque<CopyJob>::iterator WorkerPool::next_runnable()
{
	return std::find_if(queue_.begin(), queue_.end(), [](const CopyJob &job) {
		return !job.share.share || job.share.share->concurrency().admits();
	});
}

void WorkerPool::work(std::stop_token stop)
{
	for (;;) {
		std::optional<CopyJob> job;
		std::shared_ptr<ShareState> share;
		{
			std::unique_lock lock(mutex_);
			auto runnable = queue_.end();
			work_available_.wait(lock, stop, [&] {
				runnable = next_runnable();
				return runnable != queue_.end();
			});
			if (stop.stop_requested()) {
				return; // whatever is still queued is dropped with the pool
			}
			job.emplace(std::move(*runnable));
			queue_.erase(runnable);
			share = job->share.share;
			if (share) {
				share->concurrency().enter();
			}
			running_++;
		}
		handle_job_(*job);
		job.reset(); // closes leftover descriptors, releases the connection
		{
			std::lock_guard lock(mutex_);
			if (share) {
				share->concurrency().leave();
			}
			running_--;
		}
		// A job held back by its share's limit may run now. (A raised
		// limit is noticed here too: a job can only be held back while
		// another of its share runs.)
		work_available_.notify_all();
		job_finished_();
	}
}

} // namespace copyoffload
