#include "copy_service.hpp"

#include "descriptor_check.hpp"

#include <cerrno>

namespace copyoffload {

CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop,
			 std::uint64_t slice_size)
{
	if (auto rejection = check_copy_descriptors(source, destination, request)) {
		return {CopyResult::failed(rejection->status), rejection->reason};
	}
	CopyPlan plan = plan_copy(request.methods, request.flags);
	if (plan.error != 0) {
		return {CopyResult::failed(plan.error),
			(request.flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0
				? "clone-only copies are not supported yet"
				: "no requested method is implemented"};
	}
	if (request.length == 0) {
		return {};
	}
	CopyRange range{
		.source = source,
		.destination = destination,
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length,
	};
	return {CopyEngine(slice_size).copy(range, plan, std::move(stop)), {}};
}

} // namespace copyoffload
