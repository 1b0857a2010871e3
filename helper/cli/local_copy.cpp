#include "local_copy.hpp"

#include "copy_service.hpp"
#include "logging.hpp"
#include "progress_bar.hpp"
#include "text_format.hpp"
#include "unique_fd.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>

namespace copyoffload::cli {

namespace {

// Opens path without blocking (a FIFO with no peer would hang), then makes
// the descriptor block again, as the copy's reads and writes expect.
UniqueFd open_nonblocking(const std::string &path, int flags, mode_t mode = 0)
{
	UniqueFd fd(::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC, mode));
	if (fd) {
		const int status = ::fcntl(fd.get(), F_GETFL);
		if (status < 0 || ::fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) != 0) {
			return UniqueFd();
		}
	}
	return fd;
}

// A file of /proc or /sys: regular, of size 0, and yet it reads.
bool sizes_itself_zero(int fd)
{
	char byte = 0;
	return ::pread(fd, &byte, 1, 0) > 0;
}

} // namespace

int local_copy(const LocalCopyOptions &options, std::FILE *out, std::FILE *err)
{
	auto fail = [&](const std::string &what) {
		fmt::print(err, "copyoffload: {}\n", what);
		return 1;
	};

	UniqueFd source = open_nonblocking(options.source, O_RDONLY);
	if (!source) {
		return fail(fmt::format("cannot open {}: {}", options.source, describe_errno(errno)));
	}
	struct stat src{};
	if (::fstat(source.get(), &src) != 0 || !S_ISREG(src.st_mode)) {
		return fail(fmt::format("{} is not a regular file", options.source));
	}
	if (src.st_size == 0 && sizes_itself_zero(source.get())) {
		return fail(fmt::format("{} says it is empty but is not (a /proc or /sys file?); "
					"not copied",
					options.source));
	}
	if (static_cast<std::uint64_t>(src.st_size) > COPYOFFLOAD_MAX_COPY_LENGTH) {
		return fail(fmt::format("{} is larger than {} bytes, the most one copy may move",
					options.source, COPYOFFLOAD_MAX_COPY_LENGTH));
	}
	// Truncating the destination must never truncate the source.
	struct stat dst{};
	if (::stat(options.destination.c_str(), &dst) == 0 && dst.st_dev == src.st_dev &&
	    dst.st_ino == src.st_ino) {
		return fail(fmt::format("{} and {} are the same file", options.source,
					options.destination));
	}
	// As cp: the permission bits without setuid, setgid and sticky, which
	// would make a user's program run as root when root copies it. Not
	// truncated yet: a copy refused before any byte leaves DST as it was.
	UniqueFd destination =
		open_nonblocking(options.destination, O_WRONLY | O_CREAT, src.st_mode & 0777);
	if (!destination) {
		return fail(fmt::format("cannot open {}: {}", options.destination,
					describe_errno(errno)));
	}
	if (::fstat(destination.get(), &dst) != 0 || !S_ISREG(dst.st_mode)) {
		return fail(fmt::format("{} is not a regular file", options.destination));
	}

	copyoffload_copy_request request{};
	request.length = static_cast<std::uint64_t>(src.st_size);
	CopySettings settings;
	if (options.methods.empty()) {
		request.methods = COPYOFFLOAD_METHODS_ALL;
	} else {
		for (copyoffload_method method : options.methods) {
			request.methods |= COPYOFFLOAD_METHOD_BIT(method);
		}
		settings.order = options.methods;
	}
	settings.slices = slices_for_segment(options.segment);
	std::optional<ProgressBar> bar;
	if (options.progress) {
		bar.emplace(out, request.length);
		settings.hooks.progress = [&bar](std::uint64_t done) { bar->update(done); };
	}

	auto started = std::chrono::steady_clock::now();
	CopyOutcome outcome = execute_copy(request, source.get(), destination.get(), {}, settings);
	double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
				 .count();
	const CopyResult &result = outcome.result;
	// The copy wrote over DST's first bytes; what lay beyond goes now.
	if (result.status == 0 && ::ftruncate(destination.get(), src.st_size) != 0) {
		return fail(fmt::format("copied {} to {}, but cannot cut it to {} bytes: {}",
					options.source, options.destination, src.st_size,
					describe_errno(errno)));
	}
	if (bar) {
		bar->finish(result.bytes_done);
	}
	const auto &by = result.bytes_by_method;
	std::string methods = fmt::format(
		"clone={} copy_file_range={} device={} read_write={}",
		by[COPYOFFLOAD_METHOD_CLONE], by[COPYOFFLOAD_METHOD_COPY_FILE_RANGE],
		by[COPYOFFLOAD_METHOD_DEVICE], by[COPYOFFLOAD_METHOD_READ_WRITE]);
	if (result.status != 0) {
		return fail(fmt::format("copying {} to {} failed after {} of {} bytes: {}{}{} ({})",
					options.source, options.destination, result.bytes_done,
					request.length, describe_errno(result.status),
					outcome.rejection.empty() ? "" : ": ", outcome.rejection,
					methods));
	}
	fmt::print(out, "copied {} bytes in {:.3f} s ({}): {}\n", result.bytes_done, seconds,
		   human_rate(static_cast<double>(result.bytes_done), seconds), methods);
	return 0;
}

} // namespace copyoffload::cli
