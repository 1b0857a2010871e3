// Everything one COPY request needs after decoding: validation of its
// descriptors, planning, and the copy itself. No sockets involved, so it can
// be driven directly with files and pipes.
#pragma once

#include "copy_engine.hpp"
#include "copy_result.hpp"
#include "copyoffload_protocol.h"

#include <span>
#include <stop_token>
#include <string_view>

namespace copyoffload {

// How to carry out a request: the share's method order and largest
// segment, and the engine's hooks (bandwidth pacing, progress).
struct CopySettings {
	std::span<const copyoffload_method> order = default_method_order;
	SliceSizes slices{};
	EngineHooks hooks{};
};

struct CopyOutcome {
	CopyResult result;
	// Why the request was refused before any I/O; empty when it was not.
	std::string_view rejection;
};

// Order of checks: descriptors (EBADF/EINVAL), then the method mask and
// flags (EINVAL for CLONE_ONLY without CLONE, EOPNOTSUPP when no requested
// method is implemented), then a zero length succeeds without I/O. The
// planner then splits the range by the destination's st_blksize and the
// source's st_size, following settings.order. A CLONE_ONLY request the
// kernel refuses with EINVAL while the source ends before the range does is
// answered ENODATA.
CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop,
			 const CopySettings &settings = {});

} // namespace copyoffload
