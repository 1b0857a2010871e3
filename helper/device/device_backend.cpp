#include "device_backend.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace copyoffload::device {

namespace {

std::uint64_t system_page_size()
{
	const long size = ::sysconf(_SC_PAGESIZE);
	return size > 0 ? static_cast<std::uint64_t>(size) : 4096;
}

// Writes back the dirty pages of a range and waits for them (and for any
// writeback already under way there).
int write_back(int fd, const PageRange &range)
{
	int rc;
	do {
		rc = ::sync_file_range(fd, static_cast<off_t>(range.offset),
				       static_cast<off_t>(range.length),
				       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					       SYNC_FILE_RANGE_WAIT_AFTER);
	} while (rc < 0 && errno == EINTR);
	return rc < 0 ? errno : 0;
}

} // namespace

PageRange page_range(std::uint64_t offset, std::uint64_t length, std::uint64_t page_size)
{
	const std::uint64_t first = offset - offset % page_size;
	std::uint64_t end = offset + length;
	if (end % page_size != 0) {
		end += page_size - end % page_size;
	}
	return {first, end - first};
}

BackendProgress DeviceBackend::copy_slice(const CopyRange &slice)
{
	last_reason_.clear();
	if (slice.length == 0) {
		return {};
	}
	// Held for the slice: the request may finish on another thread.
	const std::shared_ptr<DeviceSession> session =
		session_ ? session_ : DeviceSession::find(slice.source, slice.destination);
	if (!session) {
		last_reason_ = "no device session for these descriptors";
		return {0, EXDEV};
	}
	DeviceCopier *copier = session->copier();
	if (copier == nullptr) {
		last_reason_ = session->unavailable_reason();
		return {0, EXDEV};
	}
	if (slice.source != session->source_fd() || slice.destination != session->destination_fd()) {
		last_reason_ = "slice on other descriptors than the session's";
		return {0, EBADF};
	}
	const std::uint64_t block = session->block_size();
	if (slice.source_offset % block != 0 || slice.destination_offset % block != 0 ||
	    slice.length % block != 0) {
		last_reason_ = "range not aligned to " + std::to_string(block) + "-byte blocks";
		return {0, EINVAL};
	}

	const std::uint64_t page = system_page_size();
	const PageRange source_pages = page_range(slice.source_offset, slice.length, page);
	const PageRange destination_pages = page_range(slice.destination_offset, slice.length, page);
	for (auto [fd, pages] : {std::pair{slice.source, source_pages},
				 std::pair{slice.destination, destination_pages}}) {
		if (int error = write_back(fd, pages); error != 0) {
			last_reason_ = std::string("writing back cached pages: ") +
				       std::strerror(error);
			return {0, error};
		}
	}

	auto [bytes, error] = copier->copy(slice.source_offset, slice.destination_offset,
					   slice.length, last_reason_);

	// Whatever the device wrote, cached pages of the range are stale now.
	// Dirty pages were written back above, so all of them can go, unless
	// someone else wrote the range meanwhile (then theirs is the newer
	// data anyway).
	::posix_fadvise(slice.destination, static_cast<off_t>(destination_pages.offset),
			static_cast<off_t>(destination_pages.length), POSIX_FADV_DONTNEED);
	if (error == 0 && bytes != slice.length) {
		last_reason_ = "the device copied less than asked without an error";
		error = EIO;
	}
	return {bytes, error};
}

bool DeviceBackend::is_unsupported(int error) const
{
	return error == EOPNOTSUPP || error == EINVAL || error == EXDEV || error == ENOTTY ||
	       error == ENOSYS;
}

} // namespace copyoffload::device
