#include "worker_pool.hpp"

#include "worker.hpp"

#include <sched.h>

#include <algorithm>
#include <thread>

namespace copyoffload {

unsigned usable_cpus()
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
		return std::max(1U, std::thread::hardware_concurrency());
	}
	return static_cast<unsigned>(CPU_COUNT(&set));
}

WorkerPool::WorkerPool(const PoolOptions &options, const Logger &log, Notify notify)
	: log_(log), options_(options), notify_(std::move(notify)), cpus_(usable_cpus()),
	  started_(options.workers == 0 ? 1 : options.workers),
	  // Pieces of one copy keep a CPU free for smbd: an SMB2 ECHO behind a
	  // 16 MiB chunk run on ext4 waited up to 4 ms (p99) with both CPUs of
	  // 2 copying it, 0.3 ms with one (docs/design.md).
	  scheduler_(options.workers == 0 ? 1 : options.workers,
		     [this](std::size_t worker) { workers_.at(worker)->wake(); },
		     cpus_ > 1 ? cpus_ - 1 : 1)
{
	const unsigned count = options.workers == 0 ? 1 : options.workers;
	workers_.reserve(count);
	for (unsigned i = 0; i < count; i++) {
		workers_.push_back(std::make_unique<Worker>(*this, i));
	}
	// From here on every worker has its thread id, policy and
	// capabilities: what the main thread and its guard see is final.
	started_.wait();
}

WorkerPool::~WorkerPool()
{
	// All stop before any goes: a running worker may still wake another.
	for (const auto &worker : workers_) {
		worker->stop();
	}
	for (const auto &worker : workers_) {
		worker->join();
	}
	workers_.clear();
}

std::vector<pid_t> WorkerPool::worker_threads() const
{
	std::vector<pid_t> ids;
	for (const auto &worker : workers_) {
		if (pid_t id = worker->thread_id(); id != 0) {
			ids.push_back(id);
		}
	}
	return ids;
}

void WorkerPool::adopt(std::shared_ptr<Connection> connection)
{
	Worker *least = workers_.front().get();
	for (const auto &worker : workers_) {
		if (worker->connection_count() < least->connection_count()) {
			least = worker.get();
		}
	}
	least->expect_connection();
	least->post([least, connection = std::move(connection)]() mutable {
		least->adopt(std::move(connection));
	});
}

void WorkerPool::drain(int limit)
{
	drained_ = 0;
	for (const auto &worker : workers_) {
		Worker *w = worker.get();
		w->post([w, limit] { w->drain(limit); });
	}
}

bool WorkerPool::drained() const
{
	return drained_.load() == workers_.size();
}

std::size_t WorkerPool::connections() const
{
	std::size_t total = 0;
	for (const auto &worker : workers_) {
		total += worker->connection_count();
	}
	return total;
}

void WorkerPool::notify_if_watched()
{
	if (watching_.load()) {
		notify_();
	}
}

} // namespace copyoffload
