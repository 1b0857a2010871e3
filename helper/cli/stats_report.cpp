#include "stats_report.hpp"

#include "text_format.hpp"

#include <fmt/format.h>

#include <cstring>
#include <string_view>

namespace copyoffload::cli {

namespace {

std::string_view share_name(const copyoffload_share_stats &record)
{
	return {record.name, ::strnlen(record.name, sizeof(record.name))};
}

bool is_idle(const copyoffload_share_stats &record)
{
	return record.slots[COPYOFFLOAD_STATS_TOTAL].requests == 0 && record.in_flight == 0;
}

std::string slot_json(const copyoffload_method_stats &slot)
{
	return fmt::format("{{\"requests\": {}, \"errors\": {}, \"bytes\": {}, "
			   "\"latency_us\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"max\": {}}}}}",
			   slot.requests, slot.errors, slot.bytes, slot.latency_p50_us,
			   slot.latency_p90_us, slot.latency_p99_us, slot.latency_max_us);
}

} // namespace

std::string stats_table(const std::vector<copyoffload_share_stats> &records)
{
	constexpr std::string_view row =
		"{:<20} {:<16} {:>9} {:>7} {:>15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n";
	std::string out = fmt::format(row, "SHARE", "METHOD", "REQUESTS", "ERRORS", "BYTES",
				      "P50_US", "P90_US", "P99_US", "MAX_US", "IN_FLIGHT",
				      "RUNNING");
	bool any = false;
	for (const copyoffload_share_stats &record : records) {
		if (is_idle(record)) {
			continue;
		}
		any = true;
		std::string name(share_name(record));
		if (name.empty()) {
			name = "(none)";
		}
		const copyoffload_method_stats &total = record.slots[COPYOFFLOAD_STATS_TOTAL];
		out += fmt::format(row, name, "all", total.requests, total.errors, total.bytes,
				   total.latency_p50_us, total.latency_p90_us,
				   total.latency_p99_us, total.latency_max_us, record.in_flight,
				   record.running);
		for (unsigned m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
			const copyoffload_method_stats &slot = record.slots[m];
			if (slot.requests > 0) {
				std::string line = fmt::format(
					row, name, copyoffload_method_name(m), slot.requests,
					slot.errors, slot.bytes, slot.latency_p50_us,
					slot.latency_p90_us, slot.latency_p99_us,
					slot.latency_max_us, "", "");
				// No gauges on method rows: no trailing blanks either.
				line.erase(line.find_last_not_of(" \n") + 1);
				out += line + "\n";
			}
		}
	}
	return any ? out : out + "(no copies since copyoffloadd started)\n";
}

std::string stats_json(const std::vector<copyoffload_share_stats> &records)
{
	std::string out = "{\"shares\": [";
	for (std::size_t r = 0; r < records.size(); r++) {
		const copyoffload_share_stats &record = records[r];
		out += fmt::format("{}\n  {{\"name\": {}, \"in_flight\": {}, \"running\": {}, "
				   "\"total\": {}, \"methods\": {{",
				   r == 0 ? "" : ",", json_string(share_name(record)),
				   record.in_flight, record.running,
				   slot_json(record.slots[COPYOFFLOAD_STATS_TOTAL]));
		for (unsigned m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
			out += fmt::format("{}{}: {}", m == 0 ? "" : ", ",
					   json_string(copyoffload_method_name(m)),
					   slot_json(record.slots[m]));
		}
		out += "}}";
	}
	return out + "\n]}\n";
}

} // namespace copyoffload::cli
