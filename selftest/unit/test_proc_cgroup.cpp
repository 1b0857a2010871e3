// Reading /proc/PID/cgroup: which cgroup a controller puts a process in,
// from texts as the kernel writes them (cgroups(7)).

#include "proc_cgroup.hpp"

#include "helper_test_support.hpp"

using namespace copyoffload;

namespace {

// A hybrid host (cgroup v1 controllers beside an empty unified hierarchy),
// as on this project's test machines.
constexpr std::string_view hybrid = "9:name=systemd:/\n"
				    "4:memory:/process_api/2dd4\n"
				    "2:cpuacct:/\n"
				    "1:cpu:/copyoffloadd\n"
				    "0::/\n";

void assert_path(std::optional<std::string_view> path, std::string_view expected)
{
	assert_true(path.has_value());
	assert_true(*path == expected);
}

void test_v1_controller_alone_or_among_others(void **)
{
	assert_path(cgroup_v1_path(hybrid, "cpu"), "/copyoffloadd");
	assert_path(cgroup_v1_path(hybrid, "cpuacct"), "/");
	assert_path(cgroup_v1_path(hybrid, "memory"), "/process_api/2dd4");
	// Debian's usual v1 layout mounts cpu and cpuacct together.
	assert_path(cgroup_v1_path("3:cpu,cpuacct:/system.slice/smbd.service\n", "cpu"),
		    "/system.slice/smbd.service");
	assert_path(cgroup_v1_path("3:cpuacct,cpu:/a\n", "cpu"), "/a");
}

void test_v1_names_are_matched_whole(void **)
{
	// "cpuset" and "cpuacct" are not "cpu"; a named hierarchy is not a controller.
	assert_false(cgroup_v1_path("5:cpuset:/x\n2:cpuacct:/y\n", "cpu").has_value());
	assert_false(cgroup_v1_path("9:name=systemd:/\n", "systemd").has_value());
	assert_false(cgroup_v1_path("", "cpu").has_value());
}

void test_v2_path(void **)
{
	assert_path(cgroup_v2_path(hybrid), "/");
	assert_path(cgroup_v2_path("0::/system.slice/copyoffloadd.service\n"),
		    "/system.slice/copyoffloadd.service");
	// The unified line never names a controller, and v1 lines are not it.
	assert_false(cgroup_v2_path("1:cpu:/x\n").has_value());
	// A path may hold ':'; the last line may lack its newline.
	assert_path(cgroup_v2_path("1:cpu:/\n0::/odd:name"), "/odd:name");
}

void test_malformed_lines_are_skipped(void **)
{
	assert_path(cgroup_v1_path("garbage\n1:cpu\n2:cpu:/found\n", "cpu"), "/found");
	assert_false(cgroup_v2_path("0:\n\n").has_value());
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_controller_alone_or_among_others),
		cmocka_unit_test(test_v1_names_are_matched_whole),
		cmocka_unit_test(test_v2_path),
		cmocka_unit_test(test_malformed_lines_are_skipped),
	};
	return cmocka_run_group_tests_name("copyoffloadd_proc_cgroup", tests, nullptr, nullptr);
}
