// Turns the results of a request's pieces, finished in any order (pieces
// run on several workers at once), into the request's result: the bytes
// done are exactly the contiguous prefix from the start of the range, and
// the status is that of the first piece that did not finish. Bytes copied
// beyond a failed piece are never counted.
#pragma once

#include "copy_piece.hpp"
#include "copy_result.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <optional>

namespace copyoffload {

// What one piece did.
struct PieceResult {
	std::uint64_t bytes = 0; // contiguous from the piece's start
	int error = 0;           // 0 iff bytes == the piece's length
	std::array<std::uint64_t, COPYOFFLOAD_METHOD_COUNT> bytes_by_method{};
	std::array<std::uint64_t, COPYOFFLOAD_METHOD_COUNT> usec_by_method{};
	std::optional<copyoffload_method> failed_method;
	// Of bytes, those at its end that were holes of the source.
	std::uint64_t trailing_hole = 0;

	void credit(copyoffload_method method, std::uint64_t n)
	{
		bytes_by_method.at(method) += n;
		bytes += n;
		if (n > 0) {
			trailing_hole = 0;
		}
	}
	// A hole's bytes count for the method that moves the data around it:
	// the reply's bytes per method add up to the bytes done.
	void credit_hole(copyoffload_method method, std::uint64_t n)
	{
		bytes_by_method.at(method) += n;
		bytes += n;
		trailing_hole += n;
	}
};

class ProgressTracker {
public:
	explicit ProgressTracker(std::uint64_t length) : length_(length) {}

	// A piece finished (in any order). Its bytes count once every piece
	// before it did all of theirs.
	void record(const CopyPiece &piece, const PieceResult &result);

	// No piece from `offset` on will run (cancelled, or given up after a
	// failure): if the prefix reaches it, the request ends there with
	// `error`.
	void stop_at(std::uint64_t offset, int error);

	// True once some piece failed: running more pieces is pointless.
	[[nodiscard]] bool failed() const { return failed_; }
	// The contiguous bytes done so far.
	[[nodiscard]] std::uint64_t bytes_done() const { return result_.bytes_done; }

	// The request's result; call once every piece that ran is recorded.
	// A range neither recorded nor stopped counts as an internal error.
	[[nodiscard]] CopyResult result() const;

private:
	void advance();

	std::uint64_t length_;
	CopyResult result_;
	bool closed_ = false; // the prefix ended short of the range
	bool failed_ = false;
	// Finished pieces beyond the prefix, by offset: at most one per piece
	// running at once, so this stays small.
	std::map<std::uint64_t, std::pair<std::uint64_t, PieceResult>> pending_;
	std::optional<std::pair<std::uint64_t, int>> stop_; // offset, error
};

} // namespace copyoffload
