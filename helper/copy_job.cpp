#include "copy_job.hpp"

#include "connection.hpp"
#include "copy_service.hpp"

#include <cerrno>
#include <chrono>
#include <exception>
#include <new>
#include <string>
#include <string_view>

namespace copyoffload {

namespace {

CopySettings settings_for(const CopyJob &job)
{
	CopySettings settings;
	const ShareBinding &binding = job.share;
	if (!binding.order.empty()) {
		settings.order = binding.order;
	}
	settings.slices = slices_for_segment(binding.max_segment);
	if (binding.share) {
		settings.hooks.pace = [share = binding.share](std::uint64_t bytes,
							      const std::stop_token &stop) {
			return share->rate_limiter().acquire(bytes, stop);
		};
	}
	return settings;
}

CopyOutcome execute_safely(const CopyJob &job, const Logger &log)
{
	try {
		return execute_copy(job.request, job.source.get(),
				    job.destination.get(),
				    job.connection->stop_token(), settings_for(job));
	} catch (const std::bad_alloc &) {
		return {CopyResult::failed(ENOMEM), "out of memory"};
	} catch (const std::exception &e) {
		log.error("copy id={}: internal error: {}", job.request.request_id, e.what());
		return {CopyResult::failed(EIO), "internal error"};
	}
}

std::uint64_t usec_since(std::chrono::steady_clock::time_point since)
{
	return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
						  std::chrono::steady_clock::now() - since)
						  .count());
}

// For the log line: the name in double quotes, any quote or backslash in it
// escaped (share names have no control characters).
std::string quoted(std::string_view name)
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

void run_copy_job(CopyJob &job, const Logger &log) noexcept
{
	try {
		const copyoffload_copy_request &request = job.request;
		Connection &connection = *job.connection;

		auto started = std::chrono::steady_clock::now();
		CopyOutcome outcome = execute_safely(job, log);
		const CopyResult &result = outcome.result;
		auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
			std::chrono::steady_clock::now() - started);

		// The client may reuse the file as soon as it has the reply, so
		// the daemon lets go of it first.
		job.source.reset();
		job.destination.reset();

		auto method = result.dominant_method();
		// The integration tests parse this line: keep its format stable,
		// and add new fields only at its end.
		const auto &by = result.bytes_by_method;
		log.debug("copy done id={} peer_pid={} src_off={} dst_off={} length={} "
			  "bytes={} method={} status={} usec={} "
			  "clone={} copy_file_range={} device={} read_write={} share={}",
			  request.request_id, connection.peer().pid, request.src_offset,
			  request.dst_offset, request.length, result.bytes_done,
			  method ? copyoffload_method_name(*method) : "none",
			  errno_name(result.status), elapsed.count(),
			  by[COPYOFFLOAD_METHOD_CLONE], by[COPYOFFLOAD_METHOD_COPY_FILE_RANGE],
			  by[COPYOFFLOAD_METHOD_DEVICE], by[COPYOFFLOAD_METHOD_READ_WRITE],
			  quoted(job.share.share ? job.share.share->name() : ""));

		// Counted before the reply goes out, so a client that asks for
		// statistics after its reply finds its copy in them.
		if (job.share.share) {
			job.share.share->stats().record(result, usec_since(job.received));
		}
		job.in_flight.reset();

		if (result.status == ECANCELED && connection.cancelled()) {
			log.info("copy id={} for {} abandoned after {} bytes: client went away",
				 request.request_id, connection.describe(), result.bytes_done);
			return;
		}
		if (result.status != 0) {
			log.warning("copy id={} for {} failed after {} of {} bytes: {}{}{}",
				    request.request_id, connection.describe(),
				    result.bytes_done, request.length,
				    describe_errno(result.status),
				    outcome.rejection.empty() ? "" : ": ", outcome.rejection);
		}

		copyoffload_copy_reply reply{};
		reply.request_id = request.request_id;
		reply.status = result.status;
		reply.bytes_done = result.bytes_done;
		for (std::size_t m = 0; m < result.bytes_by_method.size(); m++) {
			reply.bytes_by_method[m] = result.bytes_by_method[m];
		}
		if (!connection.cancelled() && !connection.send_copy_reply(reply, true)) {
			log.warning("copy id={}: could not deliver the reply to {}, dropping the connection",
				    request.request_id, connection.describe());
			connection.abort();
		}
	} catch (...) {
		// Only formatting a log line can throw here (allocation). The
		// reply may be lost, so hang up rather than leave the client
		// waiting for it forever.
		job.connection->abort();
	}
}

} // namespace copyoffload
