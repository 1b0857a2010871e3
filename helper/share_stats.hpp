// Counters of one share since the daemon started: per method and for the
// share as a whole, in the shape of a STATS_REPLY record. Workers record
// finished copies; the main thread reads snapshots.
#pragma once

#include "copy_result.hpp"
#include "copyoffload_protocol.h"
#include "latency_histogram.hpp"

#include <array>
#include <cstdint>
#include <mutex>

namespace copyoffload {

class ShareStats {
public:
	// A finished copy (answered or abandoned). Its total latency runs
	// from receipt to reply; each method it used (moved bytes with, or
	// failed in) counts it once, with the time spent in that method.
	void record(const CopyResult &result, std::uint64_t latency_usec);

	// Clones smbd made itself (CLONED): requests and bytes of the clone
	// method and of the share. They add no latency: smbd does not time
	// them, and the latencies stay those of copies through the daemon.
	// False, counting nothing, where the share's counters would wrap.
	bool record_inline_clones(std::uint64_t copies, std::uint64_t bytes);

	// Fills the slots of `record` (name and gauges are the caller's).
	void fill(copyoffload_share_stats &record) const;

private:
	struct Slot {
		std::uint64_t requests = 0;
		std::uint64_t errors = 0;
		std::uint64_t bytes = 0;
		LatencyHistogram latency;
	};

	static void add(Slot &slot, bool failed, std::uint64_t bytes, std::uint64_t usec);
	// Whether the share's total can take `requests` and `bytes` more. Every
	// other slot is at most the total, and the methods' bytes add up to
	// it, which a STATS reader checks: a wrapped counter would make every
	// later reply unreadable.
	[[nodiscard]] bool fits(std::uint64_t requests, std::uint64_t bytes) const;

	mutable std::mutex mutex_;
	std::array<Slot, COPYOFFLOAD_STATS_SLOTS> slots_{};
};

} // namespace copyoffload
