#include "proc_cgroup.hpp"

namespace copyoffload {

namespace {

struct CgroupLine {
	std::string_view id;
	std::string_view controllers;
	std::string_view path;
};

// Calls `found` for each well-formed line until it returns true; returns
// that line's path. The path may itself hold ':', so only the first two
// separate fields.
template <typename Predicate>
std::optional<std::string_view> find_line(std::string_view text, Predicate found)
{
	while (!text.empty()) {
		const auto end = text.find('\n');
		const std::string_view line = text.substr(0, end);
		text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);

		const auto first = line.find(':');
		const auto second = first == std::string_view::npos ? first
								    : line.find(':', first + 1);
		if (second == std::string_view::npos) {
			continue;
		}
		const CgroupLine fields{line.substr(0, first),
					line.substr(first + 1, second - first - 1),
					line.substr(second + 1)};
		if (found(fields)) {
			return fields.path;
		}
	}
	return std::nullopt;
}

bool lists(std::string_view controllers, std::string_view controller)
{
	while (!controllers.empty()) {
		const auto comma = controllers.find(',');
		if (controllers.substr(0, comma) == controller) {
			return true;
		}
		if (comma == std::string_view::npos) {
			break;
		}
		controllers.remove_prefix(comma + 1);
	}
	return false;
}

} // namespace

std::optional<std::string_view> cgroup_v1_path(std::string_view proc_cgroup,
					       std::string_view controller)
{
	return find_line(proc_cgroup, [controller](const CgroupLine &line) {
		return line.id != "0" && lists(line.controllers, controller);
	});
}

std::optional<std::string_view> cgroup_v2_path(std::string_view proc_cgroup)
{
	return find_line(proc_cgroup, [](const CgroupLine &line) {
		return line.id == "0" && line.controllers.empty();
	});
}

} // namespace copyoffload
