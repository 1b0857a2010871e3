#include "copy_job.hpp"

#include "connection.hpp"

#include <algorithm>
#include <cerrno>
#include <exception>
#include <new>
#include <string>
#include <string_view>

namespace copyoffload {

namespace {

CopySettings settings_for(const CopyJob &job, std::uint64_t piece_size)
{
	CopySettings settings;
	const ShareBinding &binding = job.share;
	if (!binding.order.empty()) {
		settings.order = binding.order;
	}
	settings.slices = with_defaults(slices_for_segment(binding.max_segment));
	settings.preallocate = binding.preallocate;
	if (piece_size != 0) {
		settings.slices.copy = std::min(settings.slices.copy, piece_size);
	}
	if (binding.share) {
		settings.hooks.pace = [share = binding.share](std::uint64_t bytes,
							      const std::stop_token &stop) {
			return share->rate_limiter().acquire(bytes, stop);
		};
		if (binding.share->rate_limiter().rate() != 0) {
			// The scheduler paces data pieces; a clone piece that
			// falls back to copying (a pair whose filesystem cannot
			// clone, before that is known) books its data's time
			// after moving it (CopyTask::run). Cut like data, it
			// moves no more at once than a data piece would, instead
			// of up to 1 GiB ahead of the limit.
			settings.slices.clone = std::min(settings.slices.clone, settings.slices.copy);
		}
	}
	return settings;
}

// For a scheduled piece: data moved books its time at the share's rate and
// goes on at once.
EngineHooks booking_hooks(const CopyJob &job)
{
	EngineHooks hooks;
	if (job.share.share) {
		hooks.pace = [share = job.share.share](std::uint64_t bytes,
						       const std::stop_token &stop) {
			share->rate_limiter().reserve(bytes, RateLimiter::Clock::now());
			return !stop.stop_requested();
		};
	}
	return hooks;
}

std::uint64_t usec_since(std::chrono::steady_clock::time_point since)
{
	return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
						  std::chrono::steady_clock::now() - since)
						  .count());
}

// For the log line: the name in double quotes, any quote or backslash in it
// escaped (share names have no control characters).
std::string quoted_name(std::string_view name)
{
	std::string out = "\"";
	for (char c : name) {
		if (c == '"' || c == '\\') {
			out += '\\';
		}
		out += c;
	}
	return out + '"';
}

} // namespace

CopyTask::CopyTask(CopyJob job, const Logger &log, std::uint64_t piece_size) noexcept
	: job_(std::move(job)), log_(log), tracker_(job_.request.length)
{
	try {
		settings_ = settings_for(job_, piece_size);
		booked_ = booking_hooks(job_);
		if (!job_.files) {
			outcome_ = {CopyResult::failed(EBADF), "no descriptors"};
			return;
		}
		auto prepared = prepare_copy(job_.request, *job_.files, settings_);
		if (auto *outcome = std::get_if<CopyOutcome>(&prepared)) {
			outcome_ = *outcome;
			return;
		}
		prepared_.emplace(std::get<PreparedCopy>(std::move(prepared)));
		reserving_ = prepared_->preallocate;
		if (const auto &device = prepared_->device) {
			log_.debug("copy id={}: {}", job_.request.request_id,
				   device->copier() != nullptr
					   ? "device copy: " + device->copier()->describe()
					   : "no device copy: " + device->unavailable_reason());
		}
		cursor_.emplace(prepared_->plan, job_.request.length, settings_.slices);
	} catch (const std::bad_alloc &) {
		cursor_.reset();
		outcome_ = {CopyResult::failed(ENOMEM), "out of memory"};
	} catch (const std::exception &e) {
		cursor_.reset();
		log_.error("copy id={}: internal error: {}", job_.request.request_id, e.what());
		outcome_ = {CopyResult::failed(EIO), "internal error"};
	}
}

bool CopyTask::stopping() const
{
	return tracker_.failed() || (job_.connection && job_.connection->cancelled());
}

std::optional<CopyPiece> CopyTask::take_piece()
{
	if (!cursor_ || cut_short_) {
		return std::nullopt;
	}
	if (stopping()) {
		// A failure ends the prefix before this point anyway; a client
		// that went away gets ECANCELED for the rest.
		cut_short_ = true;
		tracker_.stop_at(cursor_->position(), ECANCELED);
		return std::nullopt;
	}
	auto piece = cursor_->next(job_.files->refusals().mask());
	if (piece) {
		running_++;
		started_ = true;
	}
	return piece;
}

std::size_t CopyTask::pieces_left(std::size_t most) const
{
	if (!cursor_ || cut_short_ || stopping()) {
		return 0;
	}
	PieceCursor ahead = *cursor_;
	std::size_t count = 0;
	while (count < most && ahead.next(job_.files->refusals().mask())) {
		count++;
	}
	return count;
}

RateLimiter *CopyTask::rate_limiter() const
{
	const auto &share = job_.share.share;
	return share && share->rate_limiter().rate() != 0 ? &share->rate_limiter() : nullptr;
}

