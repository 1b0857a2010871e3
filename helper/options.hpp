// Command line of copyoffloadd. Parsing is a pure function (no getopt
// global state) so tests can run it as often as they like.
#pragma once

#include "logging.hpp"

#include <span>
#include <string>
#include <string_view>

namespace copyoffload {

struct Options {
	std::string socket_path;
	unsigned workers = 1;
	LogLevel log_level = LogLevel::info;
};

inline constexpr unsigned max_workers = 1024;

struct CommandLine {
	enum class Action { run, show_help, show_version, usage_error };

	Action action = Action::run;
	Options options;
	std::string error; // set for usage_error
};

// `arguments` excludes argv[0]; `default_workers` is what --workers
// defaults to (the number of online CPUs in the real daemon). --socket is
// required unless `socket_passed` (socket activation supplies one).
CommandLine parse_command_line(std::span<const std::string_view> arguments,
			       unsigned default_workers, bool socket_passed = false);

std::string usage_text(std::string_view program);

// Exit status for a command line the daemon cannot run with.
inline constexpr int exit_usage = 2;

} // namespace copyoffload
