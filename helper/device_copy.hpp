// prepare_copy() for a pair of block devices (raw volumes): the device
// planner, and the device session that claims both devices for the
// request and carries out its device segment (helper/device/).
#pragma once

#include "copy_service.hpp"
#include "descriptor_pair.hpp"

#include <variant>

namespace copyoffload {

// `identity` must be the pair's, with block_devices set. Refuses what the
// device path cannot do (no DEVICE method allowed: EOPNOTSUPP, clone-only:
// EOPNOTSUPP), answers a zero length, and otherwise claims the devices
// (EBUSY while mounted or held; ENODATA/ENOSPC past a device's end) and
// plans head and tail for read/write, the pages between for the device.
std::variant<PreparedCopy, CopyOutcome>
prepare_device_copy(const copyoffload_copy_request &request, DescriptorPair &pair,
		    const PairIdentity &identity, const CopySettings &settings);

} // namespace copyoffload
