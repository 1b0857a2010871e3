// copyoffload: probe, statistics and local copies for copyoffload, the
// Samba server-side copy offload. See copyoffload(1).
#include "cli_options.hpp"
#include "daemon_client.hpp"
#include "local_copy.hpp"
#include "probe.hpp"
#include "stats_report.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <exception>
#include <vector>

#ifndef COPYOFFLOAD_VERSION
#define COPYOFFLOAD_VERSION "unknown"
#endif

using namespace copyoffload::cli;

namespace {

int run_probe(const CliCommand &command)
{
	ProbeReport report = probe(command.path);
	fmt::print("{}", command.json ? probe_json(report) : probe_table(report));
	return report.error.empty() ? 0 : 1;
}

int run_stats(const CliCommand &command)
{
	DaemonClient client = DaemonClient::connect(command.socket_path);
	auto records = client.fetch_stats();
	fmt::print("{}", command.json ? stats_json(records) : stats_table(records));
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	std::vector<std::string_view> arguments(argv + (argc > 0 ? 1 : 0), argv + argc);
	CliCommand command = parse_cli(arguments);
	try {
		switch (command.action) {
		case CliCommand::Action::help:
			fmt::print("{}", cli_usage());
			return 0;
		case CliCommand::Action::version:
			fmt::print("copyoffload {}\n", COPYOFFLOAD_VERSION);
			return 0;
		case CliCommand::Action::usage_error:
			fmt::print(stderr, "copyoffload: {}\n{}", command.error, cli_usage());
			return cli_exit_usage;
		case CliCommand::Action::probe:
			return run_probe(command);
		case CliCommand::Action::stats:
			return run_stats(command);
		case CliCommand::Action::copy:
			command.copy.progress = ::isatty(STDOUT_FILENO) == 1;
			return local_copy(command.copy, stdout, stderr);
		}
	} catch (const std::exception &e) {
		fmt::print(stderr, "copyoffload: {}\n", e.what());
		return 1;
	}
	return 1;
}
