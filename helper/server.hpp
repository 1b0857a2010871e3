// The daemon's top-level object: one epoll loop on the main thread over the
// listening socket, the termination signals and the workers'
// notifications. The main thread only accepts connections, checks the
// peer and hands each to a worker; the workers read, copy and answer.
#pragma once

#include "connection.hpp"
#include "guard_thread.hpp"
#include "idle_cgroup.hpp"
#include "listening_socket.hpp"
#include "logging.hpp"
#include "options.hpp"
#include "share_registry.hpp"
#include "unique_fd.hpp"
#include "worker_pool.hpp"

#include <cstdint>
#include <memory>

namespace copyoffload {

class Server {
public:
	// Takes over the signalfd, the bound listener and the idle cgroup for
	// the workers (--cpu-cgroup, else none); starts the workers, so
	// privileges must already be dropped.
	Server(const Options &options, const Logger &log, UniqueFd signals,
	       ListeningSocket listener, IdleCgroup cgroup = {});
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
	void handle_signal();
	void handle_notification();
	void pause_accepting();
	void resume_accepting();
	[[nodiscard]] bool finished() const;
	// Whether the main thread looks at the workers for stalls now (with
	// --stall-timeout, while copies are in flight).
	[[nodiscard]] bool stall_watch_has_work() const;
	// How long epoll_wait may sleep: until the next look while it has
	// work, else -1; tells the workers which
	// (WorkerPool::stall_watch_ticking).
	[[nodiscard]] int wait_timeout_ms();
	void watch_stalls();
	// Whether stalls are looked for with no copy in flight: with
	// --stall-timeout, while any client is connected (every
	// idle_stall_tick).
	[[nodiscard]] bool stalls_watched_idle() const;
	void check_stalls(std::chrono::steady_clock::time_point now);
	// A worker thread, started or added: for the guard, if it runs.
	void watch_worker(pid_t tid);

	// How often stalls are looked for while copies are in flight, and
	// while none is.
	static constexpr std::chrono::milliseconds stall_tick{100};
	static constexpr std::chrono::seconds idle_stall_tick{1};

	const Logger &log_;
	Options options_;
	std::string socket_path_;
	UniqueFd signals_;
	ListeningSocket listener_;
	UniqueFd epoll_;
	UniqueFd notified_; // eventfd the workers poke while watched
	UniqueFd guard_reported_; // eventfd the guard thread pokes: something to log
	ShareRegistry shares_;
	bool accepting_paused_ = false;
	bool shutting_down_ = false;
	std::string signal_;          // the one that started the shutdown
	bool drain_reported_ = false; // its log line, once the workers drained
	IdleCgroup cgroup_;            // before guard_, which lifts it
	std::chrono::steady_clock::time_point next_stall_check_{};
	std::chrono::steady_clock::time_point next_idle_stall_check_{};
	// Runs with --worker-policy idle; stopped in ~Server(), before the
	// pool it looks at goes; still there while the workers end, which
	// may wake it.
	GuardThread guard_;
	// Last member: destroyed first, so no worker outlives what it uses.
	WorkerPool pool_;
};

} // namespace copyoffload
