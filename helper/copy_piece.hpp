// A request's range cut into pieces: the unit of work one worker carries
// out in one go. Pieces are cut lazily, in range order, so a request of
// any length costs the same memory.
#pragma once

#include "copy_planner.hpp"
#include "copyoffload_protocol.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace copyoffload {

// Largest piece of a segment by the method it starts with. A piece of
// data is also what a worker does between two looks at its sockets and
// the cancellation flag, so it stays small; a clone only changes metadata
// and may be large. A clone piece is a multiple of the plan's block size,
// so every clone piece starts aligned. Zero means the default.
struct SliceSizes {
	std::uint64_t copy = std::uint64_t{8} << 20;
	std::uint64_t clone = std::uint64_t{1} << 30;
};

// Pieces of at most `segment` bytes for every method (a share's "largest
// segment"); 0 keeps the defaults.
SliceSizes slices_for_segment(std::uint64_t segment);

// Zeros replaced by the defaults.
SliceSizes with_defaults(SliceSizes slices);

// A piece is a part of one segment, its method the segment's (or the
// next usable one): the same fields.
using CopyPiece = CopySegment;

// Methods the kernel refused for a request's two files as a whole (no
// reflink on this filesystem, another filesystem): later pieces do not
// try them again. Shared by the pieces of a request and, through the
// descriptor pair, by every later request of the same two files.
class MethodRefusals {
public:
	[[nodiscard]] std::uint32_t mask() const { return mask_.load(); }
	void refuse(copyoffload_method method)
	{
		mask_.fetch_or(COPYOFFLOAD_METHOD_BIT(method));
	}

private:
	std::atomic<std::uint32_t> mask_{0};
};

class PieceCursor {
public:
	// The plan's segments must tile [0, length) in order (throws
	// std::logic_error otherwise: the reply counts one contiguous
	// prefix), each starting with a method the plan allows.
	PieceCursor(const CopyPlan &plan, std::uint64_t length, SliceSizes slices);

	// The next piece, or none after the last. Methods in `refused` (the
	// kernel refused them for these two files as a whole) are not
	// started with while the plan has another: a clone segment on a pair
	// that cannot clone is cut as data.
	std::optional<CopyPiece> next(std::uint32_t refused = 0);

	// Where the next piece would start (the range's length at the end).
	[[nodiscard]] std::uint64_t position() const;
	[[nodiscard]] bool done() const { return segment_ == plan_.segments.size(); }

private:
	const CopyPlan &plan_;
	SliceSizes slices_;
	std::size_t segment_ = 0;
	std::uint64_t done_in_segment_ = 0;
};

// The most bytes of `method` one piece or slice moves, given the plan's
// block size (clone pieces stay whole blocks).
std::uint64_t slice_limit(const SliceSizes &slices, copyoffload_method method,
			  std::uint64_t block_size);

// Index of `method` in the plan's list (throws std::logic_error if absent).
std::size_t method_index(const CopyPlan &plan, copyoffload_method method);

// The first method at or after `index` that `refused` does not name; the
// last method when all are refused (its refusal then becomes the error).
std::size_t first_usable_method(const CopyPlan &plan, std::size_t index,
				std::uint32_t refused);

} // namespace copyoffload
