// Command line of copyoffloadd. Parsing is a pure function (no getopt
// global state) so tests can run it as often as they like.
#pragma once

#include "logging.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace copyoffload {

// How the workers are scheduled against smbd (sched(7)).
enum class WorkerPolicy {
	idle,  // SCHED_IDLE: a runnable smbd or client process always goes first
	other, // SCHED_OTHER with --worker-nice added
};

struct Options {
	std::string socket_path;
	unsigned workers = 1;
	LogLevel log_level = LogLevel::info;
	// Largest piece of data one worker copies in one go; a copy larger
	// than this is spread over the workers.
	std::uint64_t segment_size = std::uint64_t{1} << 20;
	// io_uring reads and writes in flight per worker (its registered
	// buffers, 256 KiB each).
	unsigned queue_depth = 8;
	// smbd answers its clients on the CPUs the workers copy with. Under
	// SCHED_IDLE a woken smbd takes a worker's CPU at once, where SCHED_OTHER,
	// even niced, lets the worker finish its slice first (measured on a
	// slow disk: the worst echo behind a copy 0.45 against 4.5 ms). Copies
	// that starve on busy CPUs are lifted (starvation_guard.hpp).
	WorkerPolicy worker_policy = WorkerPolicy::idle;
	// Added to the workers' nice value; it counts under SCHED_OTHER: with
	// WorkerPolicy::other, and while the guard lifts idle workers.
	int worker_nice = 10;
	// After a piece, a worker looks at its sockets without sleeping for
	// this long (microseconds), so that the next chunk of a copy finds it
	// awake: smbd sends it tens of microseconds after its reply, and a
	// sleeping worker costs a wake-up on another CPU (measured: 73 -> 34
	// us per chunk). 0: it sleeps at once.
	unsigned poll_usec = 150;
	// A cgroup v1 cpu directory the workers move into, marked idle
	// (cpu.idle), to yield to smbd, which SCHED_IDLE alone does only
	// within one scheduling group (idle_cgroup.hpp). Empty: none.
	std::string cpu_cgroup;
	// Copies between two block devices (NVMe Copy, SCSI EXTENDED COPY):
	// keeps CAP_SYS_ADMIN and CAP_SYS_RAWIO permitted for device
	// passthrough. Without it block devices are refused.
	bool device_copy = false;
	// A worker that makes no progress for this long (seconds: no slice of
	// a piece started, not back in its loop) is taken to be stuck on a
	// hung filesystem: its connections go to other workers, one is added,
	// and the filesystems of the copy it works on get no more pieces until
	// it goes again (WorkerPool::check_stalls()). 0: never.
	unsigned stall_seconds = 10;
};

inline constexpr unsigned max_workers = 1024;
inline constexpr unsigned max_queue_depth = 64;
inline constexpr int max_worker_nice = 19;
inline constexpr unsigned max_poll_usec = 10000;
inline constexpr unsigned max_stall_seconds = 3600;

struct CommandLine {
	enum class Action { run, show_help, show_version, usage_error };

	Action action = Action::run;
	Options options;
	std::string error; // set for usage_error
};

// `arguments` excludes argv[0]; `default_workers` is what --workers
// defaults to (the CPUs the real daemon may run on). --socket is
// required unless `socket_passed` (socket activation supplies one).
CommandLine parse_command_line(std::span<const std::string_view> arguments,
			       unsigned default_workers, bool socket_passed = false);

std::string usage_text(std::string_view program);

// Exit status for a command line the daemon cannot run with.
inline constexpr int exit_usage = 2;

} // namespace copyoffload
