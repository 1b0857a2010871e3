#include "copy_piece.hpp"

#include <algorithm>
#include <stdexcept>

namespace copyoffload {

SliceSizes slices_for_segment(std::uint64_t segment)
{
	return SliceSizes{.copy = segment, .clone = segment};
}

SliceSizes with_defaults(SliceSizes slices)
{
	const SliceSizes defaults;
	if (slices.copy == 0) {
		slices.copy = defaults.copy;
	}
	if (slices.clone == 0) {
		slices.clone = defaults.clone;
	}
	return slices;
}

std::size_t method_index(const CopyPlan &plan, copyoffload_method method)
{
	auto found = std::find(plan.methods.begin(), plan.methods.end(), method);
	if (found == plan.methods.end()) {
		throw std::logic_error("copy segment starts with a method the plan does not allow");
	}
	return static_cast<std::size_t>(found - plan.methods.begin());
}

std::size_t first_usable_method(const CopyPlan &plan, std::size_t index,
				std::uint32_t refused)
{
	while (index + 1 < plan.methods.size() &&
	       (refused & COPYOFFLOAD_METHOD_BIT(plan.methods[index])) != 0) {
		index++;
	}
	return index;
}

std::uint64_t slice_limit(const SliceSizes &slices, copyoffload_method method,
			  std::uint64_t block_size)
{
	if (method == COPYOFFLOAD_METHOD_DEVICE) {
		// Device segments start aligned too (on the destination's pages).
		block_size = std::max<std::uint64_t>(block_size, 1);
		return std::max(block_size, slices.copy - slices.copy % block_size);
	}
	if (method != COPYOFFLOAD_METHOD_CLONE) {
		return slices.copy;
	}
	// Clone segments start block-aligned; whole-block slices keep every
	// later slice aligned too.
	block_size = std::max<std::uint64_t>(block_size, 1);
	return std::max(block_size, slices.clone - slices.clone % block_size);
}

PieceCursor::PieceCursor(const CopyPlan &plan, std::uint64_t length, SliceSizes slices)
	: plan_(plan), slices_(with_defaults(slices))
{
	std::uint64_t covered = 0;
	for (const CopySegment &segment : plan.segments) {
		if (segment.offset != covered || segment.length > length - covered) {
			throw std::logic_error("copy segments do not tile the range");
		}
		method_index(plan, segment.first);
		covered += segment.length;
	}
	if (covered != length) {
		throw std::logic_error("copy segments do not cover the range");
	}
}

std::uint64_t PieceCursor::position() const
{
	if (done()) {
		return plan_.segments.empty()
			       ? 0
			       : plan_.segments.back().offset + plan_.segments.back().length;
	}
	return plan_.segments[segment_].offset + done_in_segment_;
}

std::optional<CopyPiece> PieceCursor::next(std::uint32_t refused)
{
	if (done()) {
		return std::nullopt;
	}
	const CopySegment &segment = plan_.segments[segment_];
	const copyoffload_method first = plan_.methods[first_usable_method(
		plan_, method_index(plan_, segment.first), refused)];
	CopyPiece piece{
		.offset = segment.offset + done_in_segment_,
		.length = std::min(slice_limit(slices_, first, plan_.block_size),
				   segment.length - done_in_segment_),
		.first = first,
	};
	done_in_segment_ += piece.length;
	if (done_in_segment_ == segment.length) {
		segment_++;
		done_in_segment_ = 0;
	}
	return piece;
}

} // namespace copyoffload
