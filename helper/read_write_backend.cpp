#include "read_write_backend.hpp"
#include "transfer_loop.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace copyoffload {

BackendProgress ReadWriteBackend::copy_slice(const CopyRange &slice)
{
	if (!buffer_) {
		buffer_ = std::make_unique_for_overwrite<std::byte[]>(buffer_size);
	}

	BackendProgress progress;
	while (progress.bytes < slice.length) {
		auto chunk = static_cast<std::size_t>(
			std::min<std::uint64_t>(slice.length - progress.bytes, buffer_size));
		ssize_t got;
		do {
			got = ::pread(slice.source, buffer_.get(), chunk,
				      static_cast<off_t>(slice.source_offset + progress.bytes));
		} while (got < 0 && errno == EINTR);
		if (got <= 0) {
			// 0: the source ends inside the range.
			progress.error = got == 0 ? ENODATA : errno;
			return progress;
		}
		// pwrite never returns 0 for a regular file; refuse to spin if it does.
		BackendProgress written = transfer_loop(
			static_cast<std::uint64_t>(got), EIO, [&](std::uint64_t done) {
				return ::pwrite(slice.destination, buffer_.get() + done,
						static_cast<std::size_t>(got) - done,
						static_cast<off_t>(slice.destination_offset +
								   progress.bytes + done));
			});
		progress.bytes += written.bytes;
		if (written.error != 0) {
			progress.error = written.error;
			return progress;
		}
	}
	return progress;
}

} // namespace copyoffload
