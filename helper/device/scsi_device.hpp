// SCSI passthrough (SG_IO on the sd block device descriptor itself) for
// third-party copy: the logical unit's designator, the copy manager's
// operating parameters, and EXTENDED COPY commands.
#pragma once

#include "block_device.hpp"
#include "device_error.hpp"
#include "scsi_xcopy_plan.hpp"

#include <cstdint>
#include <span>
#include <string>

namespace copyoffload::device {

// How long one EXTENDED COPY may take: the copy manager moves up to its
// largest segment before it answers.
inline constexpr unsigned xcopy_timeout_ms = 120000;

class ScsiLogicalUnit {
public:
	// `fd`: a descriptor of `device`, a SCSI disk or one of its partitions.
	explicit ScsiLogicalUnit(int fd) : fd_(fd) {}

	// INQUIRY, VPD page 83h.
	Result<ScsiDesignator> designator();
	// RECEIVE COPY RESULTS, OPERATING PARAMETERS.
	Result<ScsiCopyParameters> operating_parameters();
	// EXTENDED COPY per command, in order, stopping at the first failure.
	// Sent to this logical unit, which must be the source's or the
	// destination's.
	CommandsOutcome extended_copy(const ScsiDesignator &source,
				      const ScsiDesignator &destination, std::uint32_t block_size,
				      std::span<const XcopyCommand> commands);

private:
	int fd_;
};

} // namespace copyoffload::device
