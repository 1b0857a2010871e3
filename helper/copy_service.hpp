// Everything one COPY request needs after decoding: validation of its
// descriptors, planning, and the copy itself. No sockets involved, so it can
// be driven directly with files and pipes.
#pragma once

#include "copy_engine.hpp"
#include "copy_result.hpp"
#include "copyoffload_protocol.h"
#include "descriptor_pair.hpp"
#include "device_session.hpp"

#include <span>
#include <stop_token>
#include <string_view>
#include <variant>

namespace copyoffload {

// How to carry out a request: the share's method order, largest segment
// and preallocation, and the engine's hooks (bandwidth pacing, progress).
struct CopySettings {
	std::span<const copyoffload_method> order = default_method_order;
	SliceSizes slices{};
	EngineHooks hooks{};
	// Reserve the destination's blocks first where that pays
	// (preallocation.hpp).
	bool preallocate = true;
};

struct CopyOutcome {
	CopyResult result;
	// Why the request was refused before any I/O; empty when it was not.
	std::string_view rejection;
};

// A request that passed its checks: the range and its plan. Between two
// block devices also the device session: both devices claimed until it is
// let go of, and the device backend finds it by the descriptors.
struct PreparedCopy {
	CopyRange range;
	CopyPlan plan;
	std::shared_ptr<device::DeviceSession> device{};
	// Reserve the destination's blocks before the first piece
	// (preallocate_first()).
	bool preallocate = false;
};

// Reserves the destination's blocks for a prepared copy that asks for it
// (preallocation.hpp). Run by the copy's first piece, so that a
// filesystem that hangs there is held like one that hangs in a piece, and
// a copy that waits for its turn reserves nothing yet.
void preallocate_first(const PreparedCopy &copy);

// The request's range on the pair's descriptors.
CopyRange request_range(const copyoffload_copy_request &request, const DescriptorPair &pair);

// Order of checks: descriptors (EBADF/EINVAL; a registered pair's own
// checks are made once); two block devices then go to the device path
// (device_copy.hpp); otherwise the method mask and flags (EINVAL for
// CLONE_ONLY without CLONE, EOPNOTSUPP when no requested method is
// implemented), then a zero length succeeds without I/O: those come back
// as the outcome. Otherwise the planner splits the range by the
// destination's st_blksize and the source's st_size, following
// settings.order, and leaves out the methods the kernel already refused
// for this pair (unless that would leave none: the refusal is then the
// answer again). A plan that may write data to an ext4 destination asks
// for preallocation when settings.preallocate allows it.
std::variant<PreparedCopy, CopyOutcome> prepare_copy(const copyoffload_copy_request &request,
						    DescriptorPair &pair,
						    const CopySettings &settings = {});

// The last touch to a copy's result: a CLONE_ONLY request the kernel
// refused with EINVAL while the source ends before the range does is
// answered ENODATA; done bytes that end in a hole make the destination
// as long as they say (settle_trailing_hole).
void finish_copy(const copyoffload_copy_request &request, const DescriptorPair &pair,
		 CopyResult &result);

// When result's done bytes end in a hole, makes the destination reach
// their end. If it cannot (ENOSPC, EFBIG), only what the destination has
// counts: bytes_done shrinks to its end (the bytes per method with it)
// and takes the error, as does a successful result.
void settle_trailing_hole(std::uint64_t destination_offset, int destination,
			  SparseFiles &sparse, CopyResult &result);

// prepare_copy, the copy piece by piece on this thread, finish_copy.
CopyOutcome execute_copy(const copyoffload_copy_request &request, DescriptorPair &pair,
			 std::stop_token stop, const CopySettings &settings = {});

// The same on two descriptors the caller keeps.
CopyOutcome execute_copy(const copyoffload_copy_request &request, int source,
			 int destination, std::stop_token stop,
			 const CopySettings &settings = {});

} // namespace copyoffload
