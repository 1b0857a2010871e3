// A decoded COPY request with its descriptors, and the task it becomes:
// checked and planned once, then cut into pieces that one or several
// workers run, then answered once, after its last piece, with the exact
// contiguous bytes done. Holding the connection keeps it alive until the
// reply is sent.
#pragma once

#include "copy_engine.hpp"
#include "copy_service.hpp"
#include "copyoffload_protocol.h"
#include "descriptor_pair.hpp"
#include "logging.hpp"
#include "progress_tracker.hpp"
#include "share_registry.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>

namespace copyoffload {

class Connection;

struct CopyJob {
	std::shared_ptr<Connection> connection;
	copyoffload_copy_request request{};
	// Passed with the request, or registered under its handle before.
	std::shared_ptr<DescriptorPair> files;
	// The share it counts for and the policy it follows; no share: the
	// engine's defaults, no limits, not counted.
	ShareBinding share{};
	std::optional<ShareState::InFlight> in_flight{};
	std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
};

// One request from its checks to its reply. take_piece() and
// piece_done() must be serialized by the caller (the scheduler's lock, or
// a single thread); run() may run on several threads at once.
class CopyTask {
public:
	// Checks and plans the job under its share's policy. Pieces of data
	// are at most `piece_size` bytes (0: the share's largest segment or
	// the engine's default), the unit of work spread over the workers.
	CopyTask(CopyJob job, const Logger &log, std::uint64_t piece_size = 0) noexcept;
	CopyTask(const CopyTask &) = delete;
	CopyTask &operator=(const CopyTask &) = delete;

	// The next piece to run, if the task wants more: none once the range
	// is cut, after a failure, or once its client is gone.
	std::optional<CopyPiece> take_piece();
	// How many pieces take_piece() would still hand out, up to `most`.
	[[nodiscard]] std::size_t pieces_left(std::size_t most) const;
	// Moves one piece's bytes; any thread. `paced`: the caller already
	// reserved the piece's time at the share's rate (the scheduler does,
	// so that no worker sleeps for a limited share); otherwise the piece
	// waits for its turn itself.
	PieceResult run(CopyEngine &engine, const CopyPiece &piece, bool paced = false) noexcept;
	// The share's bandwidth limiter when the share has a limit, else null.
	[[nodiscard]] RateLimiter *rate_limiter() const;
	void piece_done(const CopyPiece &piece, const PieceResult &result);
	// No piece running and none to take: finish() is due.
	[[nodiscard]] bool complete() const;
	// Whether a piece was ever taken (the task counts as running for its
	// share's concurrency limit from then on).
	[[nodiscard]] bool started() const { return started_; }
	// Whether one of its pieces runs now.
	[[nodiscard]] bool running() const { return running_ > 0; }

	// Whether its destination's blocks are still to be reserved
	// (preallocate_first()) by the worker that took its first piece,
	// before it runs it: no other piece is handed out until reserved().
	// Serialized like take_piece().
	[[nodiscard]] bool reserving() const { return reserving_; }
	// The reservation; any thread. Skipped for a client that went away.
	void reserve() noexcept;
	void reserved() { reserving_ = false; }

	// Logs the outcome, counts it in the share's statistics, lets go of
	// the descriptors and answers the client (unless it went away), with
	// reply_flags (COPYOFFLOAD_REPLY_*). Once, after complete(). Never
	// throws.
	void finish(std::uint32_t reply_flags = 0) noexcept;

	[[nodiscard]] const CopyJob &job() const { return job_; }

private:
	[[nodiscard]] bool stopping() const;

	CopyJob job_;
	const Logger &log_;
	CopySettings settings_;
	EngineHooks booked_; // a scheduled clone piece's: books data's time, never waits
	std::optional<PreparedCopy> prepared_;
	CopyOutcome outcome_; // the answer when nothing is to run
	std::optional<PieceCursor> cursor_;
	ProgressTracker tracker_;
	std::size_t running_ = 0;
	bool started_ = false;
	bool cut_short_ = false; // no more pieces will be taken
	bool reserving_ = false;
	std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
};

// The whole job on the calling thread, piece after piece: what a worker
// does with a job when it is the only one working on it. Never throws.
void run_copy_job(CopyJob &job, const Logger &log) noexcept;

} // namespace copyoffload