PieceResult CopyTask::run(CopyEngine &engine, const CopyPiece &piece, bool paced) noexcept
{
	PieceResult result;
	try {
		// The scheduler reserves data pieces before it hands them out. A
		// clone piece moves no data unless the clone is refused and it
		// falls back to copying; it then books that data's time at the
		// share's rate without waiting, so the worker never sleeps on
		// its connections, and the share's next piece waits instead.
		static const EngineHooks unpaced{};
		const EngineHooks *hooks = &settings_.hooks; // waits for its turn
		if (paced) {
			hooks = piece.first == COPYOFFLOAD_METHOD_CLONE ? &booked_ : &unpaced;
		}
		const PieceContext context{
			.slices = settings_.slices,
			.hooks = hooks,
			.stop = job_.connection ? job_.connection->stop_token() : std::stop_token{},
			.refusals = &job_.files->refusals(),
		};
		return engine.copy_piece(prepared_->range, prepared_->plan, piece, context);
	} catch (const std::bad_alloc &) {
		result.error = ENOMEM;
	} catch (const std::exception &e) {
		log_.error("copy id={}: internal error: {}", job_.request.request_id, e.what());
		result.error = EIO;
	}
	return result;
}

void CopyTask::reserve() noexcept
{
	if (prepared_ && !(job_.connection && job_.connection->cancelled())) {
		preallocate_first(*prepared_);
	}
}

void CopyTask::piece_done(const CopyPiece &piece, const PieceResult &result)
{
	running_--;
	tracker_.record(piece, result);
}

bool CopyTask::complete() const
{
	return running_ == 0 && (!cursor_ || cut_short_ || cursor_->done() || stopping());
}

void CopyTask::finish(std::uint32_t reply_flags) noexcept
{
	try {
		const copyoffload_copy_request &request = job_.request;
		Connection &connection = *job_.connection;

		CopyOutcome outcome = outcome_;
		if (cursor_) {
			if (!cursor_->done()) {
				tracker_.stop_at(cursor_->position(), ECANCELED);
			}
			outcome.result = tracker_.result();
			finish_copy(request, *job_.files, outcome.result);
		}
		const CopyResult &result = outcome.result;
		const std::uint64_t elapsed = usec_since(started_at_);

		// The client may reuse the file as soon as it has the reply, so
		// the daemon lets go of it first (a registered pair stays open
		// until the client releases it). The device session goes before
		// the descriptors: it is found by their numbers, which the next
		// request may get as soon as they are closed.
		if (prepared_) {
			prepared_->device.reset(); // the devices' claims
		}
		job_.files.reset();

		auto method = result.dominant_method();
		// The integration tests parse this line: keep its format stable,
		// and add new fields only at its end.
		const auto &by = result.bytes_by_method;
		log_.debug("copy done id={} peer_pid={} src_off={} dst_off={} length={} "
			   "bytes={} method={} status={} usec={} "
			   "clone={} copy_file_range={} device={} read_write={} share={}",
			   request.request_id, connection.peer().pid, request.src_offset,
			   request.dst_offset, request.length, result.bytes_done,
			   method ? copyoffload_method_name(*method) : "none",
			   errno_name(result.status), elapsed, by[COPYOFFLOAD_METHOD_CLONE],
			   by[COPYOFFLOAD_METHOD_COPY_FILE_RANGE], by[COPYOFFLOAD_METHOD_DEVICE],
			   by[COPYOFFLOAD_METHOD_READ_WRITE],
			   quoted_name(job_.share.share ? job_.share.share->name() : ""));

		// Counted before the reply goes out, so a client that asks for
		// statistics after its reply finds its copy in them.
		if (job_.share.share) {
			job_.share.share->stats().record(result, usec_since(job_.received));
		}
		job_.in_flight.reset();

		if (result.status == ECANCELED && connection.cancelled()) {
			log_.info("copy id={} for {} abandoned after {} bytes: client went away",
				  request.request_id, connection.describe(), result.bytes_done);
			return;
		}
		if (result.status != 0) {
			log_.warning("copy id={} for {} failed after {} of {} bytes: {}{}{}",
				     request.request_id, connection.describe(), result.bytes_done,
				     request.length, describe_errno(result.status),
				     outcome.rejection.empty() ? "" : ": ", outcome.rejection);
		}

		copyoffload_copy_reply reply{};
		reply.request_id = request.request_id;
		reply.status = result.status;
		reply.flags = reply_flags;
		reply.bytes_done = result.bytes_done;
		for (std::size_t m = 0; m < result.bytes_by_method.size(); m++) {
			reply.bytes_by_method[m] = result.bytes_by_method[m];
		}
		if (!connection.cancelled() && !connection.send_copy_reply(reply, true)) {
			log_.warning("copy id={}: could not deliver the reply to {}, dropping the "
				     "connection",
				     request.request_id, connection.describe());
			connection.abort();
		}
	} catch (...) {
		// Only formatting a log line can throw here (allocation). The
		// reply may be lost, so hang up rather than leave the client
		// waiting for it forever.
		job_.connection->abort();
	}
}

void run_copy_job(CopyJob &job, const Logger &log) noexcept
{
	CopyTask task(std::move(job), log);
	try {
		CopyEngine engine;
		while (auto piece = task.take_piece()) {
			if (task.reserving()) {
				task.reserve();
				task.reserved();
			}
			task.piece_done(*piece, task.run(engine, *piece));
		}
	} catch (...) {
		// Making the engine failed (allocation): the pieces not run
		// count as cancelled.
	}
	task.finish();
}

} // namespace copyoffload
