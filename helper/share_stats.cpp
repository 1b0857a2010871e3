#include "share_stats.hpp"

#include <cstdint>

namespace copyoffload {

void ShareStats::add(Slot &slot, bool failed, std::uint64_t bytes, std::uint64_t usec)
{
	slot.requests++;
	slot.errors += failed ? 1 : 0;
	slot.bytes += bytes;
	slot.latency.record(usec);
}

bool ShareStats::fits(std::uint64_t requests, std::uint64_t bytes) const
{
	const Slot &total = slots_[COPYOFFLOAD_STATS_TOTAL];
	return requests <= UINT64_MAX - total.requests && bytes <= UINT64_MAX - total.bytes;
}

void ShareStats::record(const CopyResult &result, std::uint64_t latency_usec)
{
	std::lock_guard lock(mutex_);
	if (!fits(1, result.bytes_done)) {
		return; // only after CLONED messages claimed about 2^64 bytes
	}
	add(slots_[COPYOFFLOAD_STATS_TOTAL], result.status != 0, result.bytes_done, latency_usec);
	for (unsigned m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
		auto method = static_cast<copyoffload_method>(m);
		if (result.used(method)) {
			add(slots_[m], result.failed_method == method, result.bytes_by_method[m],
			    result.usec_by_method[m]);
		}
	}
}

bool ShareStats::record_inline_clones(std::uint64_t copies, std::uint64_t bytes)
{
	std::lock_guard lock(mutex_);
	if (!fits(copies, bytes)) {
		return false;
	}
	for (Slot *slot : {&slots_[COPYOFFLOAD_METHOD_CLONE], &slots_[COPYOFFLOAD_STATS_TOTAL]}) {
		slot->requests += copies;
		slot->bytes += bytes;
	}
	return true;
}

void ShareStats::fill(copyoffload_share_stats &record) const
{
	std::lock_guard lock(mutex_);
	for (std::size_t s = 0; s < slots_.size(); s++) {
		const Slot &slot = slots_[s];
		record.slots[s] = copyoffload_method_stats{
			.requests = slot.requests,
			.errors = slot.errors,
			.bytes = slot.bytes,
			.latency_p50_us = slot.latency.percentile(0.50),
			.latency_p90_us = slot.latency.percentile(0.90),
			.latency_p99_us = slot.latency.percentile(0.99),
			.latency_max_us = slot.latency.max(),
		};
	}
}

} // namespace copyoffload
