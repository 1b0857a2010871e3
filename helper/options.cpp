#include "options.hpp"

#include "copyoffload_config_parse.h"

#include <charconv>
#include <optional>

namespace copyoffload {

namespace {

std::optional<unsigned> parse_number(std::string_view text, unsigned low, unsigned high)
{
	unsigned value = 0;
	const char *end = text.data() + text.size();
	auto [stop, error] = std::from_chars(text.data(), end, value);
	if (error != std::errc{} || stop != end || value < low || value > high) {
		return std::nullopt;
	}
	return value;
}

// The options that take a number in a range.
struct NumberOption {
	std::string_view name;
	unsigned low, high;
	void (*set)(Options &options, unsigned value);
};

constexpr NumberOption number_options[] = {
	{"--workers", 1, max_workers, [](Options &o, unsigned v) { o.workers = v; }},
	{"--queue-depth", 1, max_queue_depth, [](Options &o, unsigned v) { o.queue_depth = v; }},
	{"--worker-nice", 0, max_worker_nice,
	 [](Options &o, unsigned v) { o.worker_nice = static_cast<int>(v); }},
	{"--poll-us", 0, max_poll_usec, [](Options &o, unsigned v) { o.poll_usec = v; }},
	{"--stall-timeout", 0, max_stall_seconds,
	 [](Options &o, unsigned v) { o.stall_seconds = v; }},
};

const NumberOption *number_option(std::string_view name)
{
	for (const NumberOption &option : number_options) {
		if (option.name == name) {
			return &option;
		}
	}
	return nullptr;
}

std::optional<std::uint64_t> parse_segment(std::string_view text)
{
	std::uint64_t bytes = 0;
	if (!copyoffload_parse_size(std::string(text).c_str(), &bytes) ||
	    bytes < COPYOFFLOAD_MIN_SEGMENT || bytes > COPYOFFLOAD_MAX_SEGMENT) {
		return std::nullopt;
	}
	return bytes;
}

std::optional<WorkerPolicy> parse_worker_policy(std::string_view text)
{
	if (text == "idle") {
		return WorkerPolicy::idle;
	}
	if (text == "other") {
		return WorkerPolicy::other;
	}
	return std::nullopt;
}

CommandLine usage_error(std::string message)
{
	CommandLine result;
	result.action = CommandLine::Action::usage_error;
	result.error = std::move(message);
	return result;
}

} // namespace

CommandLine parse_command_line(std::span<const std::string_view> arguments,
			       unsigned default_workers, bool socket_passed)
{
	CommandLine result;
	result.options.workers = default_workers == 0 ? 1 : default_workers;

	for (std::size_t i = 0; i < arguments.size(); i++) {
		std::string_view argument = arguments[i];
		std::string_view name = argument;
		std::optional<std::string_view> value;

		// Accept both "--name value" and "--name=value".
		if (auto equals = argument.find('='); argument.starts_with("--") &&
						     equals != std::string_view::npos) {
			name = argument.substr(0, equals);
			value = argument.substr(equals + 1);
		}

		if (name == "--help" || name == "-h" || name == "--version") {
			if (value) {
				return usage_error(fmt::format("option '{}' takes no value", name));
			}
			result.action = name == "--version"
						? CommandLine::Action::show_version
						: CommandLine::Action::show_help;
			return result;
		}
		if (name == "--device-copy") {
			if (value) {
				return usage_error(fmt::format("option '{}' takes no value", name));
			}
			result.options.device_copy = true;
			continue;
		}
		const NumberOption *number = number_option(name);
		if (name != "--socket" && name != "--log-level" && name != "--segment-size" &&
		    name != "--worker-policy" && name != "--cpu-cgroup" && number == nullptr) {
			if (argument.starts_with("-")) {
				return usage_error(fmt::format("unknown option '{}'", argument));
			}
			return usage_error(fmt::format("unexpected argument '{}'", argument));
		}
		if (!value) {
			if (i + 1 == arguments.size()) {
				return usage_error(fmt::format("option '{}' needs a value", name));
			}
			value = arguments[++i];
		}

		if (number != nullptr) {
			auto parsed = parse_number(*value, number->low, number->high);
			if (!parsed) {
				return usage_error(fmt::format("{} must be a number from {} to {}, not '{}'",
							       name, number->low, number->high, *value));
			}
			number->set(result.options, *parsed);
		} else if (name == "--worker-policy") {
			auto policy = parse_worker_policy(*value);
			if (!policy) {
				return usage_error(fmt::format(
					"--worker-policy must be idle or other, not '{}'", *value));
			}
			result.options.worker_policy = *policy;
		} else if (name == "--socket") {
			if (value->empty()) {
				return usage_error("--socket needs a non-empty path");
			}
			result.options.socket_path = std::string(*value);
		} else if (name == "--cpu-cgroup") {
			if (!value->starts_with("/")) {
				return usage_error(fmt::format(
					"--cpu-cgroup needs an absolute path, not '{}'", *value));
			}
			result.options.cpu_cgroup = std::string(*value);
		} else if (name == "--segment-size") {
			auto bytes = parse_segment(*value);
			if (!bytes) {
				return usage_error(fmt::format(
					"--segment-size must be a size from 64K to 1G, not '{}'",
					*value));
			}
			result.options.segment_size = *bytes;
		} else {
			auto level = parse_log_level(*value);
			if (!level) {
				return usage_error(fmt::format(
					"--log-level must be error, warning, info or debug, not '{}'",
					*value));
			}
			result.options.log_level = *level;
		}
	}

	if (!result.options.cpu_cgroup.empty() &&
	    result.options.worker_policy != WorkerPolicy::idle) {
		// An idle cgroup without the guard could starve copies for good.
		return usage_error("--cpu-cgroup goes with --worker-policy idle");
	}
	if (result.options.socket_path.empty() && !socket_passed) {
		return usage_error("--socket PATH is required (unless the service manager "
				   "passes a socket)");
	}
	return result;
}

std::string usage_text(std::string_view program)
{
	return fmt::format(
		"Usage: {} --socket PATH [--workers N] [--segment-size SIZE]\n"
		"       [--queue-depth N] [--worker-policy idle|other] [--worker-nice N]\n"
		"       [--cpu-cgroup DIR] [--poll-us N] [--stall-timeout SECONDS]\n"
		"       [--device-copy] [--log-level LEVEL]\n"
		"\n"
		"Server-side copy helper for the Samba copyoffload VFS module.\n"
		"Runs in the foreground and serves copy requests on a unix\n"
		"SOCK_SEQPACKET socket; only root peers are accepted. Under\n"
		"systemd socket activation it serves the socket passed to it.\n"
		"\n"
		"  --socket PATH       listen on PATH (mode 0600; a stale socket is replaced);\n"
		"                      not needed with socket activation\n"
		"  --workers N         copy worker threads (default: the CPUs it may use, max {})\n"
		"  --segment-size SIZE largest piece of data one worker copies at a time;\n"
		"                      larger copies are spread over the workers\n"
		"                      (64K to 1G, default 1M)\n"
		"  --queue-depth N     io_uring reads and writes in flight per worker,\n"
		"                      each through a 256 KiB registered buffer (1 to {}, default 8)\n"
		"  --worker-policy P   idle (default): the workers use the CPU time smbd\n"
		"                      and other processes leave (SCHED_IDLE), lifted\n"
		"                      to SCHED_OTHER while they starve; other: normal\n"
		"                      scheduling (SCHED_OTHER)\n"
		"  --worker-nice N     add N to the workers' nice value, which counts\n"
		"                      under SCHED_OTHER (0 to {}, default 10)\n"
		"  --cpu-cgroup DIR    run the workers in this cgroup v1 cpu directory\n"
		"                      (created if missing), marked idle (cpu.idle), so\n"
		"                      that they yield to smbd in other scheduling groups\n"
		"                      too; set to 0 while they starve\n"
		"  --poll-us N         after a piece, look for the next request without\n"
		"                      sleeping for N microseconds (0 to {}, default 150)\n"
		"  --stall-timeout S   a worker with no progress for S seconds is taken to\n"
		"                      be stuck on a hung filesystem: its connections go\n"
		"                      to other workers, one is added, and the copies on\n"
		"                      the filesystems of its copy wait for it\n"
		"                      (0 to {}, 0: never; default 10)\n"
		"  --device-copy       copy between two block devices with the devices' own\n"
		"                      copy commands (NVMe Copy, SCSI EXTENDED COPY); keeps\n"
		"                      CAP_SYS_ADMIN and CAP_SYS_RAWIO for them\n"
		"  --log-level LEVEL   error, warning, info (default) or debug\n"
		"  -h, --help          show this help and exit\n"
		"  --version           show the version and exit\n",
		program, max_workers, max_queue_depth, max_worker_nice, max_poll_usec,
		max_stall_seconds);
}

} // namespace copyoffload
