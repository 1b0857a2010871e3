#include "copy_planner.hpp"

#include <algorithm>
#include <cerrno>

namespace copyoffload {

namespace {

bool allows(const CopyPlan &plan, copyoffload_method method)
{
	return std::find(plan.methods.begin(), plan.methods.end(), method) !=
	       plan.methods.end();
}

// The first method for bytes that cannot be cloned: the best copy method,
// or CLONE when it is the only one allowed.
copyoffload_method copy_first(const CopyPlan &plan)
{
	for (copyoffload_method method : plan.methods) {
		if (method != COPYOFFLOAD_METHOD_CLONE) {
			return method;
		}
	}
	return COPYOFFLOAD_METHOD_CLONE;
}

// Adjacent copy segments merge; clone segments never do, so that a refused
// clone costs only its own segment.
void add_segment(CopyPlan &plan, std::uint64_t offset, std::uint64_t length,
		 copyoffload_method first)
{
	if (length == 0) {
		return;
	}
	if (!plan.segments.empty() && plan.segments.back().first == first &&
	    first != COPYOFFLOAD_METHOD_CLONE) {
		plan.segments.back().length += length;
		return;
	}
	plan.segments.push_back({offset, length, first});
}

} // namespace

bool method_implemented(copyoffload_method method)
{
	return method != COPYOFFLOAD_METHOD_DEVICE;
}

CopyPlan plan_methods(std::uint32_t methods_mask, std::uint32_t flags,
		      std::span<const copyoffload_method> order)
{
	CopyPlan plan;
	if ((flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0) {
		if ((methods_mask & COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE)) == 0 ||
		    std::find(order.begin(), order.end(), COPYOFFLOAD_METHOD_CLONE) == order.end()) {
			plan.error = EINVAL;
		} else {
			plan.methods.push_back(COPYOFFLOAD_METHOD_CLONE);
		}
		return plan;
	}
	for (copyoffload_method method : order) {
		if (method_implemented(method) &&
		    (methods_mask & COPYOFFLOAD_METHOD_BIT(method)) != 0 &&
		    !allows(plan, method)) {
			plan.methods.push_back(method);
		}
	}
	if (plan.methods.empty()) {
		plan.error = EOPNOTSUPP;
	}
	return plan;
}

CopyPlan plan_copy(std::uint32_t methods_mask, std::uint32_t flags,
		   const CopyGeometry &geometry, std::span<const copyoffload_method> order)
{
	CopyPlan plan = plan_methods(methods_mask, flags, order);
	const std::uint64_t length = geometry.length;
	const std::uint64_t bs =
		geometry.block_size != 0 ? geometry.block_size : default_block_size;
	plan.block_size = bs;
	if (plan.error != 0 || length == 0) {
		return plan;
	}
	const std::uint64_t src_phase = geometry.source_offset % bs;
	if ((flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0 ||
	    plan.methods.front() != COPYOFFLOAD_METHOD_CLONE) {
		// Under CLONE_ONLY the only method is CLONE, so that is the tag.
		add_segment(plan, 0, length, plan.methods.front());
		return plan;
	}
	if (src_phase != geometry.destination_offset % bs) {
		add_segment(plan, 0, length, copy_first(plan));
		return plan;
	}

	// No sum of offsets is formed, so no range can overflow here.
	const std::uint64_t head = (bs - src_phase) % bs;
	if (head >= length) { // starts and ends inside one block
		add_segment(plan, 0, length, copy_first(plan));
		return plan;
	}
	const std::uint64_t tail = (length - head) % bs;
	const std::uint64_t middle = length - head - tail;
	// The kernel clones an unaligned length that ends at the source's EOF.
	const bool tail_at_eof = geometry.source_size >= geometry.source_offset &&
				 geometry.source_size - geometry.source_offset == length;
	add_segment(plan, 0, head, copy_first(plan));
	add_segment(plan, head, middle, COPYOFFLOAD_METHOD_CLONE);
	// Its own segment: should the kernel refuse the EOF block (it does
	// when the destination goes on beyond it), only the tail is copied.
	add_segment(plan, head + middle, tail,
		    tail_at_eof ? COPYOFFLOAD_METHOD_CLONE : copy_first(plan));
	return plan;
}

} // namespace copyoffload
