#include "cli_options.hpp"

#include "copyoffload_config_parse.h"

#include <fmt/format.h>

#include <optional>
#include <vector>

namespace copyoffload::cli {

namespace {

CliCommand usage_error(std::string message)
{
	CliCommand command;
	command.action = CliCommand::Action::usage_error;
	command.error = std::move(message);
	return command;
}

// An option's name and value, as "--name value" or "--name=value".
struct Option {
	std::string_view name;
	std::optional<std::string_view> value;
};

Option split_option(std::string_view argument)
{
	if (auto equals = argument.find('='); equals != std::string_view::npos) {
		return {argument.substr(0, equals), argument.substr(equals + 1)};
	}
	return {argument, std::nullopt};
}

void collect_rejected(const char *word, std::size_t length, const char *why, void *data)
{
	static_cast<std::vector<std::string> *>(data)->push_back(
		fmt::format("'{}' ({})", std::string_view(word, length), why));
}

std::optional<std::string> parse_methods(std::string_view text, LocalCopyOptions &copy)
{
	std::string list(text);
	std::vector<std::string> rejected;
	std::uint8_t order[COPYOFFLOAD_METHOD_COUNT];
	std::size_t count = copyoffload_parse_methods(list.c_str(), order, collect_rejected,
						      &rejected);
	if (!rejected.empty() || count == 0) {
		return fmt::format("--method {}: {}; known methods: clone, copy_file_range, "
				   "device, read_write",
				   text, rejected.empty() ? "no method" : rejected.front());
	}
	copy.methods.clear();
	for (std::size_t i = 0; i < count; i++) {
		copy.methods.push_back(static_cast<copyoffload_method>(order[i]));
	}
	return std::nullopt;
}

std::optional<std::string> parse_segment(std::string_view text, LocalCopyOptions &copy)
{
	std::string value(text);
	std::uint64_t bytes = 0;
	if (!copyoffload_parse_size(value.c_str(), &bytes) ||
	    (bytes != 0 && (bytes < COPYOFFLOAD_MIN_SEGMENT || bytes > COPYOFFLOAD_MAX_SEGMENT))) {
		return fmt::format("--segment {}: not 0 or a size from 64K to 1G", text);
	}
	copy.segment = bytes;
	return std::nullopt;
}

} // namespace

CliCommand parse_cli(std::span<const std::string_view> arguments)
{
	if (arguments.empty()) {
		return usage_error("no command given");
	}
	std::string_view verb = arguments[0];
	CliCommand command;
	if (verb == "help" || verb == "--help" || verb == "-h") {
		command.action = CliCommand::Action::help;
		return command;
	}
	if (verb == "--version") {
		command.action = CliCommand::Action::version;
		return command;
	}
	if (verb == "probe") {
		command.action = CliCommand::Action::probe;
	} else if (verb == "stats") {
		command.action = CliCommand::Action::stats;
		command.socket_path = COPYOFFLOAD_DEFAULT_SOCKET;
	} else if (verb == "copy") {
		command.action = CliCommand::Action::copy;
	} else {
		return usage_error(fmt::format("unknown command '{}'", verb));
	}

	std::vector<std::string_view> operands;
	for (std::size_t i = 1; i < arguments.size(); i++) {
		std::string_view argument = arguments[i];
		if (!argument.starts_with("--") || argument == "--") {
			if (argument == "--") {
				operands.insert(operands.end(), arguments.begin() + i + 1,
						arguments.end());
				break;
			}
			operands.push_back(argument);
			continue;
		}
		Option option = split_option(argument);
		bool takes_value = (option.name == "--socket" && verb == "stats") ||
				   ((option.name == "--method" || option.name == "--segment") &&
				    verb == "copy");
		bool is_flag = option.name == "--json" && verb != "copy";
		if (!takes_value && !is_flag) {
			return usage_error(fmt::format("{}: unknown option '{}'", verb, option.name));
		}
		if (is_flag) {
			if (option.value) {
				return usage_error(fmt::format("option '{}' takes no value",
							       option.name));
			}
			command.json = true;
			continue;
		}
		if (!option.value) {
			if (i + 1 == arguments.size()) {
				return usage_error(fmt::format("option '{}' needs a value",
							       option.name));
			}
			option.value = arguments[++i];
		}
		std::optional<std::string> error;
		if (option.name == "--socket") {
			if (option.value->empty()) {
				error = "--socket needs a non-empty path";
			}
			command.socket_path = std::string(*option.value);
		} else if (option.name == "--method") {
			error = parse_methods(*option.value, command.copy);
		} else {
			error = parse_segment(*option.value, command.copy);
		}
		if (error) {
			return usage_error(*error);
		}
	}

	std::size_t wanted = verb == "probe" ? 1 : verb == "copy" ? 2 : 0;
	if (operands.size() != wanted) {
		return usage_error(fmt::format("{} takes {} ({} given)", verb,
					       verb == "probe"	 ? "one PATH or DEVICE"
					       : verb == "copy" ? "SRC and DST"
								: "no operands",
					       operands.size()));
	}
	if (verb == "probe") {
		command.path = std::string(operands[0]);
	} else if (verb == "copy") {
		command.copy.source = std::string(operands[0]);
		command.copy.destination = std::string(operands[1]);
	}
	return command;
}

std::string cli_usage()
{
	return "Usage: copyoffload probe [--json] PATH|DEVICE\n"
	       "       copyoffload stats [--json] [--socket PATH]\n"
	       "       copyoffload copy [--method LIST] [--segment SIZE] SRC DST\n"
	       "       copyoffload --help | --version\n"
	       "\n"
	       "Tools for copyoffload, Samba server-side copy through copyoffloadd.\n"
	       "\n"
	       "  probe   try each copy method on scratch files at PATH (a directory, a\n"
	       "          file's directory, or a block device) and show what it did\n"
	       "  stats   show copyoffloadd's counters per share and method (as root)\n"
	       "          --socket PATH   the daemon's socket (default " COPYOFFLOAD_DEFAULT_SOCKET ")\n"
	       "  copy    copy SRC over DST through the copy engine, in this process\n"
	       "          --method LIST   methods to use, most preferred first, e.g.\n"
	       "                          clone,copy_file_range (default: all)\n"
	       "          --segment SIZE  largest step, 64K to 1G; 0 (default): 8M, clones 1G\n"
	       "          a progress bar is drawn when standard output is a terminal\n"
	       "  --json  machine-readable output (probe, stats)\n";
}

} // namespace copyoffload::cli
