#include "logging.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>

namespace copyoffload {

namespace {

constexpr std::array level_names{
	std::string_view{"error"},
	std::string_view{"warning"},
	std::string_view{"info"},
	std::string_view{"debug"},
};

// UTC with microseconds, e.g. 2024-05-01T12:34:56.123456Z.
std::string timestamp_now()
{
	timespec now{};
	clock_gettime(CLOCK_REALTIME, &now);
	std::tm utc{};
	gmtime_r(&now.tv_sec, &utc);
	return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
			   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
			   utc.tm_hour, utc.tm_min, utc.tm_sec,
			   now.tv_nsec / 1000);
}

} // namespace

std::string_view log_level_name(LogLevel level)
{
	return level_names.at(static_cast<std::size_t>(level));
}

std::optional<LogLevel> parse_log_level(std::string_view name)
{
	for (std::size_t i = 0; i < level_names.size(); i++) {
		if (level_names[i] == name) {
			return static_cast<LogLevel>(i);
		}
	}
	return std::nullopt;
}

void Logger::write_line(LogLevel level, std::string_view message) const
{
	std::string line = fmt::format("{} {}: {}\n", timestamp_now(),
				       log_level_name(level), message);
	std::string_view rest{line};
	while (!rest.empty()) {
		ssize_t n = ::write(fd_, rest.data(), rest.size());
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return; // nowhere left to report a logging failure
		}
		rest.remove_prefix(static_cast<std::size_t>(n));
	}
}

std::string errno_name(int error)
{
	if (error == 0) {
		return "0";
	}
	if (const char *name = strerrorname_np(error)) {
		return name;
	}
	return std::to_string(error);
}

std::string describe_errno(int error)
{
	return fmt::format("{} ({})", errno_name(error),
			   std::generic_category().message(error));
}

} // namespace copyoffload
