// The copyoffload tool's pure parts: command line, progress line, units,
// JSON strings and the statistics table.
#include "cli_options.hpp"
#include "progress_bar.hpp"
#include "stats_report.hpp"
#include "text_format.hpp"

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace copyoffload::cli;
using namespace test_support::methods;

namespace {

CliCommand parse(std::initializer_list<std::string_view> arguments)
{
	std::vector<std::string_view> list(arguments);
	return parse_cli(list);
}

void assert_usage_error(std::initializer_list<std::string_view> arguments,
			std::string_view fragment)
{
	CliCommand command = parse(arguments);
	assert_int_equal(command.action, CliCommand::Action::usage_error);
	test_support::assert_contains(command.error, fragment);
}

void test_commands(void **)
{
	CliCommand command = parse({"probe", "/srv"});
	assert_int_equal(command.action, CliCommand::Action::probe);
	assert_string_equal(command.path.c_str(), "/srv");
	assert_false(command.json);
	assert_true(parse({"probe", "--json", "/dev/sda"}).json);

	command = parse({"stats"});
	assert_int_equal(command.action, CliCommand::Action::stats);
	assert_string_equal(command.socket_path.c_str(), COPYOFFLOAD_DEFAULT_SOCKET);
	command = parse({"stats", "--socket=/run/x.sock", "--json"});
	assert_string_equal(command.socket_path.c_str(), "/run/x.sock");
	assert_true(command.json);

	command = parse({"copy", "--method", "read_write, clone", "--segment=1M", "a", "b"});
	assert_int_equal(command.action, CliCommand::Action::copy);
	assert_string_equal(command.copy.source.c_str(), "a");
	assert_string_equal(command.copy.destination.c_str(), "b");
	assert_int_equal(command.copy.methods.size(), 2);
	assert_int_equal(command.copy.methods[0], RW);
	assert_int_equal(command.copy.methods[1], CLONE);
	assert_int_equal(command.copy.segment, 1 << 20);
	command = parse({"copy", "--", "-odd", "--name"});
	assert_string_equal(command.copy.source.c_str(), "-odd");
	assert_string_equal(command.copy.destination.c_str(), "--name");
	assert_true(parse({"copy", "a", "b"}).copy.methods.empty());

	assert_int_equal(parse({"--help"}).action, CliCommand::Action::help);
	assert_int_equal(parse({"help"}).action, CliCommand::Action::help);
	assert_int_equal(parse({"--version"}).action, CliCommand::Action::version);
}

void test_usage_errors(void **)
{
	assert_usage_error({}, "no command given");
	assert_usage_error({"remove"}, "unknown command 'remove'");
	assert_usage_error({"probe"}, "probe takes one PATH or DEVICE (0 given)");
	assert_usage_error({"probe", "a", "b"}, "(2 given)");
	assert_usage_error({"stats", "x"}, "stats takes no operands (1 given)");
	assert_usage_error({"stats", "--socket"}, "option '--socket' needs a value");
	assert_usage_error({"stats", "--socket="}, "--socket needs a non-empty path");
	assert_usage_error({"stats", "--json=yes"}, "option '--json' takes no value");
	assert_usage_error({"probe", "--socket", "/x", "/srv"}, "probe: unknown option '--socket'");
	assert_usage_error({"copy", "a"}, "copy takes SRC and DST (1 given)");
	assert_usage_error({"copy", "--method", "", "a", "b"}, "--method : no method");
	assert_usage_error({"copy", "--method", "clone,reflink", "a", "b"},
			   "'reflink' (unknown method)");
	assert_usage_error({"copy", "--method", "clone,clone", "a", "b"}, "'clone' (listed twice)");
	assert_usage_error({"copy", "--segment", "2G", "a", "b"}, "not 0 or a size from 64K to 1G");
	assert_usage_error({"copy", "--segment", "lots", "a", "b"}, "--segment lots");
	assert_true(cli_usage().find("copyoffload copy [--method LIST]") != std::string::npos);
}

void test_progress_line(void **)
{
	assert_string_equal(render_progress(0, 100 << 20, 0, 10).c_str(),
			    "[----------]   0%  0 B / 100.0 MiB  -");
	assert_string_equal(render_progress(55 << 20, 100 << 20, 2.0, 10).c_str(),
			    "[#####-----]  55%  55.0 MiB / 100.0 MiB  27.5 MiB/s");
	assert_string_equal(render_progress(100 << 20, 100 << 20, 1.0, 10).c_str(),
			    "[##########] 100%  100.0 MiB / 100.0 MiB  100.0 MiB/s");
	// An empty file is complete at once; more than the total is capped.
	assert_string_equal(render_progress(0, 0, 0, 4).c_str(), "[####] 100%  0 B / 0 B  -");
	assert_true(render_progress(200, 100, 1, 4).starts_with("[####] 100%"));
}

void test_units_and_json(void **)
{
	assert_string_equal(human_bytes(0).c_str(), "0 B");
	assert_string_equal(human_bytes(1023).c_str(), "1023 B");
	assert_string_equal(human_bytes(1536).c_str(), "1.5 KiB");
	assert_string_equal(human_bytes(3.0 * (1ull << 40)).c_str(), "3.0 TiB");
	assert_string_equal(human_rate(1 << 20, 0.5).c_str(), "2.0 MiB/s");
	assert_string_equal(human_rate(1, 0).c_str(), "-");
	assert_string_equal(json_string("plain").c_str(), "\"plain\"");
	assert_string_equal(json_string("a\"b\\c\nd\te\x01\xc3\xa4").c_str(),
			    "\"a\\\"b\\\\c\\nd\\te\\u0001\xc3\xa4\"");
}

void test_stats_table(void **)
{
	std::vector<copyoffload_share_stats> records(3);
	// "": no copies yet, left out; "idle": likewise; "busy": shown.
	std::strcpy(records[1].name, "busy");
	std::strcpy(records[2].name, "idle");
	records[1].in_flight = 2;
	records[1].running = 1;
	records[1].slots[COPYOFFLOAD_STATS_TOTAL] = {5, 1, 3000, 10, 20, 30, 40};
	records[1].slots[CLONE] = {4, 0, 2000, 1, 2, 3, 4};
	records[1].slots[RW] = {1, 1, 1000, 5, 5, 5, 5};
	std::string table = stats_table(records);
	assert_true(table.starts_with("SHARE"));
	assert_true(table.find("busy") != std::string::npos);
	assert_true(table.find("idle") == std::string::npos);
	assert_true(table.find("(none)") == std::string::npos);
	assert_true(table.find("copy_file_range") == std::string::npos); // unused method
	assert_int_equal(std::count(table.begin(), table.end(), '\n'), 4);

	records[0].slots[COPYOFFLOAD_STATS_TOTAL] = {1, 0, 7, 1, 1, 1, 1};
	assert_true(stats_table(records).find("(none)") != std::string::npos);

	std::string json = stats_json(records);
	assert_true(json.find("\"name\": \"busy\", \"in_flight\": 2, \"running\": 1") !=
		    std::string::npos);
	assert_true(json.find("\"clone\": {\"requests\": 4, \"errors\": 0, \"bytes\": 2000") !=
		    std::string::npos);
	assert_true(json.find("\"name\": \"idle\"") != std::string::npos); // JSON has them all

	std::vector<copyoffload_share_stats> empty(1);
	assert_true(stats_table(empty).find("(no copies since copyoffloadd started)") !=
		    std::string::npos);
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_progress_line),
		cmocka_unit_test(test_units_and_json),
		cmocka_unit_test(test_stats_table),
	};
	return cmocka_run_group_tests_name("copyoffload_cli", tests, nullptr, nullptr);
}
