#include "server.hpp"

#include "service_manager.hpp"
#include "termination_signals.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace copyoffload {

namespace {

UniqueFd checked(int fd, const char *what)
{
	if (fd < 0) {
		throw std::system_error(errno, std::generic_category(), what);
	}
	return UniqueFd(fd);
}

constexpr std::uint32_t connection_events = EPOLLIN | EPOLLRDHUP;

// At shutdown, the most messages taken from one connection's socket as
// "received before the signal"; what comes later is answered ESHUTDOWN.
constexpr int drain_limit = 4096;

} // namespace

Server::Server(const Options &options, const Logger &log, UniqueFd signals,
	       ListeningSocket listener)
	: log_(log),
	  worker_count_(options.workers),
	  socket_path_(listener.path()),
	  signals_(std::move(signals)),
	  listener_(std::move(listener)),
	  epoll_(checked(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
	  job_finished_(checked(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
	  pool_(options.workers,
		[&log](CopyJob &job) { run_copy_job(job, log); },
		[fd = job_finished_.get()] {
			std::uint64_t one = 1;
			// Only fails if the counter would overflow, in which
			// case the main thread is already due to wake up.
			[[maybe_unused]] auto ignored = ::write(fd, &one, sizeof(one));
		})
{
	watch(signals_.get(), EPOLLIN);
	watch(job_finished_.get(), EPOLLIN);
	watch(listener_.fd(), EPOLLIN);
}

Server::~Server() = default;

void Server::watch(int fd, std::uint32_t events)
{
	epoll_event event{};
	event.events = events;
	event.data.fd = fd;
	if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
		throw std::system_error(errno, std::generic_category(), "epoll_ctl(ADD)");
	}
}

void Server::unwatch(int fd)
{
	::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

int Server::run()
{
	std::string status = fmt::format("listening on {} with {} workers", socket_path_,
					 worker_count_);
	log_.info("{}{}", status,
		  listener_.adopted() ? " (socket passed by the service manager)" : "");
	notify_ready(status);

	std::array<epoll_event, 64> events{};
	while (!(shutting_down_ && pool_.idle())) {
		int ready = ::epoll_wait(epoll_.get(), events.data(),
					 static_cast<int>(events.size()), -1);
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
			} else if (fd == job_finished_.get()) {
				handle_job_finished();
			} else if (listener_.is_open() && fd == listener_.fd()) {
				accept_connections();
			} else {
				handle_connection_event(fd, events[i].events);
			}
		}
	}

	log_.info("shut down: every received copy was answered, closing {} connections",
		  connections_.size());
	connections_.clear();
	return 0;
}

void Server::accept_connections()
{
	for (;;) {
		UniqueFd socket(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
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
			// connection or a job has released descriptors.
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
	watch(connection->fd(), connection_events);
	connections_.emplace(connection->fd(), connection);
	log_.debug("accepted connection from {}", connection->describe());
}

void Server::handle_connection_event(int fd, std::uint32_t events)
{
	auto found = connections_.find(fd);
	if (found == connections_.end()) {
		return;
	}
	if ((events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
		disconnect(fd, "disconnected");
		return;
	}
	if ((events & EPOLLIN) == 0) {
		return;
	}
	std::vector<CopyJob> jobs;
	if (found->second->read_messages(jobs) == Connection::ReadOutcome::close) {
		disconnect(fd, "closed by the daemon");
		return; // jobs of this batch are dropped with `jobs`
	}
	for (CopyJob &job : jobs) {
		pool_.submit(std::move(job));
	}
}

void Server::disconnect(int fd, const char *why)
{
	auto found = connections_.find(fd);
	if (found == connections_.end()) {
		return;
	}
	std::shared_ptr<Connection> connection = std::move(found->second);
	connections_.erase(found);
	unwatch(fd);
	// Running copies notice at their next slice; the socket itself closes
	// when the last of them lets go of the connection.
	connection->cancel();
	std::size_t dropped = pool_.drop_queued_jobs_for(*connection);
	log_.debug("{} {}; dropped {} queued copies", connection->describe(), why, dropped);
	resume_accepting();
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
	std::size_t drained = drain_connections();
	log_.info("received {}: no longer accepting, finishing {} copies in flight "
		  "({} of them read at the signal); later copies are refused with ESHUTDOWN",
		  signal, pool_.jobs_in_flight(), drained);
}

// Copies a client sent before the signal count as received: take every
// message already waiting on each connection and run its copies. From then
// on, a connection answers new copies ESHUTDOWN at once, so no client waits
// for a reply that will not come (the module hands those copies back).
std::size_t Server::drain_connections()
{
	std::vector<int> closing;
	std::size_t drained = 0;
	for (const auto &[fd, connection] : connections_) {
		std::vector<CopyJob> jobs;
		if (connection->read_messages(jobs, drain_limit) == Connection::ReadOutcome::close) {
			closing.push_back(fd);
			continue;
		}
		connection->refuse_new_copies();
		drained += jobs.size();
		for (CopyJob &job : jobs) {
			pool_.submit(std::move(job));
		}
	}
	for (int fd : closing) {
		disconnect(fd, "closed by the daemon");
	}
	return drained;
}

void Server::handle_job_finished()
{
	std::uint64_t count = 0;
	[[maybe_unused]] auto ignored = ::read(job_finished_.get(), &count, sizeof(count));
	resume_accepting();
}

void Server::pause_accepting()
{
	if (!accepting_paused_ && listener_.is_open()) {
		unwatch(listener_.fd());
		accepting_paused_ = true;
	}
}

void Server::resume_accepting()
{
	if (accepting_paused_ && listener_.is_open()) {
		accepting_paused_ = false;
		watch(listener_.fd(), EPOLLIN);
	}
}

} // namespace copyoffload
