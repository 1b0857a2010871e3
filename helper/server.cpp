#include "server.hpp"

#include "epoll_set.hpp"
#include "privileges.hpp"

#include "service_manager.hpp"
#include "termination_signals.hpp"

#include <linux/capability.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <system_error>

namespace copyoffload {

namespace {

// At shutdown, the most messages taken from one connection's socket as
// "received before the signal"; what comes later is answered ESHUTDOWN.
constexpr int drain_limit = 4096;

// How long workers get to stop at exit without --stall-timeout.
constexpr auto default_exit_grace = std::chrono::seconds(10);

// Pokes the main thread's eventfd. Fails only if the counter would
// overflow, in which case the main thread is already due to wake up.
void wake_main_thread(int fd)
{
	::eventfd_write(fd, 1);
}

// Empties an eventfd the main thread was woken by.
void take_wake_up(int fd)
{
	eventfd_t count = 0;
	::eventfd_read(fd, &count);
}

PoolOptions pool_options(const Options &options)
{
	return PoolOptions{
		.workers = options.workers,
		.segment_size = options.segment_size,
		.queue_depth = options.queue_depth,
		.idle_policy = options.worker_policy == WorkerPolicy::idle,
		.nice = options.worker_nice,
		.poll_usec = options.poll_usec,
		.stall_timeout = std::chrono::seconds(options.stall_seconds),
	};
}

} // namespace

Server::Server(const Options &options, const Logger &log, UniqueFd signals,
	       ListeningSocket listener, IdleCgroup cgroup)
	: log_(log),
	  options_(options),
	  socket_path_(listener.path()),
	  signals_(std::move(signals)),
	  listener_(std::move(listener)),
	  epoll_(checked_fd(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
	  notified_(checked_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
	  guard_reported_(checked_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
	  cgroup_(std::move(cgroup)),
	  guard_(cgroup_, pool_max_workers(pool_options(options)),
		 [this] { return pool_.jobs_in_flight() > 0; },
		 [fd = guard_reported_.get()] { wake_main_thread(fd); }),
	  pool_(pool_options(options), log, [fd = notified_.get()] { wake_main_thread(fd); },
		[this] { guard_.copies_started(); })
{
	for (pid_t tid : pool_.worker_threads()) {
		if (!cgroup_.add_thread(tid)) {
			throw std::system_error(errno, std::generic_category(),
						fmt::format("--cpu-cgroup {}: cannot move worker "
							    "thread {} into it",
							    cgroup_.directory(), tid));
		}
		watch_worker(tid);
	}
	watch(signals_.get(), EPOLLIN);
	watch(notified_.get(), EPOLLIN);
	watch(guard_reported_.get(), EPOLLIN);
	watch(listener_.fd(), EPOLLIN);
	if (options_.worker_policy == WorkerPolicy::idle) {
		guard_.start();
		try {
			// Kept (if at all) for lifting, which only the guard
			// thread does.
			drop_thread_capability(CAP_SYS_NICE);
		} catch (...) {
			guard_.stop(); // no ~Server(): before pool_ goes
			throw;
		}
	}
}

Server::~Server()
{
	guard_.stop();
}

void Server::watch(int fd, std::uint32_t events)
{
	epoll_add(epoll_.get(), fd, events);
}

void Server::unwatch(int fd)
{
	::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

bool Server::finished() const
{
	return shutting_down_ && pool_.drained() && pool_.jobs_in_flight() == 0;
}

int Server::run()
{
	std::string status = fmt::format("listening on {} with {} workers", socket_path_,
					 pool_.size());
	// First: notifying may take a thread for a moment (service_manager.cpp),
	// gone by the time the log says the daemon listens.
	notify_ready(status);
	log_.info("{}{}", status,
		  listener_.adopted() ? " (socket passed by the service manager)" : "");
	log_.debug("pieces of data up to {} bytes, io_uring queue depth {}, workers {}{}",
		   options_.segment_size, options_.queue_depth,
		   options_.worker_policy == WorkerPolicy::idle
			   ? std::string("SCHED_IDLE")
			   : fmt::format("SCHED_OTHER, nice +{}", options_.worker_nice),
		   cgroup_.in_use() ? fmt::format(" in the idle cgroup {}", cgroup_.directory())
				    : std::string());

	std::array<epoll_event, 16> events{};
	while (!finished()) {
		int ready = ::epoll_wait(epoll_.get(), events.data(),
					 static_cast<int>(events.size()), wait_timeout_ms());
		if (ready < 0) {
			if (errno == EINTR) {
				continue;
			}
			log_.error("epoll_wait: {}", describe_errno(errno));
			return 1;
		}
		for (int i = 0; i < ready; i++) {
			int fd = events[i].data.fd;
			if (fd == signals_.get()) {
				handle_signal();
			} else if (fd == notified_.get()) {
				handle_notification();
			} else if (fd == guard_reported_.get()) {
				take_wake_up(guard_reported_.get());
				guard_.report(log_);
			} else if (listener_.is_open() && fd == listener_.fd()) {
				accept_connections();
			}
		}
		watch_stalls();
	}

	log_.info("shut down: every received copy was answered, closing {} connections",
		  pool_.connections());
	// Every copy is answered: the guard has nothing more to do, and what
	// it did is all reported.
	guard_.stop();
	guard_.report(log_);
	if (guard_.lifts() > 0) {
		log_.info("starving SCHED_IDLE workers were lifted to SCHED_OTHER {} times",
			  guard_.lifts());
	}
	// Workers stuck in the kernel cannot be joined until their filesystem
	// answers, and what they use cannot go while they might return: leave
	// them to the kernel. One may be stuck without a stall reported yet
	// (closing the files of its connections as it ends, or of copies
	// dropped with their client): it gets the stall timeout to end.
	const unsigned stuck = pool_.stalled_workers();
	const auto grace = options_.stall_seconds > 0 ? std::chrono::seconds(options_.stall_seconds)
						      : default_exit_grace;
	if (stuck > 0 || !pool_.stop_within(grace)) {
		log_.warning("exiting with workers stuck in the kernel ({} reported stalled)",
			     stuck);
		::_exit(0);
	}
	return 0;
}

void Server::accept_connections()
{
	for (;;) {
		UniqueFd socket(::accept4(listener_.fd(), nullptr, nullptr,
					  SOCK_CLOEXEC));
		if (socket) {
			admit(std::move(socket));
			continue;
		}
		int error = errno;
		switch (error) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			// The pending connection stays queued; retry once a
			// connection or a copy has released descriptors.
			log_.warning("cannot accept connections for now: {}", describe_errno(error));
			pause_accepting();
			return;
		default:
			log_.error("accept: {}", describe_errno(error));
			return;
		}
	}
}

void Server::admit(UniqueFd socket)
{
	ucred peer{};
	socklen_t size = sizeof(peer);
	if (::getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
		log_.warning("refusing a connection: SO_PEERCRED failed: {}",
			     describe_errno(errno));
		return;
	}
	// Only smbd (root) may hand descriptors to the helper; anyone else
	// reaching the socket is refused before a single message is read.
	if (peer.uid != 0) {
		log_.warning("refusing connection from peer pid={} uid={}: peer is not root",
			     peer.pid, peer.uid);
		return;
	}
	auto connection = std::make_shared<Connection>(
		std::move(socket), PeerCredentials{peer.pid, peer.uid, peer.gid}, log_, shares_);
	log_.debug("accepted connection from {}", connection->describe());
	pool_.adopt(std::move(connection));
}

void Server::handle_signal()
{
	std::string signal = read_termination_signal(signals_.get());
	if (signal.empty()) {
		return;
	}
	if (shutting_down_) {
		log_.info("received {} again; still finishing {} copies", signal,
			  pool_.jobs_in_flight());
		return;
	}
	shutting_down_ = true;
	notify_stopping("finishing the copies in flight");
	if (!accepting_paused_) {
		unwatch(listener_.fd());
	}
	listener_.close();
	// Copies a client sent before the signal count as received: each
	// worker takes every message already waiting on its connections and
	// runs those copies; from then on a connection answers new copies
	// ESHUTDOWN at once, so no client waits for a reply that will not
	// come (the module hands those copies back).
	signal_ = signal;
	pool_.watch(true);
	pool_.drain(drain_limit);
}

bool Server::stall_watch_has_work() const
{
	return pool_options(options_).stalls_watched() && pool_.jobs_in_flight() > 0;
}

bool Server::stalls_watched_idle() const
{
	return options_.stall_seconds > 0 && pool_.connections() > 0;
}

int Server::wait_timeout_ms()
{
	pool_.stall_watch_ticking(false);
	std::chrono::steady_clock::time_point next;
	if (stall_watch_has_work()) {
		pool_.stall_watch_ticking(true);
		next = next_stall_check_;
	} else if (stalls_watched_idle()) {
		next = next_idle_stall_check_;
	} else {
		return -1;
	}
	const auto left = std::chrono::ceil<std::chrono::milliseconds>(
		next - std::chrono::steady_clock::now());
	return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

void Server::check_stalls(std::chrono::steady_clock::time_point now)
{
	for (pid_t tid : pool_.check_stalls(now)) {
		if (!cgroup_.add_thread(tid)) {
			log_.warning("--cpu-cgroup {}: cannot move the added worker thread {} "
				     "into it: {}",
				     cgroup_.directory(), tid, describe_errno(errno));
		}
		watch_worker(tid);
	}
}

void Server::watch_worker(pid_t tid)
{
	if (options_.worker_policy == WorkerPolicy::idle) {
		guard_.watch(tid);
	}
}

void Server::watch_stalls()
{
	const auto now = std::chrono::steady_clock::now();
	if (!stall_watch_has_work()) {
		// Nothing to look at; the first copy starts a new tick.
		next_stall_check_ = now + stall_tick;
		// A worker can hang with no copy in flight (closing files of a
		// hung filesystem for a RELEASE), its clients' copies unread.
		if (stalls_watched_idle() && now >= next_idle_stall_check_) {
			check_stalls(now);
			next_idle_stall_check_ = now + idle_stall_tick;
		}
		return;
	}
	if (now < next_stall_check_) {
		return;
	}
	check_stalls(now);
	next_stall_check_ = now + stall_tick;
}

void Server::handle_notification()
{
	take_wake_up(notified_.get());
	resume_accepting();
	if (shutting_down_ && !drain_reported_ && pool_.drained()) {
		// Only now: a copy sent after this line is refused for sure.
		drain_reported_ = true;
		log_.info("received {}: no longer accepting, finishing {} copies in flight "
			  "(those sent before the signal included); later copies are refused "
			  "with ESHUTDOWN",
			  signal_, pool_.jobs_in_flight());
	}
}

void Server::pause_accepting()
{
	if (!accepting_paused_ && listener_.is_open()) {
		unwatch(listener_.fd());
		accepting_paused_ = true;
		pool_.watch(true);
	}
}

void Server::resume_accepting()
{
	if (accepting_paused_ && listener_.is_open()) {
		accepting_paused_ = false;
		watch(listener_.fd(), EPOLLIN);
	}
	if (!shutting_down_) {
		pool_.watch(false);
	}
}

} // namespace copyoffload
