#include "descriptor_check.hpp"

#include <fcntl.h>
#include <sys/stat.h>

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

} // namespace

std::optional<DescriptorRejection>
check_copy_descriptors(int source, int destination,
		       const copyoffload_copy_request &request)
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
	if (!S_ISREG(src->status.st_mode)) {
		return DescriptorRejection{EBADF, "source is not a regular file"};
	}
	if (!S_ISREG(dst->status.st_mode)) {
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

	if (src->status.st_dev == dst->status.st_dev &&
	    src->status.st_ino == dst->status.st_ino &&
	    ranges_overlap(request.src_offset, request.dst_offset, request.length)) {
		return DescriptorRejection{EINVAL, "overlapping ranges in the same file"};
	}
	return std::nullopt;
}

} // namespace copyoffload
