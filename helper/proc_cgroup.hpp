// Reading /proc/PID/cgroup (cgroups(7)): one line per hierarchy,
// "ID:CONTROLLERS:PATH", where cgroup v2's unified hierarchy is "0::PATH".
// Pure, for the unit tests.
#pragma once

#include <optional>
#include <string_view>

namespace copyoffload {

// The path in the cgroup v1 hierarchy that `controller` (such as "cpu") is
// mounted with, alone or beside others ("cpu,cpuacct"); nothing if no v1
// hierarchy has it.
[[nodiscard]] std::optional<std::string_view> cgroup_v1_path(std::string_view proc_cgroup,
							     std::string_view controller);

// The path in the unified (v2) hierarchy; nothing if there is none.
[[nodiscard]] std::optional<std::string_view> cgroup_v2_path(std::string_view proc_cgroup);

} // namespace copyoffload
