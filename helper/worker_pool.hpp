// The workers: one thread per core (by default), each owning some of the
// client connections and an io_uring ring with registered buffers.
//
// A worker reads its connections' messages, turns their copies into
// tasks, and adds them to the scheduler shared by all workers; then it
// takes pieces from the scheduler, whichever copy they belong to, and
// runs them; the worker that completes a copy's last piece answers it.
// So a copy of one piece (smbd's 1 MiB chunk) is read, copied and
// answered on one thread with no hand-off, while the pieces of a larger
// copy spread over every idle worker. Between pieces a worker looks at its
// sockets, so new copies never wait for a long one to end.
//
// A worker stuck in the kernel (a hung NFS server or FUSE daemon, a disk
// that stopped answering) would keep its connections unread, and every
// worker that takes a piece of the same filesystem would follow. The main
// thread therefore looks for workers that have made no progress for the
// stall timeout (check_stalls()): the filesystems of the copy such a
// worker works on get no more pieces until it goes again
// (Scheduler::hold()), its connections go to the others (all but one it
// is stuck reading), and a worker is added in its place, up to as many
// again as the pool started with.
#pragma once

#include "connection.hpp"
#include "logging.hpp"
#include "scheduler.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace copyoffload {

// The CPUs this process may run on: its affinity mask, as a cpuset,
// systemd's CPUAffinity= or taskset leaves it, not every online CPU.
[[nodiscard]] unsigned usable_cpus();

struct PoolOptions {
	unsigned workers = 1;
	// Largest piece of data one worker moves in one go: what a copy is
	// split into and spread over the workers. 0: the engine's default.
	std::uint64_t segment_size = 0;
	unsigned queue_depth = 8;  // io_uring reads and writes in flight per worker
	bool idle_policy = false;  // SCHED_IDLE workers (else SCHED_OTHER)
	int nice = 0;              // added to the workers' nice value
	unsigned poll_usec = 0;    // look for work this long after a piece before sleeping
	// A worker with no progress for this long is stuck (check_stalls());
	// zero: never.
	std::chrono::steady_clock::duration stall_timeout{};
	// The most workers, with those added in place of stalled ones (0:
	// twice `workers`).
	unsigned max_workers = 0;

	// Whether the main thread looks at the workers for stalls while
	// copies are in flight.
	[[nodiscard]] bool stalls_watched() const
	{
		return stall_timeout > std::chrono::steady_clock::duration::zero();
	}
};

// The most workers a pool of `options` will have.
[[nodiscard]] unsigned pool_max_workers(const PoolOptions &options);

class WorkerPool {
public:
	// Called on a worker thread while watch() is on, after a copy was
	// answered, a connection closed or a drain finished, and when
	// options.stalls_watched() and a copy arrives while none is in flight
	// and the main thread's stall watch is not ticking: the main thread
	// wants to look again.
	using Notify = std::function<void()>;

	// `copies_started`: called on a worker thread whenever copies in
	// flight go from none to some (the starvation guard's wake-up); may be
	// empty.
	WorkerPool(const PoolOptions &options, const Logger &log, Notify notify,
		   Notify copies_started = {});
	// Stops and joins every worker; their connections close. Copies still
	// running stop at their next piece and are not answered.
	~WorkerPool();
	WorkerPool(const WorkerPool &) = delete;
	WorkerPool &operator=(const WorkerPool &) = delete;

	// Main thread: gives an accepted connection to the worker that has
	// the fewest, of those not stalled.
	void adopt(std::shared_ptr<Connection> connection);

	// Main thread, while copies are in flight: reports workers with no
	// progress for the stall timeout, holds their copies' filesystems,
	// adds a worker for each, up to the limit, and moves the connections
	// of stalled workers to others. Returns the thread ids of workers
	// added (for the idle cgroup).
	std::vector<pid_t> check_stalls(std::chrono::steady_clock::time_point now);
	// Workers stalled now.
	[[nodiscard]] unsigned stalled_workers() const { return stalled_workers_.load(); }
	// Main thread, at the end: asks every worker to stop and waits up to
	// `grace` for their threads to end (each closes its connections, and
	// with them the files they have registered). False if one has not
	// (stuck in the kernel, closing a file of a filesystem that hangs):
	// it cannot be joined.
	bool stop_within(std::chrono::steady_clock::duration grace);

	// Main thread, at shutdown: each worker reads up to `limit` messages
	// already waiting on each of its connections, starts those copies,
	// and from then on answers new copies ESHUTDOWN. Returns at once;
	// drained() turns true when every worker has done it or is stalled.
	void drain(int limit);
	[[nodiscard]] bool drained() const;

	void watch(bool on) { watching_.store(on); }

	// Main thread: whether it will wake up by itself for the stall
	// watch's next look. Cleared before it looks at jobs_in_flight() and
	// set after, while a worker counts a first copy in before it reads
	// this (both sequentially consistent): either the main thread sees
	// the copy or the worker sees it may sleep and wakes it. So a copy
	// that starts while the watch ticks costs no wake-up of the main
	// thread (one chunk per request would pay one per chunk).
	void stall_watch_ticking(bool on) { stall_watch_ticking_.store(on); }

	// Copies read and not yet answered (or dropped).
	[[nodiscard]] std::size_t jobs_in_flight() const { return jobs_in_flight_.load(); }
	[[nodiscard]] std::size_t connections() const;
	// Main thread: the workers started, those added for stalls included.
	[[nodiscard]] unsigned size() const { return static_cast<unsigned>(workers_.size()); }
	// The ids of the worker threads.
	[[nodiscard]] std::vector<pid_t> worker_threads() const;

private:
	class Worker;
	friend class Worker;

	void notify_if_watched();
	// Main thread: a worker more, in its loop once the scheduler knows it.
	Worker &add_worker();
	// Whether the other workers' pieces leave no CPU for an smbd process
	// besides the caller's: then neither a worker that spins for the next
	// chunk nor an smbd that polls for its reply would gain one.
	// A worker stuck in a piece counts as busy here: the cost is a spin or
	// an smbd poll forgone.
	[[nodiscard]] bool cpus_taken() const { return busy_workers_.load() + 2 > cpus_; }

	const Logger &log_;
	PoolOptions options_;
	Notify notify_;
	Notify copies_started_;
	std::atomic<bool> watching_{false};
	std::atomic<bool> stall_watch_ticking_{false};
	std::atomic<std::size_t> jobs_in_flight_{0};
	// Workers running a piece right now, and the CPUs they share
	// (cpus_taken()).
	std::atomic<unsigned> busy_workers_{0};
	std::atomic<unsigned> stalled_workers_{0};
	unsigned cpus_;
	unsigned max_workers_; // those started, and as many for stalls
	std::optional<int> drain_limit_; // drain() was called (workers added later drain too)
	Scheduler scheduler_;
	// Last member: workers stop before anything they use goes. Its
	// capacity is reserved for max_workers_: workers wake each other by
	// index while the main thread adds one, so it never moves.
	std::vector<std::unique_ptr<Worker>> workers_;
};

} // namespace copyoffload
