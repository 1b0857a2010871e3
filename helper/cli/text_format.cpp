#include "text_format.hpp"

#include <fmt/format.h>

#include <array>

namespace copyoffload::cli {

std::string json_string(std::string_view text)
{
	std::string out = "\"";
	for (char c : text) {
		switch (c) {
		case '"': out += "\\\""; break;
		case '\\': out += "\\\\"; break;
		case '\n': out += "\\n"; break;
		case '\t': out += "\\t"; break;
		default:
			if (static_cast<unsigned char>(c) < 0x20) {
				out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
			} else {
				out += c;
			}
		}
	}
	return out + '"';
}

std::string human_bytes(double bytes)
{
	static constexpr std::array units{"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	std::size_t unit = 0;
	while (bytes >= 1024 && unit + 1 < units.size()) {
		bytes /= 1024;
		unit++;
	}
	if (unit == 0) {
		return fmt::format("{:.0f} B", bytes);
	}
	return fmt::format("{:.1f} {}", bytes, units[unit]);
}

std::string human_rate(double bytes, double seconds)
{
	if (seconds <= 0) {
		return "-";
	}
	return human_bytes(bytes / seconds) + "/s";
}

} // namespace copyoffload::cli
