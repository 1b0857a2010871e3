#include "autogroup_check.hpp"

#include "proc_cgroup.hpp"

#include <sys/statfs.h>

#include <linux/magic.h>

#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace copyoffload {

namespace {

std::string read_text(const std::string &path)
{
	std::ifstream file(path);
	return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// Where the unified hierarchy is mounted, if at its usual place.
std::optional<std::string> cgroup2_mount()
{
	for (const char *path : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
		struct statfs fs {};
		if (::statfs(path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
			return path;
		}
	}
	return std::nullopt;
}

// Whether this process is scheduled in the root CPU cgroup, the only one
// whose tasks the kernel puts in autogroups.
bool in_root_cpu_cgroup(const std::string &proc_cgroup)
{
	if (const auto v1 = cgroup_v1_path(proc_cgroup, "cpu")) {
		return *v1 == "/";
	}
	const auto v2 = cgroup_v2_path(proc_cgroup);
	if (!v2 || *v2 == "/") {
		return true;
	}
	const auto mount = cgroup2_mount();
	if (!mount) {
		return true;
	}
	// Without the cpu controller a v2 cgroup's tasks are scheduled in the
	// nearest ancestor that has it: the root, if none does (systemd's
	// default for services that set no CPU limits or weights).
	const std::string controllers =
		" " + read_text(*mount + std::string(*v2) + "/cgroup.controllers");
	return controllers.find(" cpu ") == std::string::npos &&
	       controllers.find(" cpu\n") == std::string::npos;
}

} // namespace

bool autogroups_apply()
{
	return read_text("/proc/sys/kernel/sched_autogroup_enabled").starts_with("1") &&
	       in_root_cpu_cgroup(read_text("/proc/self/cgroup"));
}

} // namespace copyoffload
