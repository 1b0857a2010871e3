// copyoffloadd command-line parsing.

#include "options.hpp"

#include <initializer_list>
#include <string_view>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;

namespace {

CommandLine parse(std::initializer_list<std::string_view> arguments, unsigned cpus = 6)
{
	std::vector<std::string_view> list(arguments);
	return parse_command_line(list, cpus);
}

void assert_usage_error(std::initializer_list<std::string_view> arguments,
			std::string_view expected_fragment)
{
	CommandLine result = parse(arguments);
	assert_int_equal(result.action, CommandLine::Action::usage_error);
	test_support::assert_contains(result.error, expected_fragment);
}

void test_defaults(void **)
{
	CommandLine result = parse({"--socket", "/run/copyoffload.sock"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_string_equal(result.options.socket_path.c_str(), "/run/copyoffload.sock");
	assert_int_equal(result.options.workers, 6);
	assert_int_equal(result.options.log_level, LogLevel::info);
	assert_false(result.options.device_copy);
}

void test_device_copy(void **)
{
	CommandLine result = parse({"--device-copy", "--socket", "/s"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_true(result.options.device_copy);
	assert_string_equal(result.options.socket_path.c_str(), "/s");
	// A flag: it takes no value, and does not eat the next argument.
	assert_usage_error({"--socket", "/s", "--device-copy=yes"}, "takes no value");
	assert_true(usage_text("copyoffloadd").find("--device-copy") != std::string::npos);
}

void test_all_options_both_spellings(void **)
{
	CommandLine result = parse({"--socket=/s", "--workers", "3", "--log-level=debug"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_string_equal(result.options.socket_path.c_str(), "/s");
	assert_int_equal(result.options.workers, 3);
	assert_int_equal(result.options.log_level, LogLevel::debug);

	result = parse({"--workers=1024", "--log-level", "error", "--socket", "/t"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_int_equal(result.options.workers, 1024);
	assert_int_equal(result.options.log_level, LogLevel::error);

	result = parse({"--socket", "/t", "--log-level", "warning"});
	assert_int_equal(result.options.log_level, LogLevel::warning);
}

void test_later_option_wins(void **)
{
	CommandLine result = parse({"--socket", "/a", "--socket", "/b", "--workers", "2",
				    "--workers", "5"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_string_equal(result.options.socket_path.c_str(), "/b");
	assert_int_equal(result.options.workers, 5);
}

void test_help_and_version(void **)
{
	assert_int_equal(parse({"--help"}).action, CommandLine::Action::show_help);
	assert_int_equal(parse({"-h"}).action, CommandLine::Action::show_help);
	assert_int_equal(parse({"--version"}).action, CommandLine::Action::show_version);
	// --help wins even without the otherwise required --socket.
	assert_int_equal(parse({"--workers", "2", "--help"}).action,
			 CommandLine::Action::show_help);
	assert_true(usage_text("copyoffloadd").find("--socket PATH") != std::string::npos);
}

void test_usage_errors(void **)
{
	assert_usage_error({}, "--socket PATH is required");
	assert_usage_error({"--workers", "2"}, "--socket PATH is required");
	assert_usage_error({"--socket"}, "needs a value");
	assert_usage_error({"--socket="}, "non-empty");
	assert_usage_error({"--socket", "/s", "--workers"}, "needs a value");
	assert_usage_error({"--socket", "/s", "--workers", "0"}, "--workers must be");
	assert_usage_error({"--socket", "/s", "--workers", "1025"}, "--workers must be");
	assert_usage_error({"--socket", "/s", "--workers", "-1"}, "--workers must be");
	assert_usage_error({"--socket", "/s", "--workers", "2x"}, "--workers must be");
	assert_usage_error({"--socket", "/s", "--workers", ""}, "--workers must be");
	assert_usage_error({"--socket", "/s", "--workers", "99999999999999999999"},
			   "--workers must be");
	assert_usage_error({"--socket", "/s", "--log-level", "loud"}, "--log-level must be");
	assert_usage_error({"--socket", "/s", "--log-level", "INFO"}, "--log-level must be");
	assert_usage_error({"--socket", "/s", "--bogus"}, "unknown option '--bogus'");
	assert_usage_error({"--socket", "/s", "-x"}, "unknown option '-x'");
	assert_usage_error({"--socket", "/s", "extra"}, "unexpected argument 'extra'");
	assert_usage_error({"--help=yes"}, "takes no value");
}

// The engine's options: defaults, sizes with units, bounds.
void test_engine_options(void **)
{
	CommandLine result = parse({"--socket", "/s"});
	assert_true(result.options.segment_size == 1 << 20);
	assert_int_equal(result.options.queue_depth, 8);
	assert_true(result.options.worker_policy == WorkerPolicy::idle);
	assert_int_equal(result.options.worker_nice, 10);
	assert_int_equal(result.options.poll_usec, 150);
	assert_int_equal(result.options.stall_seconds, 10);

	result = parse({"--socket", "/s", "--segment-size", "256K", "--queue-depth=64",
			"--worker-policy", "other", "--worker-nice", "0", "--poll-us=0"});
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_true(result.options.segment_size == 256 << 10);
	assert_int_equal(result.options.queue_depth, 64);
	assert_true(result.options.worker_policy == WorkerPolicy::other);
	assert_int_equal(result.options.worker_nice, 0);
	assert_int_equal(result.options.poll_usec, 0);
	result = parse({"--socket", "/s", "--segment-size", "1G", "--worker-nice", "19",
			"--worker-policy=other"});
	assert_true(result.options.segment_size == std::uint64_t{1} << 30);
	assert_int_equal(result.options.worker_nice, 19);

	assert_usage_error({"--socket", "/s", "--segment-size", "32K"}, "--segment-size must be");
	assert_usage_error({"--socket", "/s", "--segment-size", "2G"}, "--segment-size must be");
	assert_usage_error({"--socket", "/s", "--segment-size", "lots"}, "--segment-size must be");
	assert_usage_error({"--socket", "/s", "--queue-depth", "0"}, "--queue-depth must be");
	assert_usage_error({"--socket", "/s", "--queue-depth", "65"}, "--queue-depth must be");
	assert_true(parse({"--socket", "/s", "--worker-policy", "idle"}).options.worker_policy ==
		    WorkerPolicy::idle);
	assert_usage_error({"--socket", "/s", "--worker-policy", "other", "--worker-nice", "20"},
			   "--worker-nice must be");
	assert_usage_error({"--socket", "/s", "--worker-policy", "other", "--worker-nice", "-1"},
			   "--worker-nice must be");
	assert_int_equal(parse({"--socket", "/s", "--worker-nice", "5"}).options.worker_nice, 5);
	assert_usage_error({"--socket", "/s", "--worker-policy", "batch"},
			   "--worker-policy must be idle or other, not 'batch'");
	assert_usage_error({"--socket", "/s", "--poll-us", "10001"}, "--poll-us must be");
	assert_int_equal(parse({"--socket", "/s", "--stall-timeout=0"}).options.stall_seconds, 0);
	assert_int_equal(parse({"--socket", "/s", "--stall-timeout", "3600"}).options.stall_seconds,
			 3600);
	assert_usage_error({"--socket", "/s", "--stall-timeout", "3601"},
			   "--stall-timeout must be a number from 0 to 3600");
	assert_usage_error({"--socket", "/s", "--stall-timeout", "10s"}, "--stall-timeout must be");
	assert_true(result.options.cpu_cgroup.empty());
	assert_string_equal(parse({"--socket", "/s", "--cpu-cgroup", "/sys/fs/cgroup/cpu/c"})
				    .options.cpu_cgroup.c_str(),
			    "/sys/fs/cgroup/cpu/c");
	assert_usage_error({"--socket", "/s", "--cpu-cgroup", "cpu/c"},
			   "--cpu-cgroup needs an absolute path, not 'cpu/c'");
	assert_usage_error({"--socket", "/s", "--cpu-cgroup=/c", "--worker-policy", "other"},
			   "--cpu-cgroup goes with --worker-policy idle");
	const std::string usage = usage_text("copyoffloadd");
	for (const char *option : {"--segment-size", "--queue-depth", "--worker-policy",
				   "--worker-nice", "--cpu-cgroup", "--poll-us", "--stall-timeout"}) {
		assert_true(usage.find(option) != std::string::npos);
	}
}

void test_socket_passed_by_service_manager(void **)
{
	// Socket activation supplies the socket: --socket is then optional.
	std::vector<std::string_view> none;
	CommandLine result = parse_command_line(none, 4, true);
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_true(result.options.socket_path.empty());
	std::vector<std::string_view> with_socket{"--socket", "/x", "--log-level", "debug"};
	result = parse_command_line(with_socket, 4, true);
	assert_int_equal(result.action, CommandLine::Action::run);
	assert_string_equal(result.options.socket_path.c_str(), "/x");
	assert_true(usage_text("copyoffloadd").find("socket activation") != std::string::npos);
}

void test_zero_cpus_defaults_to_one_worker(void **)
{
	CommandLine result = parse({"--socket", "/s"}, 0);
	assert_int_equal(result.options.workers, 1);
}

void test_log_levels(void **)
{
	assert_true(parse_log_level("error") == LogLevel::error);
	assert_true(parse_log_level("warning") == LogLevel::warning);
	assert_true(parse_log_level("info") == LogLevel::info);
	assert_true(parse_log_level("debug") == LogLevel::debug);
	assert_false(parse_log_level("warn").has_value());
	assert_string_equal(std::string(log_level_name(LogLevel::warning)).c_str(), "warning");

	Logger info(LogLevel::info, -1);
	assert_true(info.enabled(LogLevel::error));
	assert_true(info.enabled(LogLevel::info));
	assert_false(info.enabled(LogLevel::debug));
}

void test_errno_names(void **)
{
	assert_string_equal(errno_name(0).c_str(), "0");
	assert_string_equal(errno_name(ENOSPC).c_str(), "ENOSPC");
	assert_string_equal(errno_name(EBADMSG).c_str(), "EBADMSG");
	assert_string_equal(errno_name(100000).c_str(), "100000");
	assert_true(describe_errno(ENOSPC).starts_with("ENOSPC ("));
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_device_copy),
		cmocka_unit_test(test_all_options_both_spellings),
		cmocka_unit_test(test_later_option_wins),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_zero_cpus_defaults_to_one_worker),
		cmocka_unit_test(test_engine_options),
		cmocka_unit_test(test_socket_passed_by_service_manager),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_errno_names),
	};
	return cmocka_run_group_tests_name("copyoffloadd_options", tests, nullptr, nullptr);
}
