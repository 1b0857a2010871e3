// The daemon's top-level object: one epoll loop on the main thread over the
// listening socket, the client connections, the termination signals and
// the workers' completion events. The main thread only accepts, decodes and
// dispatches; all data I/O happens on the worker pool.
#pragma once

#include "connection.hpp"
#include "listening_socket.hpp"
#include "logging.hpp"
#include "options.hpp"
#include "share_registry.hpp"
#include "unique_fd.hpp"
#include "worker_pool.hpp"

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace copyoffload {

class Server {
public:
	// Takes over the signalfd and the bound listener; starts the workers,
	// so privileges must already be dropped.
	Server(const Options &options, const Logger &log, UniqueFd signals,
	       ListeningSocket listener);
	~Server();

	Server(const Server &) = delete;
	Server &operator=(const Server &) = delete;

	// Serves until SIGTERM/SIGINT, then answers every copy already
	// received (the rest get ESHUTDOWN) and returns the exit status.
	int run();

private:
	void watch(int fd, std::uint32_t events);
	void unwatch(int fd);

	void accept_connections();
	void admit(UniqueFd socket);
	void handle_connection_event(int fd, std::uint32_t events);
	void disconnect(int fd, const char *why);
	void handle_signal();
	std::size_t drain_connections();
	void handle_job_finished();
	void pause_accepting();
	void resume_accepting();

	const Logger &log_;
	unsigned worker_count_;
	std::string socket_path_;
	UniqueFd signals_;
	ListeningSocket listener_;
	UniqueFd epoll_;
	UniqueFd job_finished_; // eventfd the workers poke after each job
	ShareRegistry shares_;
	std::unordered_map<int, std::shared_ptr<Connection>> connections_;
	bool accepting_paused_ = false;
	bool shutting_down_ = false;
	// Last member: destroyed first, so no worker outlives what it uses.
	WorkerPool pool_;
};

} // namespace copyoffload
