// `copyoffload stats` output: the daemon's per-share, per-method counters
// as a table for people or as JSON for scripts.
#pragma once

#include "copyoffload_protocol.h"

#include <string>
#include <vector>

namespace copyoffload::cli {

// One row per share ("all") and per method the share used; shares with
// no copies at all are left out, as is "(none)" (copies that named no
// share) until it has some.
std::string stats_table(const std::vector<copyoffload_share_stats> &records);

// {"shares": [{"name", "in_flight", "running", "total": {...},
//  "methods": {"clone": {...}, ...}}]}: every share and every method.
std::string stats_json(const std::vector<copyoffload_share_stats> &records);

} // namespace copyoffload::cli
