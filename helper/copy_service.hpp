// Everything one COPY request needs after decoding: validation of its
// descriptors, planning, and the copy itself. No sockets involved, so it can
// be driven directly with files and pipes.
#pragma once

#include "copy_engine.hpp"
#include "copy_result.hpp"
#include "copyoffload_protocol.h"

#include <stop_token>
#include <string_view>

namespace copyoffload {

struct CopyOutcome {
	CopyResult result;
	// Why the request was refused before any I/O; empty when it was not.
	std::string_view rejection;
};

// Order of checks: descriptors (EBADF/EINVAL), then the method mask and
// flags (EOPNOTSUPP), then a zero length succeeds without I/O.
CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop,
			 std::uint64_t slice_size = CopyEngine::default_slice_size);

} // namespace copyoffload
