// One worker thread of the pool: its epoll set (its connections and a
// wake-up eventfd), its copy engine (io_uring ring and registered
// buffers, made on this thread, which alone submits to it), and its loop:
// read the sockets that are ready, then run one piece, and again.
#pragma once

#include "copy_engine.hpp"
#include "unique_fd.hpp"
#include "worker_pool.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <thread>
#include <unordered_map>
#include <vector>

namespace copyoffload {

class WorkerPool::Worker {
public:
	// The copy a worker works on, as a stall reports and holds it: taken on
	// the worker's thread, while the copy still has its files.
	struct CopyMark {
		std::uint64_t request_id = 0;
		PeerCredentials client;
		std::array<StallKey, 2> keys{};
		bool checks = false; // in its checks, before any piece
	};

	Worker(WorkerPool &pool, std::size_t index);
	// Stops the thread and joins it; its connections close.
	~Worker();
	Worker(const Worker &) = delete;
	Worker &operator=(const Worker &) = delete;

	// Any thread: runs `command` on this worker, soon.
	void post(std::function<void()> command);
	// Main thread: the worker reads this connection from now on.
	void give_connection(std::shared_ptr<Connection> connection);
	// Main thread: waits until the thread has set itself up (its id,
	// policy and capabilities are final).
	void wait_ready() { ready_.wait(); }
	// Any thread: makes the worker look for work.
	void wake();
	// Main thread: asks the thread to end, then waits for it.
	void stop();
	void join();
	// Any thread: whether the thread has left its loop (join() returns
	// at once).
	[[nodiscard]] bool exited() const { return exited_.load(); }
	// Main thread: lets the thread into its loop, once the pool knows it
	// (the scheduler may wake it from then on).
	void go()
	{
		go_ = true;
		go_.notify_one();
	}
	// Any thread: the worker thread's id, once it runs (else 0).
	[[nodiscard]] pid_t thread_id() const { return thread_id_.load(); }

	[[nodiscard]] std::size_t connection_count() const { return connection_count_.load(); }

	// A worker that has made no progress for longer than a stall, once:
	// the copy it is working on (its checks, a piece of it, or its reply),
	// if any, and for how long.
	struct Stall {
		std::optional<CopyMark> copy;
		std::chrono::steady_clock::duration idle;
	};
	// Main thread: whether the worker, awake (not waiting for work), has
	// neither come round its loop nor started a slice of a piece since
	// `now - timeout`, and was not reported yet. Its copy's filesystems
	// are held from then until it comes round its loop again.
	std::optional<Stall> check_stall(std::chrono::steady_clock::time_point now,
					 std::chrono::steady_clock::duration timeout);
	[[nodiscard]] bool stalled() const { return stalled_.load(); }
	// Any thread: whether drain() ran.
	[[nodiscard]] bool drained() const { return drained_.load(); }
	// Main thread: whether a connection given to this worker has not been
	// drained yet (moved here after drain() ran, and not yet adopted or
	// not yet read): until it is, its copies may not be counted.
	[[nodiscard]] bool has_undrained_connections();
	// Main thread, for a stalled worker: its connections, taken from its
	// epoll set, for other workers to adopt; not the one it is stuck
	// reading, if any.
	std::vector<std::shared_ptr<Connection>> give_up_connections();

	// Worker thread only (commands):
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
	// Takes the connections given to it into its epoll set (each leaves
	// incoming_ as it enters connections_: has_undrained_connections()
	// sees it in one or the other), then drains them if drain() ran.
	void adopt_incoming();
	// When the thread ends: lets go of every connection.
	void close_connections();
	// Takes `connection` into the epoll set; false if it cannot (the
	// client sees it close). Needs connections_mutex_.
	bool adopt(const std::shared_ptr<Connection> &connection);
	// A connection this worker reads now, and its reading() lock, which
	// goes first (members are destroyed in reverse): the last reference
	// may be this one.
	struct Claim {
		std::shared_ptr<Connection> connection;
		std::unique_lock<std::mutex> reading;
		explicit operator bool() const { return connection != nullptr; }
	};
	// The connection under `fd` if it is still this worker's, locked for
	// reading; else an empty claim.
	Claim claim(int fd);
	void handle(int fd, std::uint32_t events);
	// At shutdown: reads what waits on the connection under `fd` (up to the
	// drain's limit) and starts those copies; its later copies are refused.
	void drain_connection(int fd);
	// drain_connection() for each connection not drained yet.
	void drain_undrained();
	// Counts `count` copies in flight, before they are started: a drained
	// connection's copies must count before it says it is drained.
	void count_in_flight(std::size_t count);
	// Starts copies counted by count_in_flight().
	void start(std::vector<CopyJob> &jobs);
	// One job: parked if a stall holds its filesystem, else checked and
	// handed to the scheduler (or answered); dropped if its client went
	// away while it was parked.
	void start(CopyJob &job);
	void execute(Scheduler::Assignment &assignment);
	// At the top of the loop: progress; and if the worker had been
	// reported as stalled, the scheduler lets go of its filesystems.
	void come_round();
	void note_progress(std::chrono::steady_clock::time_point now)
	{
		progress_ = now.time_since_epoch().count();
	}
	// What a stall of a worker working on `copy` holds (none outside a copy).
	static std::span<const StallKey> keys_of(const std::optional<CopyMark> &copy);
	// The worker's note of the copy it works on (copy_), for as long as
	// it lives: execute()'s for a piece, then the reply, which looks at
	// the files and lets go of them; start()'s for a new copy's checks.
	class MarkedCopy {
	public:
		MarkedCopy(Worker &worker, const CopyMark &mark);
		~MarkedCopy();
		MarkedCopy(const MarkedCopy &) = delete;
		MarkedCopy &operator=(const MarkedCopy &) = delete;

	private:
		Worker &worker_;
	};
	void finish(CopyTask &task);
	// Needs the connection's reading() lock.
	void disconnect(int fd, const char *why);

	WorkerPool &pool_;
	std::size_t index_;
	UniqueFd epoll_;
	UniqueFd wake_; // eventfd
	// The worker's thread uses them; the main thread takes them from a
	// stalled worker (give_up_connections()). Held only to look up,
	// add or remove: reading a connection takes its own lock.
	std::mutex connections_mutex_;
	std::unordered_map<int, std::shared_ptr<Connection>> connections_;
	std::atomic<std::size_t> connection_count_{0};
	std::optional<int> drain_limit_; // worker thread: drain() ran
	// What check_stall() looks at: whether the worker waits for work, the
	// last time it came round its loop or woke up, and the copy it works
	// on (a piece or the reply; none: no copy).
	std::atomic<bool> sleeping_{false};
	std::atomic<std::chrono::steady_clock::rep> progress_{0};
	std::mutex stall_mutex_;
	std::optional<CopyMark> copy_; // what execute() works on
	std::optional<CopyMark> held_; // what a stall holds, if it holds
	std::chrono::steady_clock::time_point stalled_at_{};
	std::atomic<bool> stalled_{false};
	std::atomic<bool> drained_{false};
	std::atomic<bool> exited_{false};
	std::latch ready_{1};
	std::atomic<bool> go_{false}; // also set by stop(), if the pool never got that far
	std::atomic<pid_t> thread_id_{0};
	std::mutex commands_mutex_;
	std::vector<std::function<void()>> commands_;
	std::vector<std::shared_ptr<Connection>> incoming_; // given, not adopted yet
	CopyEngine engine_;
	std::chrono::steady_clock::time_point last_piece_{};
	// Last member: joined before the rest goes.
	std::jthread thread_;
};

} // namespace copyoffload
