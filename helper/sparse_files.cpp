#include "sparse_files.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace copyoffload {

// lseek moves the file position of the source's open file, which smbd
// shares; smbd reads and writes at explicit offsets and never uses it.
SparseFiles::Region RealSparseFiles::region_at(int source, std::uint64_t offset,
					       std::uint64_t limit)
{
	const Region data{limit, false};
	const off_t hole = ::lseek(source, static_cast<off_t>(offset), SEEK_HOLE);
	if (hole < 0) {
		// ENXIO: at or past the end, which the copy reports; anything
		// else: the filesystem cannot say, so it is all data.
		return data;
	}
	if (static_cast<std::uint64_t>(hole) > offset) {
		return {std::min(static_cast<std::uint64_t>(hole) - offset, limit), false};
	}
	std::uint64_t hole_end = 0;
	const off_t next_data = ::lseek(source, static_cast<off_t>(offset), SEEK_DATA);
	if (next_data >= 0) {
		hole_end = static_cast<std::uint64_t>(next_data);
	} else {
		struct stat status{};
		// ENXIO: no data after offset, so the hole runs to the end of
		// the file (which may have moved meanwhile).
		if (errno != ENXIO || ::fstat(source, &status) != 0) {
			return data;
		}
		hole_end = static_cast<std::uint64_t>(status.st_size);
	}
	if (hole_end <= offset) {
		return data; // the file changed under us: let the copy say how
	}
	return {std::min(hole_end - offset, limit), true};
}

namespace {

bool unsupported(int error)
{
	return error == EOPNOTSUPP || error == ENOSYS;
}

int write_zero_byte(int destination, std::uint64_t offset)
{
	static const char zero = 0;
	ssize_t n;
	do {
		n = ::pwrite(destination, &zero, 1, static_cast<off_t>(offset));
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		return errno;
	}
	return n == 1 ? 0 : EIO;
}

} // namespace

int RealSparseFiles::make_hole(int destination, std::uint64_t offset, std::uint64_t length)
{
	struct stat status{};
	if (::fstat(destination, &status) != 0) {
		return errno;
	}
	const auto size = static_cast<std::uint64_t>(status.st_size);
	if (offset >= size) {
		return 0; // past its end it reads as zeros already
	}
	if (::fallocate(destination, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			static_cast<off_t>(offset),
			static_cast<off_t>(std::min(offset + length, size) - offset)) != 0) {
		return unsupported(errno) ? EOPNOTSUPP : errno;
	}
	return 0;
}

int RealSparseFiles::extend_to(int destination, std::uint64_t end, std::uint64_t &size)
{
	struct stat status{};
	if (::fstat(destination, &status) != 0) {
		size = 0;
		return errno;
	}
	size = static_cast<std::uint64_t>(status.st_size);
	if (end <= size) {
		return 0;
	}
	// One block at the end, allocated unwritten (it reads as zeros, and
	// SEEK_HOLE still sees a hole on ext4 and XFS), else one zero byte,
	// which is what the source has there.
	int error = 0;
	if (::fallocate(destination, 0, static_cast<off_t>(end - 1), 1) != 0) {
		error = unsupported(errno) ? write_zero_byte(destination, end - 1) : errno;
	}
	if (error == 0) {
		size = end;
	}
	return error;
}

} // namespace copyoffload
