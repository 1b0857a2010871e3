// The copies in flight and the order the workers take their pieces in.
//
// Fairness: copies are grouped by connection (one smbd process each), and
// the connections take turns, one piece each; within a connection its
// copies take turns too. So an smbd process with many copies queued gets
// no more of the workers than one with a single copy, and a large copy
// (the copyoffload tool's, or a clone-only request) cannot hold up the
// 1 MiB chunks of others for longer than one piece.
//
// Limits: a copy that has not started while its share is at its
// concurrency limit is passed over (never failed) until one of the
// share's copies finishes. A copy of a share with a bandwidth limit is
// passed over until the share's rate allows its next piece, whose time
// is reserved when it is taken: no worker sleeps for a limited share, so
// the other copies and the sockets go on meanwhile.
//
// Wake-ups: the worker that adds a copy asks for work itself right after,
// so only the pieces beyond the first wake other, idle workers; a copy of
// one piece (smbd's usual chunk) runs on the thread that read it, with no
// hand-off. When other pieces were queued already, that worker takes one of
// them first, so every piece of the new copy wakes an idle worker.
//
// Stalls: a worker that makes no progress on a copy for far longer than
// any slice should take (a hung NFS server, a FUSE daemon that stopped
// answering, a dead disk) holds the copy's two filesystems: no copy that
// touches one of them gets a piece until it goes again, so the hang keeps
// the workers it already has and takes no more of them
// (WorkerPool::check_stalls()).
#pragma once

