#include "copy_file_range_backend.hpp"
#include "transfer_loop.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <limits>

namespace copyoffload {

BackendProgress CopyFileRangeBackend::copy_slice(const CopyRange &slice)
{
	auto source_offset = static_cast<off_t>(slice.source_offset);
	auto destination_offset = static_cast<off_t>(slice.destination_offset);

	// copy_file_range returns 0 only at the source's end of file.
	return transfer_loop(slice.length, ENODATA, [&](std::uint64_t done) {
		auto request = static_cast<std::size_t>(std::min<std::uint64_t>(
			slice.length - done, std::numeric_limits<ssize_t>::max()));
		return ::copy_file_range(slice.source, &source_offset,
					 slice.destination, &destination_offset,
					 request, 0);
	});
}

bool CopyFileRangeBackend::is_unsupported(int error) const
{
	// Cross-filesystem on old kernels, filesystems or file types without
	// support, kernels without the syscall.
	return error == EXDEV || error == EOPNOTSUPP || error == ENOSYS ||
	       error == EINVAL;
}

bool CopyFileRangeBackend::refuses_files(int error) const
{
	// EINVAL may be about the range or the flags: not remembered.
	return error == EXDEV || error == EOPNOTSUPP || error == ENOSYS;
}

} // namespace copyoffload
