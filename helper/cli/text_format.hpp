// Small text helpers of the copyoffload tool: JSON strings, byte counts and
// rates for people.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace copyoffload::cli {

// `text` as a JSON string literal, quotes included (UTF-8 passes through;
// quotes, backslashes and control characters are escaped).
std::string json_string(std::string_view text);

// 1536 -> "1.5 KiB"; below 1 KiB: "512 B".
std::string human_bytes(double bytes);

// "12.3 MiB/s"; "-" when no time has passed.
std::string human_rate(double bytes, double seconds);

} // namespace copyoffload::cli
