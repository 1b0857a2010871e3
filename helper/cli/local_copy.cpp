#include "local_copy.hpp"

#include "copy_service.hpp"
#include "logging.hpp"
#include "progress_bar.hpp"
#include "text_format.hpp"
#include "unique_fd.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <optional>

namespace copyoffload::cli {

int local_copy(const LocalCopyOptions &options, std::FILE *out, std::FILE *err)
{
	auto fail = [&](const std::string &what) {
		fmt::print(err, "copyoffload: {}\n", what);
		return 1;
	};

	UniqueFd source(::open(options.source.c_str(), O_RDONLY | O_CLOEXEC));
	if (!source) {
		return fail(fmt::format("cannot open {}: {}", options.source, describe_errno(errno)));
	}
	struct stat src{};
	if (::fstat(source.get(), &src) != 0 || !S_ISREG(src.st_mode)) {
		return fail(fmt::format("{} is not a regular file", options.source));
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
	UniqueFd destination(::open(options.destination.c_str(),
				    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, src.st_mode & 07777));
	if (!destination) {
		return fail(fmt::format("cannot open {}: {}", options.destination,
					describe_errno(errno)));
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
