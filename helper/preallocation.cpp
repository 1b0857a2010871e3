#include "preallocation.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>

#include <algorithm>

namespace copyoffload {

bool preallocation_pays(std::int64_t filesystem_type)
{
	// ext2 and ext3 share the magic; fallocate refuses their files that
	// have no extents, and the copy goes on without.
	return filesystem_type == EXT4_SUPER_MAGIC;
}

std::uint64_t preallocate_destination(const CopyRange &range, SparseFiles &sparse)
{
	if (range.length < min_preallocation) {
		return 0;
	}
	// Past the source's end the copy writes nothing (and region_at says
	// data, not knowing).
	struct stat source{};
	if (::fstat(range.source, &source) != 0 ||
	    static_cast<std::uint64_t>(source.st_size) <= range.source_offset) {
		return 0;
	}
	const std::uint64_t length = std::min(
		range.length, static_cast<std::uint64_t>(source.st_size) - range.source_offset);
	if (length < min_preallocation || length > max_preallocation) {
		return 0;
	}
	std::uint64_t reserved = 0;
	std::uint64_t offset = 0;
	for (unsigned regions = 0; offset < length && regions < max_preallocated_regions;) {
		const SparseFiles::Region region = sparse.region_at(
			range.source, range.source_offset + offset, length - offset);
		if (!region.hole) {
			regions++;
			if (::fallocate(range.destination, FALLOC_FL_KEEP_SIZE,
					static_cast<off_t>(range.destination_offset + offset),
					static_cast<off_t>(region.length)) != 0) {
				break;
			}
			reserved += region.length;
		}
		offset += std::max<std::uint64_t>(region.length, 1);
	}
	return reserved;
}

} // namespace copyoffload
