#include "device_copy.hpp"

#include "device_plan.hpp"
#include "device_session.hpp"

#include <cerrno>
#include <string_view>

namespace copyoffload {

namespace {

// CopyOutcome carries a fixed reason; the session's own (naming the
// device) goes to the daemon's debug log with the copy's other lines.
std::string_view session_failure(int error)
{
	switch (error) {
	case EBUSY:
		return "a block device is in use: mounted, part of a device-mapper, md or "
		       "swap device, or opened exclusively by another program";
	case ENODATA:
		return "the range ends past the source device's end";
	case ENOSPC:
		return "the range ends past the destination device's end";
	}
	return "the block devices cannot be inspected or claimed";
}

} // namespace

std::variant<PreparedCopy, CopyOutcome>
prepare_device_copy(const copyoffload_copy_request &request, DescriptorPair &pair,
		    const PairIdentity &identity, const CopySettings &settings)
{
	const CopyGeometry geometry{
		.source_offset = request.src_offset,
		.destination_offset = request.dst_offset,
		.length = request.length,
		.block_size = identity.block_devices->block_size,
	};
	CopyPlan plan = device::plan_device_copy(request.methods, request.flags, geometry,
						 settings.order);
	if (plan.error != 0) {
		return CopyOutcome{CopyResult::failed(plan.error),
				   (request.flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0
					   ? "block devices cannot be cloned"
					   : "block devices are copied only with the device method"};
	}
	if (request.length == 0) {
		return CopyOutcome{};
	}
	auto session = device::DeviceSession::open(pair.source(), pair.destination(),
						   request.src_offset, request.dst_offset,
						   request.length);
	if (!session) {
		const int error = session.error().error;
		return CopyOutcome{CopyResult::failed(error), session_failure(error)};
	}
	return PreparedCopy{
		.range = request_range(request, pair),
		.plan = std::move(plan),
		.device = std::move(session.value()),
	};
}

} // namespace copyoffload
