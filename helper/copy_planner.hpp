// Turns one COPY request into a plan: the methods the engine may use, most
// preferred first, and segments covering the range, each tagged with the
// method to try first. The block-aligned middle of a range is cloned (a
// metadata operation on reflink filesystems); an unaligned head or tail is
// copied. Each segment falls back along the method list on its own.
// Pure logic: the caller supplies the geometry it learned from fstat.
#pragma once

#include "copyoffload_protocol.h"

#include <cstdint>
#include <span>
#include <vector>

namespace copyoffload {

// Alignment assumed when the destination reports no st_blksize.
inline constexpr std::uint64_t default_block_size = 4096;

// The methods in the engine's own order of preference: what a request that
// names no share (or a share without its own order) uses.
inline constexpr copyoffload_method default_method_order[] = {
	COPYOFFLOAD_METHOD_CLONE,
	COPYOFFLOAD_METHOD_COPY_FILE_RANGE,
	COPYOFFLOAD_METHOD_DEVICE,
	COPYOFFLOAD_METHOD_READ_WRITE,
};

// Whether this daemon has a backend for the method (device copy: not yet).
bool method_implemented(copyoffload_method method);

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
// (EINVAL when the mask or the order lacks CLONE); otherwise the implemented methods in
// the mask, in the order `order` gives them (EOPNOTSUPP when there are
// none). Methods the order leaves out are not allowed.
CopyPlan plan_methods(std::uint32_t methods_mask, std::uint32_t flags,
		      std::span<const copyoffload_method> order = default_method_order);

// plan_methods plus the segments for `geometry`:
// - CLONE_ONLY: one CLONE segment for the whole range, never split;
// - CLONE not allowed, or not the first method, or src and dst offsets not
//   congruent modulo the block size: one segment for the first method
//   (the order is honoured: a clone placed after a copy method is only a
//   fallback);
// - otherwise up to three: the head up to the first block boundary
//   (copied), the block-aligned middle (cloned) and the remaining tail
//   (cloned if it ends exactly at the source's EOF, else copied), each
//   copied part starting with the first copy method of the order.
// When the mask allows no copy method, segments meant for copying are
// tagged CLONE too, so the kernel's refusal becomes the request's error.
CopyPlan plan_copy(std::uint32_t methods_mask, std::uint32_t flags,
		   const CopyGeometry &geometry,
		   std::span<const copyoffload_method> order = default_method_order);

} // namespace copyoffload
