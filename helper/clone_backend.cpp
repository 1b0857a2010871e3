#include "clone_backend.hpp"

#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace copyoffload {

BackendProgress CloneBackend::copy_slice(const CopyRange &slice)
{
	// A zero src_length means "up to the source's EOF": never send one.
	if (slice.length == 0) {
		return {};
	}
	file_clone_range request{};
	request.src_fd = slice.source;
	request.src_offset = slice.source_offset;
	request.src_length = slice.length;
	request.dest_offset = slice.destination_offset;
	int rc;
	do {
		rc = ::ioctl(slice.destination, FICLONERANGE, &request);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		return {0, errno};
	}
	return {slice.length, 0};
}

bool CloneBackend::is_unsupported(int error) const
{
	// EINVAL: misaligned range, past the source's EOF, or an EOF block
	// that would land inside the destination. EXDEV: another mount or
	// filesystem. EOPNOTSUPP: no reflink on this filesystem (ext4, tmpfs,
	// XFS without reflink=1). ENOTTY/ENOSYS: no such ioctl here. Anything
	// else (EBADF, ENOSPC, EDQUOT, EIO, ETXTBSY, EPERM) is a real error.
	return error == EINVAL || error == EXDEV || error == EOPNOTSUPP ||
	       error == ENOTTY || error == ENOSYS;
}

bool CloneBackend::refuses_files(int error) const
{
	// All but EINVAL, which depends on the range (alignment, EOF).
	return error == EXDEV || error == EOPNOTSUPP || error == ENOTTY || error == ENOSYS;
}

} // namespace copyoffload
