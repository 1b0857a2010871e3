#include "options.hpp"

#include <charconv>
#include <optional>

namespace copyoffload {

namespace {

std::optional<unsigned> parse_worker_count(std::string_view text)
{
	unsigned value = 0;
	const char *end = text.data() + text.size();
	auto [stop, error] = std::from_chars(text.data(), end, value);
	if (error != std::errc{} || stop != end || value == 0 ||
	    value > max_workers) {
		return std::nullopt;
	}
	return value;
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
		if (name != "--socket" && name != "--workers" && name != "--log-level") {
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

		if (name == "--socket") {
			if (value->empty()) {
				return usage_error("--socket needs a non-empty path");
			}
			result.options.socket_path = std::string(*value);
		} else if (name == "--workers") {
			auto workers = parse_worker_count(*value);
			if (!workers) {
				return usage_error(fmt::format(
					"--workers must be a number from 1 to {}, not '{}'",
					max_workers, *value));
			}
			result.options.workers = *workers;
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

	if (result.options.socket_path.empty() && !socket_passed) {
		return usage_error("--socket PATH is required (unless the service manager "
				   "passes a socket)");
	}
	return result;
}

std::string usage_text(std::string_view program)
{
	return fmt::format(
		"Usage: {} --socket PATH [--workers N] [--log-level LEVEL]\n"
		"\n"
		"Server-side copy helper for the Samba copyoffload VFS module.\n"
		"Runs in the foreground and serves copy requests on a unix\n"
		"SOCK_SEQPACKET socket; only root peers are accepted. Under\n"
		"systemd socket activation it serves the socket passed to it.\n"
		"\n"
		"  --socket PATH       listen on PATH (mode 0600; a stale socket is replaced);\n"
		"                      not needed with socket activation\n"
		"  --workers N         copy worker threads (default: online CPUs, max {})\n"
		"  --log-level LEVEL   error, warning, info (default) or debug\n"
		"  -h, --help          show this help and exit\n"
		"  --version           show the version and exit\n",
		program, max_workers);
}

} // namespace copyoffload
