// copyoffloadd: performs server-side copies for the Samba copyoffload VFS
// module on descriptors smbd passes over a unix socket.
#include "autogroup_check.hpp"
#include "device_privileges.hpp"
#include "device_session.hpp"
#include "idle_cgroup.hpp"
#include "listening_socket.hpp"
#include "logging.hpp"
#include "options.hpp"
#include "privileges.hpp"
#include "server.hpp"
#include "service_manager.hpp"
#include "starvation_guard.hpp"
#include "termination_signals.hpp"
#include "worker_pool.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <exception>
#include <iterator>
#include <string_view>
#include <vector>

#ifndef COPYOFFLOAD_VERSION
#define COPYOFFLOAD_VERSION "unknown"
#endif

namespace {

constexpr std::string_view program_name = "copyoffloadd";

// Every queued copy holds two descriptors; use all the headroom the hard
// limit allows (raising the soft limit needs no privilege).
void raise_descriptor_limit()
{
	rlimit limit{};
	if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &limit);
	}
}

} // namespace

int main(int argc, char **argv)
{
	using namespace copyoffload;

	int passed_sockets = 0;
	try {
		passed_sockets = passed_socket_count();
	} catch (const std::exception &e) {
		fmt::print(stderr, "{}: {}\n", program_name, e.what());
		return 1;
	}
	std::vector<std::string_view> arguments(argv + (argc > 0 ? 1 : 0), argv + argc);
	CommandLine command_line =
		parse_command_line(arguments, usable_cpus(), passed_sockets > 0);
	switch (command_line.action) {
	case CommandLine::Action::show_help:
		fmt::print("{}", usage_text(program_name));
		return 0;
	case CommandLine::Action::show_version:
		fmt::print("{} {}\n", program_name, COPYOFFLOAD_VERSION);
		return 0;
	case CommandLine::Action::usage_error:
		fmt::print(stderr, "{}: {}\nTry '{} --help' for more information.\n",
			   program_name, command_line.error, program_name);
		return exit_usage;
	case CommandLine::Action::run:
		break;
	}

	const Options &options = command_line.options;
	Logger log(options.log_level);
	try {
		// Order matters: signals are blocked and capabilities dropped
		// before the server starts its worker threads, which inherit both.
		raise_descriptor_limit();
		UniqueFd signals = open_termination_signalfd();
		ListeningSocket listener =
			passed_sockets > 0
				? ListeningSocket::adopt(take_passed_listener(passed_sockets))
				: ListeningSocket::open(options.socket_path);
		if (listener.adopted() && !options.socket_path.empty() &&
		    options.socket_path != listener.path()) {
			log.warning("--socket {} ignored: serving the socket the service manager "
				    "passed, {}",
				    options.socket_path, listener.path());
		}
		// Writing to the cgroup takes root's privileges; the descriptors
		// the workers and the guard use outlive them.
		IdleCgroup cgroup;
		if (!options.cpu_cgroup.empty()) {
			cgroup = IdleCgroup::create(options.cpu_cgroup);
		} else if (options.worker_policy == WorkerPolicy::idle && autogroups_apply()) {
			log.info("autogroups are on (kernel.sched_autogroup_enabled = 1): SCHED_IDLE "
				 "puts the workers below this daemon's own threads only, and smbd, in "
				 "another session's autogroup, shares a CPU with them as an equal; with "
				 "autogroups off, or the workers in an idle cgroup (--cpu-cgroup), a "
				 "woken smbd goes first (copyoffloadd(8), --worker-policy)");
		}
		// Lifting starved SCHED_IDLE workers (starvation_guard.hpp) takes
		// RLIMIT_NICE (raised here while CAP_SYS_RESOURCE lasts, or set by
		// the service manager: LimitNICE=) or else CAP_SYS_NICE, kept
		// permitted for it.
		std::vector<int> keep;
		if (options.device_copy) {
			keep.assign(std::begin(device::device_capabilities),
				    std::end(device::device_capabilities));
		}
		if (options.worker_policy == WorkerPolicy::idle &&
		    !allow_lifting_to_nice(options.worker_nice)) {
			keep.push_back(CAP_SYS_NICE);
		}
		const std::vector<int> missing = drop_all_privileges(keep);
		for (int capability : missing) {
			if (capability == CAP_SYS_NICE) {
				log.warning("--worker-policy idle: neither RLIMIT_NICE (for nice {}) nor "
					    "CAP_SYS_NICE allows lifting workers that starve on busy "
					    "CPUs to SCHED_OTHER; their copies may hang there "
					    "(systemd: LimitNICE={})",
					    options.worker_nice, 20 - options.worker_nice);
				continue;
			}
			log.warning("--device-copy: {} is not available (the capability bounding "
				    "set lacks it); device passthrough that needs it is refused "
				    "and those copies read and write instead",
				    capability == CAP_SYS_ADMIN ? "CAP_SYS_ADMIN" : "CAP_SYS_RAWIO");
		}
		device::enable_device_copy(options.device_copy);
		Server server(options, log, std::move(signals), std::move(listener),
			      std::move(cgroup));
		return server.run();
	} catch (const std::exception &e) {
		log.error("{}", e.what());
		return 1;
	}
}
