// The copyoffload tool's command line. Parsing is a pure function, so tests
// can run it on any argument list.
#pragma once

#include "local_copy.hpp"

#include <span>
#include <string>
#include <string_view>

namespace copyoffload::cli {

struct CliCommand {
	enum class Action { probe, stats, copy, help, version, usage_error };

	Action action = Action::help;
	bool json = false;        // probe, stats
	std::string path;         // probe: PATH|DEVICE
	std::string socket_path;  // stats
	LocalCopyOptions copy;    // copy (progress is decided at run time)
	std::string error;        // usage_error
};

// `arguments` excludes argv[0].
CliCommand parse_cli(std::span<const std::string_view> arguments);

std::string cli_usage();

inline constexpr int cli_exit_usage = 2;

} // namespace copyoffload::cli
