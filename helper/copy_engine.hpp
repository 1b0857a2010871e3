// Moves one piece of a request (copy_piece), or a whole request piece by
// piece on the calling thread (copy). A piece starts with its method and
// falls back along the plan's method list on its own when a method turns
// out to be unsupported for it. Data methods copy only where the source
// has data and recreate its holes in the destination.
#pragma once

#include "copy_backend.hpp"
#include "copy_piece.hpp"
#include "copy_planner.hpp"
#include "copy_result.hpp"
#include "progress_tracker.hpp"
#include "sparse_files.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <vector>

namespace copyoffload {

// Optional callbacks around each slice.
struct EngineHooks {
	// Asked before each slice of a method that moves data (every method
	// but clone, which only shares extents) for `bytes`; may wait, and
	// returns false if `stop` was requested meanwhile. Bandwidth limits.
	std::function<bool(std::uint64_t bytes, const std::stop_token &stop)> pace;
	// Told the request's contiguous bytes done after each piece (copy()
	// only).
	std::function<void(std::uint64_t bytes_done)> progress;
};

// What a piece needs besides its range: the request's slice sizes and
// hooks, its stop token, and where the methods the kernel refused for the
// two files are remembered (null: nowhere).
struct PieceContext {
	SliceSizes slices{};
	const EngineHooks *hooks = nullptr;
	std::stop_token stop{};
	MethodRefusals *refusals = nullptr;
};

// How the daemon's engines move data with the read/write method.
struct EngineOptions {
	unsigned queue_depth = 8; // io_uring reads and writes in flight
};

class CopyEngine {
public:
	// The real backends, looking for holes in the source.
	explicit CopyEngine(EngineOptions options = {});
	// Any set of backends, found by their method() (tests use fakes), and
	// what tells it where the holes are (default: none anywhere).
	explicit CopyEngine(std::vector<std::unique_ptr<CopyBackend>> backends,
			    std::unique_ptr<SparseFiles> sparse = {});

	CopyEngine(const CopyEngine &) = delete;
	CopyEngine &operator=(const CopyEngine &) = delete;

	// Carries out one piece of `range` (the plan must carry no error).
	PieceResult copy_piece(const CopyRange &range, const CopyPlan &plan,
			       const CopyPiece &piece, const PieceContext &context);

	// The whole plan, piece after piece on this thread: stops at the first
	// piece that fails, or with ECANCELED once `stop` is requested,
	// keeping the count of bytes already done. The segments must tile
	// the range (std::logic_error otherwise).
	CopyResult copy(const CopyRange &range, const CopyPlan &plan, std::stop_token stop,
			SliceSizes slices = {}, const EngineHooks &hooks = {},
			MethodRefusals *refusals = nullptr);

	// The read/write backend's description, after making its ring.
	std::string prepare();

	// Any thread: when this engine last started a slice of a piece (at
	// most 8 MiB of data, one clone, or a hole). A filesystem that is slow
	// still shows progress here; one that hangs does not
	// (WorkerPool::check_stalls()).
	[[nodiscard]] std::chrono::steady_clock::time_point last_progress() const
	{
		return std::chrono::steady_clock::time_point(
			std::chrono::steady_clock::duration(last_progress_.load()));
	}

private:
	CopyBackend &backend_for(copyoffload_method method);
	// A hole of the source at [offset, offset + length) of the piece;
	// false when the destination cannot have one there without a write.
	bool copy_hole(const CopyRange &range, std::uint64_t offset, std::uint64_t length,
		       copyoffload_method method, PieceResult &result);

	void note_progress()
	{
		last_progress_.store(std::chrono::steady_clock::now().time_since_epoch().count());
	}

	std::vector<std::unique_ptr<CopyBackend>> backends_;
	std::unique_ptr<SparseFiles> sparse_;
	std::atomic<std::chrono::steady_clock::rep> last_progress_{0};
};

} // namespace copyoffload
