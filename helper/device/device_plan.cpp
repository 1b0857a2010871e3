#include "device_plan.hpp"

#include <algorithm>
#include <cerrno>

namespace copyoffload::device {

namespace {

void add_segment(CopyPlan &plan, std::uint64_t offset, std::uint64_t length,
		 copyoffload_method first)
{
	if (length > 0) {
		plan.segments.push_back({offset, length, first});
	}
}

} // namespace

bool method_works_on_block_devices(copyoffload_method method)
{
	return method == COPYOFFLOAD_METHOD_DEVICE || method == COPYOFFLOAD_METHOD_READ_WRITE;
}

CopyPlan plan_device_copy(std::uint32_t methods_mask, std::uint32_t flags,
			  const CopyGeometry &geometry, std::span<const copyoffload_method> order,
			  std::uint64_t page_size)
{
	CopyPlan plan;
	const std::uint64_t bs =
		geometry.block_size != 0 ? geometry.block_size : default_block_size;
	// Block sizes and pages are powers of two: the larger is a multiple
	// of the smaller.
	const std::uint64_t unit = std::max(bs, page_size);
	plan.block_size = unit;
	if ((flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0) {
		plan.error = EOPNOTSUPP;
		return plan;
	}
	for (copyoffload_method method : order) {
		if (method_works_on_block_devices(method) &&
		    (methods_mask & COPYOFFLOAD_METHOD_BIT(method)) != 0 &&
		    std::find(plan.methods.begin(), plan.methods.end(), method) ==
			    plan.methods.end()) {
			plan.methods.push_back(method);
		}
	}
	if (std::find(plan.methods.begin(), plan.methods.end(), COPYOFFLOAD_METHOD_DEVICE) ==
	    plan.methods.end()) {
		plan.methods.clear();
		plan.error = EOPNOTSUPP;
		return plan;
	}
	const std::uint64_t length = geometry.length;
	if (length == 0) {
		return plan;
	}
	const bool can_copy = plan.methods.size() > 1;
	const copyoffload_method copy_method =
		can_copy ? COPYOFFLOAD_METHOD_READ_WRITE : COPYOFFLOAD_METHOD_DEVICE;
	if (plan.methods.front() != COPYOFFLOAD_METHOD_DEVICE) {
		add_segment(plan, 0, length, plan.methods.front());
		return plan;
	}
	if (geometry.source_offset % bs != geometry.destination_offset % bs) {
		add_segment(plan, 0, length, copy_method);
		return plan;
	}
	// Split on the destination's pages; the source is then block-aligned
	// at the same points, being congruent modulo the block size.
	const std::uint64_t head =
		std::min(length, (unit - geometry.destination_offset % unit) % unit);
	const std::uint64_t tail = (length - head) % unit;
	const std::uint64_t middle = length - head - tail;
	add_segment(plan, 0, head, copy_method);
	add_segment(plan, head, middle, COPYOFFLOAD_METHOD_DEVICE);
	add_segment(plan, head + middle, tail, copy_method);
	if (!can_copy && plan.segments.size() > 1) {
		// One method for everything: one segment, which the device
		// refuses as a whole if any part of it is unaligned.
		plan.segments = {{0, length, COPYOFFLOAD_METHOD_DEVICE}};
	}
	return plan;
}

} // namespace copyoffload::device
