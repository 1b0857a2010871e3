#include "copy_service.hpp"

#include "descriptor_check.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace copyoffload {

namespace {

// What the planner needs from the descriptors; the error of fstat if not.
int inspect_geometry(const copyoffload_copy_request &request, int source,
		     int destination, CopyGeometry &geometry)
{
	struct stat src{};
	struct stat dst{};
	if (::fstat(source, &src) != 0 || ::fstat(destination, &dst) != 0) {
		return errno;
	}
	geometry = {
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length,
		.block_size = static_cast<std::uint64_t>(dst.st_blksize > 0 ? dst.st_blksize : 0),
		.source_size = static_cast<std::uint64_t>(src.st_size > 0 ? src.st_size : 0),
	};
	return 0;
}

// The kernel answers EINVAL for a clone past the source's EOF; say ENODATA
// there, as every other copy does.
bool source_ends_early(const copyoffload_copy_request &request, int source)
{
	struct stat src{};
	return ::fstat(source, &src) == 0 &&
	       static_cast<std::uint64_t>(src.st_size) < request.src_offset + request.length;
}

} // namespace

CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop, const CopySettings &settings)
{
	if (auto rejection = check_copy_descriptors(source, destination, request)) {
		return {CopyResult::failed(rejection->status), rejection->reason};
	}
	const bool clone_only = (request.flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0;
	if (int error = plan_methods(request.methods, request.flags, settings.order).error;
	    error != 0) {
		return {CopyResult::failed(error),
			clone_only ? "clone-only copy without the clone method"
				   : "no allowed method is implemented"};
	}
	if (request.length == 0) {
		return {};
	}
	CopyGeometry geometry;
	if (int error = inspect_geometry(request, source, destination, geometry); error != 0) {
		return {CopyResult::failed(error), "descriptors cannot be inspected"};
	}
	CopyRange range{
		.source = source,
		.destination = destination,
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length,
	};
	CopyResult result = CopyEngine(settings.slices, settings.hooks)
				    .copy(range,
					  plan_copy(request.methods, request.flags, geometry,
						    settings.order),
					  std::move(stop));
	if (clone_only && result.status == EINVAL && source_ends_early(request, source)) {
		result.status = ENODATA;
	}
	return {result, {}};
}

} // namespace copyoffload
