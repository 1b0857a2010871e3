// One way of moving bytes between two descriptors. The engine hands each
// backend a bounded slice, so cancellation is checked between slices and a
// backend never needs to know about it.
#pragma once

#include "copyoffload_protocol.h"

#include <cstdint>

namespace copyoffload {

struct CopyRange {
	int source = -1;
	int destination = -1;
	std::uint64_t source_offset = 0;      // range already known to fit off_t
	std::uint64_t destination_offset = 0;
	std::uint64_t length = 0;
};

struct BackendProgress {
	std::uint64_t bytes = 0; // copied contiguously from the slice start
	int error = 0;           // 0 iff bytes == slice length; ENODATA at source EOF
};

class CopyBackend {
public:
	virtual ~CopyBackend() = default;

	[[nodiscard]] virtual copyoffload_method method() const = 0;

	// Copies up to slice.length bytes, retrying EINTR and continuing after
	// short transfers; stops at the first error or at source EOF.
	virtual BackendProgress copy_slice(const CopyRange &slice) = 0;

	// True when `error`, reported before any byte of the slice moved, only
	// means this backend cannot handle these descriptors or this range, so
	// another may try.
	[[nodiscard]] virtual bool is_unsupported(int error) const = 0;

	// True when `error` (an unsupported one) says this method will never
	// work for these two files, whatever the range: later pieces and
	// copies of the same descriptors skip it.
	[[nodiscard]] virtual bool refuses_files(int) const { return false; }
};

} // namespace copyoffload
