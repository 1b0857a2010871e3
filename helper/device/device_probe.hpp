// What `copyoffload probe /dev/...` says about a block device: its kind and
// geometry, whether something holds it, and its copy offload capabilities
// and limits as the device reports them (NVMe Identify, SCSI RECEIVE COPY
// RESULTS). It only asks; it never writes to the device.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace copyoffload::device {

struct DeviceProbe {
	std::vector<std::pair<std::string, std::string>> facts; // in order
	bool device_copy = false;
	std::string detail; // how the helper would copy on it, or why it cannot
	std::string error;  // set when the device could not be inspected
};

// `fd`: the device, open for reading.
DeviceProbe probe_block_device(int fd);

} // namespace copyoffload::device
