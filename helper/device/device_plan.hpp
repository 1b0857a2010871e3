// The planner's rules for a copy between two block devices (raw volumes):
// the device copies whole logical blocks, the rest is copied with data.
// Pure logic, like copy_planner.hpp, whose types it fills.
#pragma once

#include "copy_planner.hpp"

#include <cstdint>
#include <span>

namespace copyoffload::device {

// Methods that work on block devices: device copy, and read/write for what
// it cannot do. Clone and copy_file_range refuse block devices (EINVAL), so
// they are left out of the plan whatever the order says.
bool method_works_on_block_devices(copyoffload_method method);

// The plan for a block-device pair, `geometry.block_size` being the larger
// logical block size of the two:
// - EOPNOTSUPP when the mask or order leaves out DEVICE (block devices are
//   copied only on the device path) or with CLONE_ONLY (no clone exists);
// - DEVICE first: the head up to the destination's first multiple of
//   `page_size` (or of the block size, if larger) and the tail after its
//   last are copied (READ_WRITE), the whole pages between go to the device.
//   The data copy of a head or tail goes through the page cache, so it
//   must never share a destination page with blocks the device writes
//   behind the cache. When the two offsets are not congruent modulo the
//   block size, nothing can go to the device: one copied segment;
// - READ_WRITE first (the share prefers it): one READ_WRITE segment, the
//   device only as its fallback;
// - without READ_WRITE, head and tail are tagged DEVICE, so the device's
//   refusal of an unaligned range becomes the request's error.
// The plan's block_size is the alignment of the device's segment, so that
// the engine's slices of it stay whole pages.
CopyPlan plan_device_copy(std::uint32_t methods_mask, std::uint32_t flags,
			  const CopyGeometry &geometry,
			  std::span<const copyoffload_method> order = default_method_order,
			  std::uint64_t page_size = 4096);

} // namespace copyoffload::device
