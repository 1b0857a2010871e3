// Turns one COPY request into a plan: the methods the engine may use, most
// preferred first, and segments covering the range, each tagged with the
// method to try first. The block-aligned middle of a range is cloned (a
// metadata operation on reflink filesystems); an unaligned head or tail is
// copied. Each segment falls back along the method list on its own.
// Pure logic: the caller supplies the geometry it learned from fstat.
#pragma once

#include "copyoffload_protocol.h"

#include <cstdint>
#include <vector>

namespace copyoffload {

// Alignment assumed when the destination reports no st_blksize.
inline constexpr std::uint64_t default_block_size = 4096;

struct CopyGeometry {
	std::uint64_t source_offset = 0; // range already known to fit off_t
	std::uint64_t destination_offset = 0;
	std::uint64_t length = 0;
	std::uint64_t block_size = 0;  // the destination's st_blksize; 0: 4096
	std::uint64_t source_size = 0; // the source's st_size
};

struct CopySegment {
	std::uint64_t offset = 0; // from the start of the request's range
	std::uint64_t length = 0;
	copyoffload_method first = COPYOFFLOAD_METHOD_COPY_FILE_RANGE;

	bool operator==(const CopySegment &) const = default;
};

struct CopyPlan {
	std::vector<copyoffload_method> methods; // allowed and implemented, best first
	std::vector<CopySegment> segments;       // in order, covering the range
	std::uint64_t block_size = default_block_size; // clone slices are multiples
	int error = 0; // EINVAL/EOPNOTSUPP: refuse the request before any I/O
};

// The method list alone. With COPYOFFLOAD_COPY_CLONE_ONLY it is just CLONE
// (EINVAL when the mask lacks CLONE); otherwise the implemented methods in
// the mask (EOPNOTSUPP when there are none).
CopyPlan plan_methods(std::uint32_t methods_mask, std::uint32_t flags);

// plan_methods plus the segments for `geometry`:
// - CLONE_ONLY: one CLONE segment for the whole range, never split;
// - no CLONE in the mask, or src and dst offsets not congruent modulo the
//   block size: one segment for a copy method;
// - otherwise up to three: the head up to the first block boundary
//   (copied), the block-aligned middle (cloned) and the remaining tail
//   (cloned if it ends exactly at the source's EOF, else copied).
// When the mask allows no copy method, segments meant for copying are
// tagged CLONE too, so the kernel's refusal becomes the request's error.
CopyPlan plan_copy(std::uint32_t methods_mask, std::uint32_t flags,
		   const CopyGeometry &geometry);

} // namespace copyoffload
