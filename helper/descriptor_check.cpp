#include "descriptor_check.hpp"

#include "preallocation.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>

namespace copyoffload {

namespace {

struct DescriptorInfo {
	struct stat status;
	int open_flags;
};

std::optional<DescriptorInfo> inspect(int fd)
{
	DescriptorInfo info{};
	info.open_flags = ::fcntl(fd, F_GETFL);
	if (info.open_flags < 0 || ::fstat(fd, &info.status) != 0) {
		return std::nullopt;
	}
	return info;
}

bool ranges_overlap(std::uint64_t a, std::uint64_t b, std::uint64_t length)
{
	// Both ranges have the same length and fit in off_t (the decoder
	// checked), so none of these sums overflow.
	return length > 0 && a < b + length && b < a + length;
}

bool preallocates(int destination)
{
	struct statfs fs{};
	return ::fstatfs(destination, &fs) == 0 && preallocation_pays(fs.f_type);
}

} // namespace

std::variant<PairIdentity, DescriptorRejection> check_descriptor_pair(int source,
								      int destination)
{
	auto src = inspect(source);
	if (!src) {
		return DescriptorRejection{EBADF, "source descriptor cannot be inspected"};
	}
	auto dst = inspect(destination);
	if (!dst) {
		return DescriptorRejection{EBADF, "destination descriptor cannot be inspected"};
	}

	// O_PATH descriptors grant no I/O; smbd never means to pass one.
	if ((src->open_flags & O_PATH) != 0) {
		return DescriptorRejection{EBADF, "source is an O_PATH descriptor"};
	}
	if ((dst->open_flags & O_PATH) != 0) {
		return DescriptorRejection{EBADF, "destination is an O_PATH descriptor"};
	}
	// Block devices only in pairs, for the device path (checked below).
	const bool block_pair = S_ISBLK(src->status.st_mode) && S_ISBLK(dst->status.st_mode);
	if (!S_ISREG(src->status.st_mode) && !block_pair) {
		return DescriptorRejection{EBADF, "source is not a regular file"};
	}
	if (!S_ISREG(dst->status.st_mode) && !block_pair) {
		return DescriptorRejection{EBADF, "destination is not a regular file"};
	}

	int source_access = src->open_flags & O_ACCMODE;
	if (source_access != O_RDONLY && source_access != O_RDWR) {
		return DescriptorRejection{EBADF, "source is not open for reading"};
	}
	int destination_access = dst->open_flags & O_ACCMODE;
	if (destination_access != O_WRONLY && destination_access != O_RDWR) {
		return DescriptorRejection{EBADF, "destination is not open for writing"};
	}
	// pwrite on an O_APPEND descriptor ignores the offset and appends.
	if ((dst->open_flags & O_APPEND) != 0) {
		return DescriptorRejection{EBADF, "destination is open with O_APPEND"};
	}
	std::optional<device::BlockPairLayout> block_devices;
	if (block_pair) {
		auto checked = device::check_block_device_pair(source, destination);
		if (const auto *rejection = std::get_if<device::PairRejection>(&checked)) {
			return DescriptorRejection{rejection->status, rejection->reason};
		}
		block_devices = std::get<device::BlockPairLayout>(checked);
	}
	return PairIdentity{
		.source_device = src->status.st_dev,
		.source_inode = src->status.st_ino,
		.destination_device = dst->status.st_dev,
		.destination_inode = dst->status.st_ino,
		.destination_block_size =
			block_devices ? block_devices->block_size
				      : static_cast<std::uint64_t>(
						dst->status.st_blksize > 0 ? dst->status.st_blksize : 0),
		.destination_preallocates = !block_pair && preallocates(destination),
		.block_devices = block_devices,
	};
}

std::optional<DescriptorRejection>
check_copy_range(const PairIdentity &pair, const copyoffload_copy_request &request)
{
	if (pair.source_device == pair.destination_device &&
	    pair.source_inode == pair.destination_inode &&
	    ranges_overlap(request.src_offset, request.dst_offset, request.length)) {
		return DescriptorRejection{EINVAL, "overlapping ranges in the same file"};
	}
	if (pair.block_devices &&
	    device::block_ranges_overlap(*pair.block_devices, request.src_offset,
					 request.dst_offset, request.length)) {
		return DescriptorRejection{EINVAL, "overlapping ranges on the same disk"};
	}
	return std::nullopt;
}

std::optional<DescriptorRejection>
check_copy_descriptors(int source, int destination,
		       const copyoffload_copy_request &request)
{
	auto checked = check_descriptor_pair(source, destination);
	if (const auto *rejection = std::get_if<DescriptorRejection>(&checked)) {
		return *rejection;
	}
	return check_copy_range(std::get<PairIdentity>(checked), request);
}

} // namespace copyoffload
