// Moves one request's bytes: walks the planner's segments in order, each in
// slices with the backend of its current method, and falls back along the
// plan's method list, per segment, when a method turns out to be
// unsupported for that segment.
#pragma once

#include "copy_backend.hpp"
#include "copy_planner.hpp"
#include "copy_result.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <vector>

namespace copyoffload {

// Cancellation is noticed between slices, so slices bound how long a copy
// for a vanished client keeps running. A clone only changes metadata, so
// its slices may be much larger; they are rounded down to a multiple of the
// plan's block size so that every clone slice stays block-aligned. Zero
// means the default.
struct SliceSizes {
	std::uint64_t copy = std::uint64_t{8} << 20;
	std::uint64_t clone = std::uint64_t{1} << 30;
};

// Slices of at most `segment` bytes for every method (a share's
// "largest segment"); 0 keeps the defaults.
SliceSizes slices_for_segment(std::uint64_t segment);

// Optional callbacks around each slice.
struct EngineHooks {
	// Asked before each slice of a method that moves data (every method
	// but clone, which only shares extents) for `bytes`; may wait, and
	// returns false if `stop` was requested meanwhile. Bandwidth limits.
	std::function<bool(std::uint64_t bytes, const std::stop_token &stop)> pace;
	// Told the request's contiguous bytes done after each slice.
	std::function<void(std::uint64_t bytes_done)> progress;
};

class CopyEngine {
public:
	// The daemon's real backends.
	explicit CopyEngine(SliceSizes slices = {}, EngineHooks hooks = {});
	// Any set of backends, found by their method() (tests use fakes).
	CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends, SliceSizes slices,
		   EngineHooks hooks = {});

	// Copies `range` as the plan says (the plan must carry no error, and
	// its segments must cover the range). Stops early with ECANCELED once
	// `stop` is requested, keeping the count of bytes already done.
	CopyResult copy(const CopyRange &range, const CopyPlan &plan,
			std::stop_token stop);

private:
	CopyBackend &backend_for(copyoffload_method method);
	[[nodiscard]] std::uint64_t slice_limit(copyoffload_method method,
						std::uint64_t block_size) const;
	// Returns 0 or the request's final error; credits `result` as it goes.
	int copy_segment(const CopyRange &range, const CopyPlan &plan,
			 const CopySegment &segment, const std::stop_token &stop,
			 CopyResult &result);

	std::vector<std::unique_ptr<CopyBackend>> backends_;
	SliceSizes slices_;
	EngineHooks hooks_;
};

} // namespace copyoffload
