// Checks the two descriptors of a COPY request before any data moves. The
// daemon only ever acts on descriptors smbd opened for the user, so these
// checks make sure it cannot be talked into more than a write(2) through
// them would do.
#pragma once

#include "copyoffload_protocol.h"
#include "device_session.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

namespace copyoffload {

struct DescriptorRejection {
	int status;              // positive errno for the reply
	std::string_view reason; // for the log
};

// What the checks learned about an accepted pair, for every later copy of
// it: which files they are (overlap within one file), the destination's
// block size (the planner's alignment) and whether its filesystem is one
// where preallocation pays (preallocation.hpp).
struct PairIdentity {
	dev_t source_device = 0;
	ino_t source_inode = 0;
	dev_t destination_device = 0;
	ino_t destination_inode = 0;
	std::uint64_t destination_block_size = 0; // st_blksize; 0: not reported
	bool destination_preallocates = false;
	// Two block devices (raw volumes, copyoffloadd --device-copy): where
	// they lie, for overlap, and their logical block size.
	std::optional<device::BlockPairLayout> block_devices;
};

// The checks that depend on the descriptors alone: file types (two regular
// files, or two block devices of one kind when device copy is enabled),
// access modes, O_PATH, O_APPEND. A registered pair passes them once.
std::variant<PairIdentity, DescriptorRejection> check_descriptor_pair(int source,
								      int destination);

// The check that depends on the request: overlapping ranges of one file
// (or of one disk, for block devices and their partitions).
std::optional<DescriptorRejection>
check_copy_range(const PairIdentity &pair, const copyoffload_copy_request &request);

// Both, for a pair used once.
std::optional<DescriptorRejection>
check_copy_descriptors(int source, int destination,
		       const copyoffload_copy_request &request);

} // namespace copyoffload
