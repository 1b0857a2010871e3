// Outcome of one COPY request: what the COPY_REPLY carries, plus where the
// time went and which method failed, for the daemon's statistics.
#pragma once

#include "copyoffload_protocol.h"

#include <array>
#include <cstdint>
#include <optional>

namespace copyoffload {

struct CopyResult {
	int status = 0; // 0, or a positive errno
	std::uint64_t bytes_done = 0; // contiguous from the start of the range
	std::array<std::uint64_t, COPYOFFLOAD_METHOD_COUNT> bytes_by_method{};
	// Microseconds spent in each method's backend calls.
	std::array<std::uint64_t, COPYOFFLOAD_METHOD_COUNT> usec_by_method{};
	// The method whose error ended the request; none when it succeeded or
	// ended before any backend ran (a rejection, cancellation).
	std::optional<copyoffload_method> failed_method;
	// Of bytes_done, those at its end that were holes of the source: the
	// destination has them only once it is long enough (nothing was
	// written there).
	std::uint64_t trailing_hole = 0;

	static CopyResult failed(int error)
	{
		CopyResult result;
		result.status = error;
		return result;
	}

	// Records bytes moved by `method`; keeps the per-method sum equal to
	// bytes_done, which the reply decoder insists on.
	void credit(copyoffload_method method, std::uint64_t bytes)
	{
		bytes_by_method.at(method) += bytes;
		bytes_done += bytes;
	}

	// Whether the request moved bytes with `method` or failed in it.
	[[nodiscard]] bool used(copyoffload_method method) const
	{
		return bytes_by_method.at(method) > 0 || failed_method == method;
	}

	// The method that moved most bytes (ties go to the preferred, lower
	// numbered one); none when nothing was copied.
	[[nodiscard]] std::optional<copyoffload_method> dominant_method() const
	{
		std::optional<copyoffload_method> best;
		for (unsigned m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
			if (bytes_by_method[m] > 0 &&
			    (!best || bytes_by_method[m] > bytes_by_method[*best])) {
				best = static_cast<copyoffload_method>(m);
			}
		}
		return best;
	}
};

} // namespace copyoffload
