#include "progress_tracker.hpp"

#include <cerrno>
#include <new>

namespace copyoffload {

void ProgressTracker::record(const CopyPiece &piece, const PieceResult &result)
{
	for (std::size_t m = 0; m < result.usec_by_method.size(); m++) {
		result_.usec_by_method[m] += result.usec_by_method[m];
	}
	if (result.error != 0 || result.bytes < piece.length) {
		failed_ = true;
	}
	if (closed_) {
		return;
	}
	try {
		pending_.insert_or_assign(piece.offset, std::pair{piece.length, result});
	} catch (const std::bad_alloc &) {
		// Its bytes cannot be kept: the copy ends where the piece began,
		// and takes no more pieces.
		failed_ = true;
		stop_at(piece.offset, ENOMEM);
		return;
	}
	advance();
}

void ProgressTracker::stop_at(std::uint64_t offset, int error)
{
	if (!stop_ || offset < stop_->first) {
		stop_ = {offset, error};
	}
	advance();
}

void ProgressTracker::advance()
{
	while (!closed_) {
		const std::uint64_t at = result_.bytes_done;
		auto found = pending_.find(at);
		if (found == pending_.end()) {
			if (stop_ && stop_->first <= at && at < length_) {
				closed_ = true;
				result_.status = stop_->second;
			}
			return;
		}
		const auto [length, piece] = found->second;
		pending_.erase(found);
		for (std::size_t m = 0; m < piece.bytes_by_method.size(); m++) {
			result_.bytes_by_method[m] += piece.bytes_by_method[m];
		}
		result_.bytes_done += piece.bytes;
		// A piece that is all hole continues the hole before it.
		if (piece.bytes > 0) {
			result_.trailing_hole = piece.trailing_hole == piece.bytes
							? result_.trailing_hole + piece.bytes
							: piece.trailing_hole;
		}
		if (piece.error != 0 || piece.bytes < length) {
			closed_ = true;
			// A piece that stops short without saying why is an I/O
			// error: the reply must never claim success for it.
			result_.status = piece.error != 0 ? piece.error : EIO;
			result_.failed_method = piece.failed_method;
			pending_.clear();
		}
	}
}

CopyResult ProgressTracker::result() const
{
	CopyResult result = result_;
	if (!closed_ && result.bytes_done < length_) {
		result.status = EIO; // a gap nobody accounted for
	}
	return result;
}

} // namespace copyoffload
