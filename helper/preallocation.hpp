// Reserving a copy's destination blocks before its pieces write them.
// On ext4 a buffered write into blocks that fallocate(FALLOC_FL_KEEP_SIZE)
// reserved skips delayed allocation's work per block, and the copy, bound
// by one CPU under the destination's inode lock, runs faster (design.md,
// "Preallocation on ext4"). On XFS and btrfs it did not pay, so only ext4
// destinations are preallocated. The whole request is reserved at once,
// in file order, by its first piece: pieces that reserved their own ranges
// side by side left the file in hundreds of extents.
#pragma once

#include "copy_backend.hpp"
#include "sparse_files.hpp"

#include <cstdint>

namespace copyoffload {

// Whether destinations on a filesystem of this statfs(2) f_type are
// preallocated.
bool preallocation_pays(std::int64_t filesystem_type);

// Longest request that is preallocated. SMB's requests are at most
// 16 MiB; a longer one (copyoffload(1)) could otherwise leave gigabytes
// reserved past the end of a copy that fails early.
inline constexpr std::uint64_t max_preallocation = std::uint64_t{64} << 20;

// Shortest request that is preallocated. Below it the fstat, the look at
// the source's holes and the fallocate cost more than the write saves:
// 16 MiB requests of chunks in reverse order, one copy per chunk, took
// 47 against 37 us per 64 KiB chunk with preallocation and 80 against
// 88 us per 256 KiB chunk (design.md, "Preallocation on ext4").
inline constexpr std::uint64_t min_preallocation = std::uint64_t{256} << 10;

// Most data regions of a sparse source reserved one by one; the rest
// are written without.
inline constexpr unsigned max_preallocated_regions = 16;

// Reserves the destination's blocks where the source has data in `range`
// (a hole stays one, and nothing past the source's end is reserved), if
// that part of the range is from min_preallocation to max_preallocation long,
// without changing the destination's size. A failure
// (ENOSPC, EOPNOTSUPP, ...) is left for the copy's own write to meet and
// report. Blocks reserved past the end of a copy that fails stay reserved
// until the file is truncated or removed, as with any fallocate. Returns
// the bytes reserved.
std::uint64_t preallocate_destination(const CopyRange &range, SparseFiles &sparse);

} // namespace copyoffload
