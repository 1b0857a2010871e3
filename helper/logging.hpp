// Line-oriented logging to a descriptor (stderr by default): one write(2)
// per event, so lines from concurrent threads never interleave.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace copyoffload {

// Ordered from most to least severe: a logger at level L prints every
// message whose level is <= L.
enum class LogLevel { error, warning, info, debug };

std::string_view log_level_name(LogLevel level);
std::optional<LogLevel> parse_log_level(std::string_view name);

// The level is fixed at construction, so a Logger is safe to share between
// threads without locking.
class Logger {
public:
	explicit Logger(LogLevel level, int fd = 2) : level_(level), fd_(fd) {}

	[[nodiscard]] bool enabled(LogLevel level) const { return level <= level_; }

	template <typename... Args>
	void log(LogLevel level, fmt::format_string<Args...> format, Args &&...args) const
	{
		if (enabled(level)) {
			write_line(level, fmt::format(format, std::forward<Args>(args)...));
		}
	}

	template <typename... Args>
	void error(fmt::format_string<Args...> format, Args &&...args) const
	{
		log(LogLevel::error, format, std::forward<Args>(args)...);
	}
	template <typename... Args>
	void warning(fmt::format_string<Args...> format, Args &&...args) const
	{
		log(LogLevel::warning, format, std::forward<Args>(args)...);
	}
	template <typename... Args>
	void info(fmt::format_string<Args...> format, Args &&...args) const
	{
		log(LogLevel::info, format, std::forward<Args>(args)...);
	}
	template <typename... Args>
	void debug(fmt::format_string<Args...> format, Args &&...args) const
	{
		log(LogLevel::debug, format, std::forward<Args>(args)...);
	}

private:
	void write_line(LogLevel level, std::string_view message) const;

	LogLevel level_;
	int fd_;
};

// "ENOSPC" for a known errno, otherwise its number; "0" for success.
std::string errno_name(int error);

// "ENOSPC (No space left on device)"; thread-safe, unlike strerror().
std::string describe_errno(int error);

} // namespace copyoffload
