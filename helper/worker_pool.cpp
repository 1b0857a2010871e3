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

namespace {

// The workers the pool starts with.
unsigned started_workers(const PoolOptions &options)
{
	return std::max(options.workers, 1U);
}

} // namespace

unsigned pool_max_workers(const PoolOptions &options)
{
	return std::max(options.max_workers != 0 ? options.max_workers
						 : 2 * started_workers(options),
			started_workers(options));
}

WorkerPool::WorkerPool(const PoolOptions &options, const Logger &log, Notify notify,
		       Notify copies_started)
	: log_(log), options_(options), notify_(std::move(notify)),
	  copies_started_(std::move(copies_started)), cpus_(usable_cpus()),
	  max_workers_(pool_max_workers(options)),
	  // Pieces of one copy keep a CPU free for smbd: an SMB2 ECHO behind a
	  // 16 MiB chunk run on ext4 waited up to 4 ms (p99) with both CPUs of
	  // 2 copying it, 0.3 ms with one (docs/design.md).
	  scheduler_(started_workers(options),
		     // Not at(): the main thread may be appending meanwhile.
		     [this](std::size_t worker) { workers_[worker]->wake(); },
		     cpus_ > 1 ? cpus_ - 1 : 1)
{
	workers_.reserve(max_workers_);
	for (unsigned i = 0; i < started_workers(options); i++) {
		workers_.push_back(std::make_unique<Worker>(*this, i));
	}
	// From here on every worker has its thread id, policy and
	// capabilities: what the main thread and its guard see is final.
	for (const auto &worker : workers_) {
		worker->wait_ready();
		worker->go();
	}
}

WorkerPool::Worker &WorkerPool::add_worker()
{
	// The scheduler first: the new thread asks it for work by its index.
	const std::size_t index = scheduler_.add_worker();
	try {
		workers_.push_back(std::make_unique<Worker>(*this, index));
	} catch (...) {
		scheduler_.remove_last_worker(); // indexes stay those of workers_
		throw;
	}
	Worker &worker = *workers_.back();
	worker.wait_ready();
	worker.go();
	if (drain_limit_) {
		worker.post([&worker, limit = *drain_limit_] { worker.drain(limit); });
	}
	return worker;
}

std::vector<pid_t> WorkerPool::check_stalls(std::chrono::steady_clock::time_point now)
{
	std::vector<pid_t> added;
	if (options_.stall_timeout <= std::chrono::steady_clock::duration::zero()) {
		return added;
	}
	// Indexes: add_worker() appends to workers_.
	for (std::size_t i = 0; i < workers_.size(); i++) {
		std::optional<Worker::Stall> stall;
		try {
			stall = workers_[i]->check_stall(now, options_.stall_timeout);
		} catch (const std::exception &e) {
			log_.error("worker {}: cannot hold its filesystems: {}", i, e.what());
		}
		if (!stall) {
			continue;
		}
		const double seconds = std::chrono::duration<double>(stall->idle).count();
		if (stall->copy) {
			log_.warning("worker {}: {} of copy id={} for peer pid={} uid={} {} for "
				     "{:.1f} s: its filesystem may hang. Copies on it wait until "
				     "the worker goes again; its connections go to other workers",
				     i, stall->copy->checks ? "the checks" : "one piece",
				     stall->copy->request_id, stall->copy->client.pid,
				     stall->copy->client.uid,
				     stall->copy->checks ? "have not returned" : "has moved nothing",
				     seconds);
		} else {
			log_.warning("worker {}: no progress for {:.1f} s outside a copy (reading a "
				     "request, or closing files): a filesystem may hang. Its "
				     "connections go to other workers",
				     i, seconds);
		}
		if (workers_.size() < max_workers_) {
			try {
				added.push_back(add_worker().thread_id());
				log_.info("worker {} added in place of worker {}", workers_.size() - 1,
					  i);
			} catch (const std::exception &e) {
				log_.error("cannot add a worker in place of worker {}: {}", i,
					   e.what());
			}
		} else {
			log_.warning("no worker added in place of worker {}: {} already", i,
				     workers_.size());
		}
	}
	// Connections a stalled worker still has (given to it while every
	// worker was stalled, or its own) go to one that is not.
	const bool any_going = std::any_of(workers_.begin(), workers_.end(),
					   [](const auto &worker) { return !worker->stalled(); });
	for (const auto &worker : workers_) {
		if (any_going && worker->stalled() && worker->connection_count() > 0) {
			for (auto &connection : worker->give_up_connections()) {
				adopt(std::move(connection));
			}
		}
	}
	return added;
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

bool WorkerPool::stop_within(std::chrono::steady_clock::duration grace)
{
	for (const auto &worker : workers_) {
		worker->stop();
	}
	const auto until = std::chrono::steady_clock::now() + grace;
	for (;;) {
		if (std::all_of(workers_.begin(), workers_.end(),
				[](const auto &worker) { return worker->exited(); })) {
			return true;
		}
		if (std::chrono::steady_clock::now() >= until) {
			return false;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
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
	Worker *least = nullptr;
	for (const auto &worker : workers_) {
		// A stalled worker reads nothing until its piece returns; if all
		// are, the least loaded of them.
		const auto rank = [](const Worker &w) {
			return std::pair{w.stalled(), w.connection_count()};
		};
		if (least == nullptr || rank(*worker) < rank(*least)) {
			least = worker.get();
		}
	}
	least->give_connection(std::move(connection));
}

void WorkerPool::drain(int limit)
{
	drain_limit_ = limit;
	for (const auto &worker : workers_) {
		Worker *w = worker.get();
		w->post([w, limit] { w->drain(limit); });
	}
}

bool WorkerPool::drained() const
{
	// A stalled worker runs its drain when it goes again; the connections
	// it does not hold on to are drained where they move, and until then
	// their copies may not be counted.
	return drain_limit_ &&
	       std::all_of(workers_.begin(), workers_.end(), [](const auto &worker) {
		       return worker->stalled() ||
			      (worker->drained() && !worker->has_undrained_connections());
	       });
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
