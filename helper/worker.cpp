#include "worker.hpp"

#include "epoll_set.hpp"
#include "privileges.hpp"

#include <linux/capability.h>

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <system_error>

namespace copyoffload {

namespace {

// Counts a worker as running a piece for as long as it lives.
class BusyMark {
public:
	explicit BusyMark(std::atomic<unsigned> &busy) : busy_(busy) { busy_++; }
	~BusyMark() { busy_--; }
	BusyMark(const BusyMark &) = delete;
	BusyMark &operator=(const BusyMark &) = delete;

private:
	std::atomic<unsigned> &busy_;
};

constexpr std::uint32_t connection_events = EPOLLIN | EPOLLRDHUP;
// Read from a client that has gone: the socket's queue holds at most a few
// hundred messages, and it can send no more.
constexpr int messages_after_hangup = 4096;

// epoll_wait's timeout until `when` (the epoch: none, -1), rounded up so
// the wake-up is not early.
int timeout_until(Scheduler::Clock::time_point when)
{
	if (when == Scheduler::Clock::time_point{}) {
		return -1;
	}
	const auto left = when - Scheduler::Clock::now();
	if (left <= Scheduler::Clock::duration::zero()) {
		return 0;
	}
	return static_cast<int>(
		std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

} // namespace

WorkerPool::Worker::Worker(WorkerPool &pool, std::size_t index)
	: pool_(pool),
	  index_(index),
	  epoll_(checked_fd(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
	  wake_(checked_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
	  engine_(EngineOptions{.queue_depth = pool.options_.queue_depth})
{
	note_progress(std::chrono::steady_clock::now()); // not stalled before its loop
	epoll_add(epoll_.get(), wake_.get(), EPOLLIN);
	thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

WorkerPool::Worker::~Worker()
{
	stop();
	join();
}

void WorkerPool::Worker::stop()
{
	thread_.request_stop();
	go();
	wake();
}

void WorkerPool::Worker::join()
{
	if (thread_.joinable()) {
		thread_.join();
	}
}

void WorkerPool::Worker::post(std::function<void()> command)
{
	{
		std::lock_guard lock(commands_mutex_);
		commands_.push_back(std::move(command));
	}
	wake();
}

void WorkerPool::Worker::give_connection(std::shared_ptr<Connection> connection)
{
	connection_count_++; // seen by the next choice of worker at once
	{
		std::lock_guard lock(commands_mutex_);
		incoming_.push_back(std::move(connection));
	}
	wake();
}

void WorkerPool::Worker::wake()
{
	// Fails only when the counter would overflow: the worker is due to
	// wake up anyway.
	::eventfd_write(wake_.get(), 1);
}

void WorkerPool::Worker::run_commands()
{
	adopt_incoming();
	std::vector<std::function<void()>> commands;
	{
		std::lock_guard lock(commands_mutex_);
		commands.swap(commands_);
	}
	for (auto &command : commands) {
		command();
	}
}

void WorkerPool::Worker::adopt_incoming()
{
	// Those it cannot take close after the locks: closing a connection
	// closes the files it has registered, which may hang.
	std::vector<std::shared_ptr<Connection>> taken;
	{
		// In give_up_connections()'s order.
		std::lock_guard lock(connections_mutex_);
		std::lock_guard commands(commands_mutex_);
		taken.swap(incoming_);
		for (auto &connection : taken) {
			if (adopt(connection)) {
				connection.reset(); // connections_ has it
			}
		}
	}
	taken.clear();
	if (drain_limit_) {
		drain_undrained(); // moved here from a stalled worker after this one drained
	}
}

void WorkerPool::Worker::close_connections()
{
	std::unordered_map<int, std::shared_ptr<Connection>> connections;
	std::vector<std::shared_ptr<Connection>> incoming;
	{
		std::lock_guard lock(connections_mutex_);
		std::lock_guard commands(commands_mutex_);
		connections.swap(connections_);
		incoming.swap(incoming_);
	}
	for (const auto &entry : connections) {
		::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, entry.first, nullptr);
	}
}

void WorkerPool::Worker::lower_priority() const
{
	// The nice value counts under SCHED_OTHER: always with the other
	// policy, and with the idle one while the starvation guard lifts the
	// workers (starvation_guard.hpp).
	const Logger &log = pool_.log_;
	if (pool_.options_.nice != 0 &&
	    ::setpriority(PRIO_PROCESS, static_cast<id_t>(thread_id_.load()),
			  pool_.options_.nice) != 0) {
		log.warning("worker {}: cannot change its nice value by {}: {}", index_,
			    pool_.options_.nice, describe_errno(errno));
	}
	if (pool_.options_.idle_policy) {
		// Linux applies it to the calling thread only.
		sched_param param{};
		if (::sched_setscheduler(0, SCHED_IDLE, &param) != 0) {
			log.warning("worker {}: cannot take the SCHED_IDLE policy: {}", index_,
				    describe_errno(errno));
		}
	}
}

void WorkerPool::Worker::run(std::stop_token stop)
{
	const Logger &log = pool_.log_;
	thread_id_.store(static_cast<pid_t>(::syscall(SYS_gettid)));
	// What top -H and ps -L show for it (15 bytes at most).
	const std::string name = fmt::format("worker {}", index_);
	::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
	lower_priority();
	try {
		// Kept for the guard thread, if at all: not ours.
		drop_thread_capability(CAP_SYS_NICE);
	} catch (const std::exception &e) {
		log.error("worker {}: {}", index_, e.what());
	}
	ready_.count_down();
	// The ring is made here: only the thread that made it submits to it.
	log.debug("worker {}: read/write uses {}", index_, engine_.prepare());
	go_.wait(false);

	// Sleeps only when the scheduler has nothing; between two pieces it
	// takes a look at its sockets, so that new copies join the queue
	// while a long one runs. Right after a look it runs the next piece
	// without another: one chunk costs one epoll_wait.
	bool looked = true;
	while (!stop.stop_requested()) {
		try {
			if (!step(looked)) {
				break;
			}
		} catch (const std::exception &e) {
			// Only allocation fails here: what was being read or
			// added is lost (its client times out or reconnects),
			// the worker and its other connections go on.
			log.error("worker {}: {}", index_, e.what());
		}
	}
	// Closing a connection closes the files it has registered: if that
	// hangs, it holds this thread, which stop_within() then gives up on,
	// not the main thread in the pool's destructor.
	close_connections();
	exited_ = true;
}

bool WorkerPool::Worker::step(bool &looked)
{
	come_round();
	Scheduler::Clock::time_point retry;
	auto assignment = pool_.scheduler_.next(index_, retry);
	if (assignment && looked) {
		looked = false;
		execute(*assignment);
		return true;
	}
	if (!assignment && retry == Scheduler::Clock::time_point{} && spin()) {
		return true;
	}
	if (poll(assignment ? 0 : timeout_until(retry)) < 0) {
		return false;
	}
	looked = true;
	come_round(); // the look may have stalled: not the piece's hang
	if (assignment) { // taken before the look: it must run
		looked = false;
		execute(*assignment);
	}
	return true;
}

int WorkerPool::Worker::poll(int timeout)
{
	std::array<epoll_event, 32> events{};
	// Waiting for work is not a stall, however long.
	sleeping_ = timeout != 0;
	int ready = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
				 timeout);
	note_progress(std::chrono::steady_clock::now());
	sleeping_ = false;
	if (ready < 0) {
		if (errno == EINTR) {
			return 0;
		}
		pool_.log_.error("worker {}: epoll_wait: {}", index_, describe_errno(errno));
		return -1;
	}
	bool woken = false;
	for (int i = 0; i < ready; i++) {
		if (events[i].data.fd == wake_.get()) {
			woken = true;
		} else {
			handle(events[i].data.fd, events[i].events);
		}
	}
	// After the batch: a connection adopted now may have the number of
	// one this batch reports on, closed since (moved while this worker
	// was stuck), and must not take that connection's events.
	if (woken) {
		eventfd_t count = 0;
		::eventfd_read(wake_.get(), &count);
		run_commands();
	}
	return ready;
}

bool WorkerPool::Worker::spin()
{
	const auto budget = std::chrono::microseconds(pool_.options_.poll_usec);
	if (budget.count() == 0 || std::chrono::steady_clock::now() - last_piece_ > budget) {
		return false;
	}
	// Spinning pays when the smbd process that sends the next chunk gets
	// a CPU of its own; when the others run pieces, it would take that
	// CPU from the smbd processes instead (4 clients on 2 CPUs).
	if (pool_.cpus_taken()) {
		return false;
	}
	const auto until = last_piece_ + budget;
	while (std::chrono::steady_clock::now() < until) {
		int handled = poll(0);
		if (handled != 0) {
			return handled > 0;
		}
	}
	return false;
}

bool WorkerPool::Worker::adopt(const std::shared_ptr<Connection> &connection)
{
	const int fd = connection->fd();
	try {
		epoll_add(epoll_.get(), fd, connection_events);
		connections_.emplace(fd, connection);
		return true;
	} catch (const std::exception &e) {
		// The client sees its connection close and copies elsewhere.
		::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
		connection_count_--;
		pool_.notify_if_watched();
		try {
			pool_.log_.error("worker {}: cannot take {}: {}", index_,
					 connection->describe(), e.what());
		} catch (...) { // out of memory: the count is right, the line lost
		}
		return false;
	}
}

bool WorkerPool::Worker::has_undrained_connections()
{
	std::lock_guard lock(connections_mutex_);
	std::lock_guard commands(commands_mutex_);
	return !incoming_.empty() ||
	       std::any_of(connections_.begin(), connections_.end(), [](const auto &entry) {
		       return !entry.second->refusing_new_copies();
	       });
}

WorkerPool::Worker::Claim WorkerPool::Worker::claim(int fd)
{
	Claim claimed;
	{
		std::lock_guard lock(connections_mutex_);
		auto found = connections_.find(fd);
		if (found == connections_.end()) {
			return claimed;
		}
		claimed.connection = found->second;
	}
	claimed.reading = std::unique_lock(claimed.connection->reading());
	// The main thread may have moved it meanwhile, to a worker that reads
	// it now.
	std::lock_guard lock(connections_mutex_);
	auto found = connections_.find(fd);
	if (found == connections_.end() || found->second != claimed.connection) {
		claimed.reading.unlock();
		claimed.connection.reset();
	}
	return claimed;
}

void WorkerPool::Worker::handle(int fd, std::uint32_t events)
{
	Claim claimed = claim(fd);
	if (!claimed) {
		return;
	}
	Connection *connection = claimed.connection.get();
	if ((events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
		// What the client sent before it left still counts: smbd
		// reports its inline clones at tree disconnect and exits at
		// once. Its copies are not started: nobody waits for them.
		std::vector<CopyJob> none;
		connection->note_peer_gone("polling");
		connection->read_messages(none, messages_after_hangup);
		disconnect(fd, "disconnected");
		return;
	}
	if ((events & EPOLLIN) == 0) {
		return;
	}
	// One message per readiness: epoll reports the socket again while it
	// has more, and a client that sends one copy at a time (smbd) costs
	// no recvmsg that finds nothing. Connections also take turns.
	std::vector<CopyJob> jobs;
	if (connection->read_messages(jobs, 1) == Connection::ReadOutcome::close) {
		disconnect(fd, "closed by the daemon");
		return; // jobs of this batch are dropped with `jobs`
	}
	count_in_flight(jobs.size());
	// The copies' checks look at their files: not while the connection
	// is held, in case a filesystem hangs.
	claimed.reading.unlock();
	start(jobs);
}

void WorkerPool::Worker::count_in_flight(std::size_t count)
{
	if (count == 0 || pool_.jobs_in_flight_.fetch_add(count) != 0) {
		return;
	}
	// The starvation guard and the main thread's stall watch look only
	// while copies are in flight.
	if (pool_.copies_started_) {
		pool_.copies_started_();
	}
	if (pool_.options_.stalls_watched() && !pool_.stall_watch_ticking_.load()) {
		pool_.notify_();
	}
}

void WorkerPool::Worker::start(std::vector<CopyJob> &jobs)
{
	for (CopyJob &job : jobs) {
		start(job);
	}
}

void WorkerPool::Worker::start(CopyJob &job)
{
	const std::uint64_t id = job.request.request_id;
	if (job.connection->cancelled()) {
		// Parked while its client went away: no one waits for it.
		pool_.jobs_in_flight_--;
		pool_.notify_if_watched();
		return;
	}
	bool parked = false;
	try {
		// Taken before the checks, without them: what a stall in the
		// checks holds, and what parks the copy if a stall holds it
		// already (the checks would hang too, and take this worker).
		const auto keys = pool_.options_.stalls_watched() ? new_copy_stall_keys(job)
								  : std::array<StallKey, 2>{};
		parked = pool_.scheduler_.holding() && pool_.scheduler_.park_if_held(keys, job);
		if (!parked) {
			std::shared_ptr<CopyTask> task;
			{
				const MarkedCopy marked(*this, CopyMark{.request_id = id,
									.client = job.connection->peer(),
									.keys = keys,
									.checks = true});
				task = std::make_shared<CopyTask>(std::move(job), pool_.log_,
								  pool_.options_.segment_size);
			}
			if (task->complete()) {
				finish(*task); // refused, or nothing to copy
			} else {
				pool_.scheduler_.add(std::move(task), index_);
			}
		}
	} catch (const std::exception &e) {
		// Allocation only. The copy is lost (its client times out), and
		// so is its count, which shutdown waits for.
		pool_.jobs_in_flight_--;
		pool_.notify_if_watched();
		try {
			pool_.log_.error("worker {}: copy id={} dropped: {}", index_, id, e.what());
		} catch (...) {
		}
		return;
	}
	if (parked) {
		try {
			pool_.log_.debug("worker {}: copy id={} waits before its checks: its "
					 "filesystem hangs",
					 index_, id);
		} catch (...) {
		}
	}
}

void WorkerPool::Worker::execute(Scheduler::Assignment &assignment)
{
	// What a stall would hold.
	CopyTask &task = *assignment.task;
	const MarkedCopy marked(*this, CopyMark{.request_id = task.job().request.request_id,
						.client = task.job().connection->peer(),
						.keys = stall_keys(task)});
	if (!assignment.piece) {
		finish(task);
		return;
	}
	const PieceResult result = [&] {
		const BusyMark busy(pool_.busy_workers_);
		if (task.reserving()) { // the first piece: only this worker has one
			task.reserve();
			pool_.scheduler_.reserved(task, index_);
		}
		return task.run(engine_, *assignment.piece, /*paced=*/true);
	}();
	if (pool_.scheduler_.done(assignment, result)) {
		finish(task);
	} else {
		// More pieces follow, likely on this worker. Under SCHED_OTHER
		// (--worker-policy other) a task woken on this CPU meanwhile
		// (smbd, with a client's next request) would otherwise wait
		// until the worker's time slice ends: an SMB2 ECHO behind a
		// 16 MiB chunk run waited 1.2-3.7 ms.
		::sched_yield();
	}
	last_piece_ = std::chrono::steady_clock::now();
}

std::span<const StallKey> WorkerPool::Worker::keys_of(const std::optional<CopyMark> &copy)
{
	return copy ? std::span<const StallKey>(copy->keys) : std::span<const StallKey>();
}

WorkerPool::Worker::MarkedCopy::MarkedCopy(Worker &worker, const CopyMark &mark)
	: worker_(worker)
{
	std::lock_guard lock(worker_.stall_mutex_);
	worker_.copy_ = mark;
}

WorkerPool::Worker::MarkedCopy::~MarkedCopy()
{
	std::lock_guard lock(worker_.stall_mutex_);
	worker_.copy_.reset();
}

std::optional<WorkerPool::Worker::Stall>
WorkerPool::Worker::check_stall(std::chrono::steady_clock::time_point now,
				std::chrono::steady_clock::duration timeout)
{
	// A worker holding the lock is marking or unmarking a copy, not stuck
	// in a filesystem; and under SCHED_IDLE it may wait seconds for a CPU
	// with the lock held: not a wait for the main thread.
	std::unique_lock lock(stall_mutex_, std::try_to_lock);
	if (!lock.owns_lock() || stalled_.load() || sleeping_.load()) {
		return std::nullopt;
	}
	const auto came_round = progress_.load();
	const auto moved = std::max(std::chrono::steady_clock::time_point(
					    std::chrono::steady_clock::duration(came_round)),
				    engine_.last_progress());
	if (now - moved < timeout) {
		return std::nullopt;
	}
	stalled_ = true;
	// It may have come round meanwhile without seeing the flag: then it is
	// not stalled. (If it saw the flag, come_round() waits for this lock.)
	if (progress_.load() != came_round) {
		stalled_ = false;
		return std::nullopt;
	}
	try {
		pool_.scheduler_.hold(index_, keys_of(copy_));
	} catch (...) {
		stalled_ = false;
		throw;
	}
	held_ = copy_;
	stalled_at_ = moved;
	pool_.stalled_workers_++;
	return Stall{copy_, now - moved};
}

void WorkerPool::Worker::come_round()
{
	const auto now = std::chrono::steady_clock::now();
	note_progress(now);
	if (!stalled_.load()) {
		return;
	}
	std::optional<CopyMark> held;
	std::chrono::steady_clock::time_point since;
	{
		std::lock_guard lock(stall_mutex_);
		if (!stalled_.exchange(false)) {
			return; // check_stall() took it back
		}
		held.swap(held_);
		since = stalled_at_;
	}
	pool_.scheduler_.release(keys_of(held));
	pool_.stalled_workers_--;
	try {
		pool_.log_.warning("worker {}: going again after {} s without progress{}", index_,
				   std::chrono::duration_cast<std::chrono::seconds>(now - since).count(),
				   held ? "; its copy's filesystems take copies again" : "");
	} catch (...) {
	}
	// The copies parked while it hung, now that their filesystem answers
	// (one at a time: taking one allocates nothing).
	std::size_t started = 0;
	while (auto job = pool_.scheduler_.take_unparked()) {
		start(*job);
		note_progress(std::chrono::steady_clock::now()); // a slow one is not a stall
		started++;
	}
	if (started > 0) {
		try {
			pool_.log_.info("worker {}: started {} copies that waited for their "
					"filesystem",
					index_, started);
		} catch (...) {
		}
	}
}

std::vector<std::shared_ptr<Connection>> WorkerPool::Worker::give_up_connections()
{
	std::vector<std::shared_ptr<Connection>> given;
	std::lock_guard lock(connections_mutex_);
	for (auto at = connections_.begin(); at != connections_.end();) {
		// The one the worker is stuck reading stays.
		std::unique_lock reading(at->second->reading(), std::try_to_lock);
		if (!reading.owns_lock()) {
			++at;
			continue;
		}
		::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, at->first, nullptr);
		given.push_back(std::move(at->second));
		at = connections_.erase(at);
	}
	{
		std::lock_guard commands(commands_mutex_);
		for (auto &connection : incoming_) {
			given.push_back(std::move(connection));
		}
		incoming_.clear();
	}
	connection_count_ -= given.size();
	return given;
}

void WorkerPool::Worker::finish(CopyTask &task)
{
	// An smbd polls for its next reply only when told it would not take
	// a CPU from other copies (4 clients on 2 CPUs lose throughput).
	const bool busy = pool_.jobs_in_flight_.load() > 1 || pool_.cpus_taken();
	task.finish(busy ? COPYOFFLOAD_REPLY_BUSY : 0);
	pool_.jobs_in_flight_--;
	pool_.notify_if_watched();
}

void WorkerPool::Worker::disconnect(int fd, const char *why)
{
	std::shared_ptr<Connection> connection;
	{
		std::lock_guard lock(connections_mutex_);
		auto found = connections_.find(fd);
		if (found == connections_.end()) {
			return;
		}
		connection = std::move(found->second);
		connections_.erase(found);
		::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
	}
	connection_count_--;
	// Running copies notice at their next piece; the socket itself closes
	// when the last of them lets go of the connection.
	connection->cancel();
	Scheduler::Dropped dropped = pool_.scheduler_.drop(*connection);
	for (auto &task : dropped.finish) {
		finish(*task);
	}
	pool_.jobs_in_flight_ -= dropped.unstarted.size();
	pool_.log_.debug("{} {}; dropped {} queued copies", connection->describe(), why,
			 dropped.unstarted.size());
	dropped.unstarted.clear(); // their descriptors close here
	pool_.notify_if_watched();
}

void WorkerPool::Worker::drain_connection(int fd)
{
	Claim claimed = claim(fd);
	if (!claimed) {
		return;
	}
	std::vector<CopyJob> jobs;
	if (claimed.connection->read_messages(jobs, *drain_limit_) ==
	    Connection::ReadOutcome::close) {
		disconnect(fd, "closed by the daemon");
		return;
	}
	count_in_flight(jobs.size()); // before it says it is drained
	claimed.connection->refuse_new_copies();
	claimed.reading.unlock(); // as in handle()
	start(jobs);
}

void WorkerPool::Worker::drain(int limit)
{
	drain_limit_ = limit;
	drain_undrained();
	drained_ = true;
	pool_.notify_if_watched();
}

void WorkerPool::Worker::drain_undrained()
{
	std::vector<int> fds;
	{
		std::lock_guard lock(connections_mutex_);
		for (const auto &entry : connections_) {
			if (!entry.second->refusing_new_copies()) {
				fds.push_back(entry.first);
			}
		}
	}
	for (int fd : fds) {
		drain_connection(fd);
	}
}

} // namespace copyoffload
