// The loop every byte-moving syscall needs: retry EINTR, continue after
// short transfers, stop at the first error or at a zero-byte transfer.
#pragma once

#include "copy_backend.hpp"

#include <sys/types.h>

#include <cerrno>
#include <cstdint>

namespace copyoffload {

// Calls step(done) until `length` bytes are done; step returns what one
// syscall moved (or -1 with errno). A zero return means no progress can be
// made and ends the loop with `zero_error`.
template <typename Step>
BackendProgress transfer_loop(std::uint64_t length, int zero_error, Step step)
{
	BackendProgress progress;
	while (progress.bytes < length) {
		ssize_t n = step(progress.bytes);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			progress.error = errno;
			return progress;
		}
		if (n == 0) {
			progress.error = zero_error;
			return progress;
		}
		progress.bytes += static_cast<std::uint64_t>(n);
	}
	return progress;
}

} // namespace copyoffload
