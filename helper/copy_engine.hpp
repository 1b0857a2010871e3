// Moves one request's bytes: a planner turns the request's method mask into
// an ordered list of methods, the engine walks the range in slices with the
// matching backends and falls back to the next method when one turns out to
// be unsupported for these descriptors.
#pragma once

#include "copy_backend.hpp"
#include "copy_result.hpp"

#include <cstdint>
#include <memory>
#include <stop_token>
#include <vector>

namespace copyoffload {

struct CopyPlan {
	std::vector<copyoffload_method> methods; // most preferred first
	int error = 0; // EOPNOTSUPP when nothing implemented may serve it
};

// Methods this daemon implements, filtered by `methods_mask`, in the
// protocol's order of preference. CLONE and DEVICE are not implemented yet,
// and neither is the all-or-nothing COPYOFFLOAD_COPY_CLONE_ONLY flag.
CopyPlan plan_copy(std::uint32_t methods_mask, std::uint32_t flags);

class CopyEngine {
public:
	// Cancellation is noticed between slices, so this bounds how long a
	// copy for a vanished client keeps running.
	static constexpr std::uint64_t default_slice_size = std::uint64_t{8} << 20;

	// The daemon's real backends.
	explicit CopyEngine(std::uint64_t slice_size = default_slice_size);
	// Any set of backends, found by their method() (tests use fakes).
	CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends,
		   std::uint64_t slice_size);

	// Copies `range` with the plan's methods (the plan must carry no
	// error). Stops early with ECANCELED once `stop` is requested, keeping
	// the count of bytes already done.
	CopyResult copy(const CopyRange &range, const CopyPlan &plan,
			std::stop_token stop);

private:
	CopyBackend &backend_for(copyoffload_method method);

	std::vector<std::unique_ptr<CopyBackend>> backends_;
	std::uint64_t slice_size_;
};

} // namespace copyoffload