#include "copy_job.hpp"

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace copyoffload {

// What a stall holds: a filesystem (its st_dev, inode 0), or a block
// device's node (devtmpfs's st_dev and the node's inode), since all nodes
// share one st_dev.
struct StallKey {
	dev_t device = 0;
	ino_t inode = 0;
	bool operator==(const StallKey &) const = default;
};

// The filesystems or devices a task's two files are on.
[[nodiscard]] std::array<StallKey, 2> stall_keys(const CopyTask &task);

// The same for a job before its checks: from its pair's checks if they
// were made (a registered pair: no syscall), else from the attributes the
// kernel has cached (statx AT_STATX_DONT_SYNC, which FUSE and NFS answer
// without asking their server; CIFS may still ask). No key for a
// descriptor missing or unreadable.
[[nodiscard]] std::array<StallKey, 2> new_copy_stall_keys(const CopyJob &job);

class Scheduler {
public:
	using WakeWorker = std::function<void(std::size_t worker)>;

	// `busy_limit`: idle workers are woken for a copy's further pieces only
	// while fewer workers than that are busy (WorkerPool: one CPU fewer
	// than the process may use, so smbd keeps one to answer its clients),
	// or than connections have pieces waiting.
	Scheduler(std::size_t workers, WakeWorker wake,
		  std::size_t busy_limit = std::numeric_limits<std::size_t>::max());
	Scheduler(const Scheduler &) = delete;
	Scheduler &operator=(const Scheduler &) = delete;

	// What a worker is handed: a piece of a task to run, or (no piece) a
	// task that is complete and must be finished.
	struct Assignment {
		std::shared_ptr<CopyTask> task;
		std::optional<CopyPiece> piece;
	};

	// A task with pieces to run, added by worker `self`, which asks for
	// work next.
	void add(std::shared_ptr<CopyTask> task, std::size_t self);

	// The next assignment for worker `self`; none marks it idle (it is
	// then woken when there is work). `retry` is set to when a copy held
	// back by its share's bandwidth limit may go on (the epoch: none is).
	using Clock = std::chrono::steady_clock;
	std::optional<Assignment> next(std::size_t self, Clock::time_point &retry);
	std::optional<Assignment> next(std::size_t self)
	{
		Clock::time_point ignored;
		return next(self, ignored);
	}

	// Worker `self`, which runs the first piece of `task`, made the
	// task's reservation (CopyTask::reserve()): its other pieces may go,
	// and idle workers are woken for them.
	void reserved(CopyTask &task, std::size_t self);

	// A piece ran. True when its task is now complete: the caller
	// finishes it.
	bool done(const Assignment &assignment, const PieceResult &result);

	// The connection went away: its copies that have not started are
	// dropped (no reply, no statistics; the returned tasks hold them
	// until the caller lets go), and those that did start take no more
	// pieces. Started copies that are complete now are returned too;
	// `finish` says which must be finished.
	struct Dropped {
		std::vector<std::shared_ptr<CopyTask>> unstarted;
		std::vector<std::shared_ptr<CopyTask>> finish;
	};
	Dropped drop(const Connection &connection);

	// Copies added and not yet complete.
	[[nodiscard]] std::size_t tasks() const;

	// A worker more, at the returned index: marked busy until it first
	// asks for work.
	std::size_t add_worker();
	// The worker last added could not be started after all.
	void remove_last_worker();

	// `worker` has made no progress for too long. `keys`: those of the
	// copy it works on (stall_keys(), or new_copy_stall_keys() in its
	// checks), noted by the worker as it took the copy (none for a worker
	// stalled outside a copy). Until release() of them, no
	// copy touching those filesystems gets a piece (unless its client is
	// gone: it still comes through to be completed), and the worker
	// counts as neither idle nor busy until it asks for work again.
	// release() wakes the idle workers for the copies it held back; the
	// jobs parked that no hold keeps any more are then taken one by one
	// (take_unparked()) by the caller, which starts them (checks them,
	// then add()).
	void hold(std::size_t worker, std::span<const StallKey> keys);
	void release(std::span<const StallKey> keys);
	// A parked job that no hold keeps any more; allocates nothing.
	[[nodiscard]] std::optional<CopyJob> take_unparked();

	// Whether any stall holds a filesystem now (without the lock: a hint,
	// so that copies need not look up their keys while none does).
	[[nodiscard]] bool holding() const { return holding_.load(); }

	// A worker, before a new copy's checks (`keys`: new_copy_stall_keys()):
	// if a stall holds one of the keys, the checks would hang on the same
	// filesystem, taking another worker. Then the job waits here, taking
	// none, until release() hands it back; returns true.
	bool park_if_held(std::span<const StallKey> keys, CopyJob &job);

private:
	struct Flow {
		const Connection *connection;
		std::deque<std::shared_ptr<CopyTask>> tasks;
	};

	// Needs mutex_: the first task that may take a piece now; with
	// `idle_tasks_only`, the first of those with no piece running.
	std::optional<Assignment> take(Clock::time_point now, Clock::time_point &retry,
				       bool idle_tasks_only);
	// Needs mutex_: whether the task's share's rate lets it have a piece
	// now; if not, `retry` moves up to when it will.
	static bool paced_ready(const CopyTask &task, Clock::time_point now,
				Clock::time_point &retry);
	void remove(std::list<Flow>::iterator flow, std::size_t index);
	// Needs mutex_: wakes up to `count` idle workers other than `self`.
	void wake_idle(std::size_t count, std::size_t self);
	// Needs mutex_: how many workers are idle now.
	[[nodiscard]] std::size_t idle_workers() const;
	// Needs mutex_: how many idle workers may be woken for pieces now.
	[[nodiscard]] std::size_t room_to_wake(std::size_t idle) const;
	[[nodiscard]] bool admits(const CopyTask &task) const;
	// Needs mutex_: whether a stall holds one of the task's files.
	[[nodiscard]] bool held(const CopyTask &task) const;
	[[nodiscard]] bool any_held(std::span<const StallKey> keys) const;
	void leave_share(const CopyTask &task);

	WakeWorker wake_;
	std::size_t busy_limit_;
	mutable std::mutex mutex_;
	std::list<Flow> flows_; // connections with tasks that want pieces, in turn order
	std::unordered_map<const Connection *, std::list<Flow>::iterator> by_connection_;
	std::vector<bool> idle_;
	std::size_t tasks_ = 0;
	// One entry per stalled worker's copy and file: a key held twice stays
	// held until both workers go again.
	std::vector<StallKey> held_;
	std::atomic<bool> holding_{false}; // !held_.empty()
	std::size_t stalled_ = 0; // stalled workers
	struct Parked {
		std::array<StallKey, 2> keys;
		CopyJob job;
	};
	std::vector<Parked> parked_;
};

} // namespace copyoffload
