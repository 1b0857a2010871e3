// Checks the two descriptors of a COPY request before any data moves. The
// daemon only ever acts on descriptors smbd opened for the user, so these
// checks make sure it cannot be talked into more than a write(2) through
// them would do.
#pragma once

#include "copyoffload_protocol.h"

#include <optional>
#include <string_view>

namespace copyoffload {

struct DescriptorRejection {
	int status;              // positive errno for the reply
	std::string_view reason; // for the log
};

std::optional<DescriptorRejection>
check_copy_descriptors(int source, int destination,
		       const copyoffload_copy_request &request);

} // namespace copyoffload
