#include "uring_read_write_backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <system_error>
#include <vector>

namespace copyoffload {

struct UringReadWriteBackend::Ring {
	explicit Ring(unsigned queue_depth)
		: ring(queue_depth), buffers(ring, queue_depth, buffer_size)
	{
	}
	IoRing ring;
	RingBuffers buffers;
};

namespace {

// One buffer's share of a slice: read in full, then written in full.
struct Chunk {
	std::uint64_t start = 0;  // within the slice
	std::uint64_t length = 0;
	std::uint64_t read = 0;    // bytes in the buffer
	std::uint64_t written = 0; // of those, written
	std::size_t buffer = 0;
	bool in_flight = false;
	int error = 0;

	[[nodiscard]] bool complete() const { return written == length; }
	[[nodiscard]] bool finished() const { return complete() || error != 0; }
};

// user_data of an operation: its buffer, and whether it is the write.
constexpr std::uint64_t tag(std::size_t buffer, bool write)
{
	return (static_cast<std::uint64_t>(buffer) << 1) | (write ? 1 : 0);
}

class Pipeline {
public:
	Pipeline(IoRing &ring, const RingBuffers &buffers, const CopyRange &slice)
		: ring_(ring), buffers_(buffers), slice_(slice)
	{
		for (std::size_t i = buffers.count(); i > 0; i--) {
			free_.push_back(i - 1);
		}
	}

	BackendProgress run()
	{
		for (;;) {
			while (!failed_ && next_ < slice_.length && !free_.empty()) {
				start_chunk();
			}
			if (in_flight_ == 0) {
				break;
			}
			int rc = io_uring_submit_and_wait(ring_.get(), 1);
			if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
				// The ring itself broke: nothing in flight can be
				// waited for safely, so the process must not go on
				// using these buffers.
				throw std::system_error(-rc, std::generic_category(),
							"io_uring_submit_and_wait");
			}
			reap();
		}
		return result();
	}

private:
	void start_chunk()
	{
		Chunk chunk;
		chunk.start = next_;
		chunk.length = std::min<std::uint64_t>(buffers_.size(), slice_.length - next_);
		chunk.buffer = free_.back();
		free_.pop_back();
		next_ += chunk.length;
		chunks_.push_back(chunk);
		submit(chunks_.back(), false);
	}

	void submit(Chunk &chunk, bool write)
	{
		io_uring_sqe *sqe = ring_.sqe();
		if (sqe == nullptr) {
			chunk.error = EAGAIN;
			failed_ = true;
			return;
		}
		// A write sends what was read and not written yet; a read fills
		// the rest of the chunk.
		const std::uint64_t done = write ? chunk.written : chunk.read;
		const std::uint64_t count = (write ? chunk.read : chunk.length) - done;
		std::byte *at = buffers_.buffer(chunk.buffer) + done;
		const int fd = write ? slice_.destination : slice_.source;
		const std::uint64_t offset =
			(write ? slice_.destination_offset : slice_.source_offset) + chunk.start + done;
		// What io_uring_prep_{read,write}[_fixed] do, without four
		// branches: the fixed forms add the registered buffer's index.
		const bool fixed = buffers_.registered();
		const int op = write ? (fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE)
				     : (fixed ? IORING_OP_READ_FIXED : IORING_OP_READ);
		io_uring_prep_rw(op, sqe, fd, at, static_cast<unsigned>(count), offset);
		if (fixed) {
			sqe->buf_index = static_cast<std::uint16_t>(chunk.buffer);
		}
		io_uring_sqe_set_data64(sqe, tag(chunk.buffer, write));
		chunk.in_flight = true;
		in_flight_++;
	}

	Chunk &chunk_of(std::size_t buffer)
	{
		for (Chunk &chunk : chunks_) {
			if (chunk.buffer == buffer && !chunk.finished()) {
				return chunk;
			}
		}
		throw std::logic_error("io_uring completion for a buffer not in flight");
	}

	void reap()
	{
		io_uring_cqe *cqe = nullptr;
		while (io_uring_peek_cqe(ring_.get(), &cqe) == 0) {
			const std::uint64_t data = io_uring_cqe_get_data64(cqe);
			const int res = cqe->res;
			io_uring_cqe_seen(ring_.get(), cqe);
			Chunk &chunk = chunk_of(static_cast<std::size_t>(data >> 1));
			chunk.in_flight = false;
			in_flight_--;
			completed(chunk, (data & 1) != 0, res);
			if (chunk.finished()) {
				free_.push_back(chunk.buffer);
			}
		}
		// Finished chunks at the front no longer matter but for the
		// result: fold them into the prefix.
		while (!chunks_.empty() && chunks_.front().complete()) {
			prefix_ += chunks_.front().length;
			chunks_.pop_front();
		}
	}

	void completed(Chunk &chunk, bool write, int res)
	{
		if (res == -EINTR || res == -EAGAIN) {
			submit(chunk, write); // try the same operation again
			return;
		}
		if (res < 0) {
			chunk.error = -res;
		} else if (res == 0) {
			// A read of 0 is the source's end inside the range; a write
			// of 0 bytes to a regular file would spin.
			chunk.error = write ? EIO : ENODATA;
		} else if (write) {
			chunk.written += static_cast<std::uint64_t>(res);
		} else {
			chunk.read += static_cast<std::uint64_t>(res);
		}
		if (chunk.error != 0) {
			failed_ = true;
			return;
		}
		if (chunk.written < chunk.read) {
			submit(chunk, true);
		} else if (chunk.read < chunk.length) {
			submit(chunk, false);
		}
	}

	BackendProgress result() const
	{
		BackendProgress progress{prefix_, 0};
		for (const Chunk &chunk : chunks_) {
			progress.bytes += chunk.written;
			if (!chunk.complete()) {
				// Every chunk before it is complete (or it would be
				// the first); it stopped with an error.
				progress.error = chunk.error != 0 ? chunk.error : EIO;
				break;
			}
		}
		return progress;
	}

	IoRing &ring_;
	const RingBuffers &buffers_;
	const CopyRange &slice_;
	std::vector<std::size_t> free_;
	std::deque<Chunk> chunks_; // started, in range order, not folded yet
	std::uint64_t next_ = 0;   // where the next chunk starts
	std::uint64_t prefix_ = 0; // complete bytes before chunks_
	unsigned in_flight_ = 0;
	bool failed_ = false;
};

} // namespace

UringReadWriteBackend::UringReadWriteBackend(unsigned queue_depth)
	: queue_depth_(std::max(queue_depth, 1u))
{
}

UringReadWriteBackend::~UringReadWriteBackend() = default;

std::string UringReadWriteBackend::prepare()
{
	if (!ring_ && !unavailable_) {
		try {
			ring_ = std::make_unique<Ring>(queue_depth_);
		} catch (const std::system_error &e) {
			unavailable_ = e.what();
		}
	}
	if (!ring_) {
		return fmt::format("pread/pwrite (io_uring unavailable: {})", *unavailable_);
	}
	return fmt::format("io_uring, {} x {} KiB {}buffers", queue_depth_, buffer_size >> 10,
			   ring_->buffers.registered() ? "registered " : "unregistered ");
}

BackendProgress UringReadWriteBackend::copy_slice(const CopyRange &slice)
{
	if (slice.length == 0) {
		return {};
	}
	prepare();
	if (!ring_) {
		return fallback_.copy_slice(slice);
	}
	try {
		return Pipeline(ring_->ring, ring_->buffers, slice).run();
	} catch (const std::exception &e) {
		// The ring broke with reads and writes possibly still in flight
		// into its buffers: a later slice must not reuse them, and
		// freeing them could hand that memory to something else while
		// the kernel still fills it. The ring and its buffers are left
		// allocated for good (a one-off leak), and this worker copies
		// with pread/pwrite from now on.
		unavailable_ = fmt::format("its ring failed: {}", e.what());
		[[maybe_unused]] Ring *abandoned = ring_.release();
		throw;
	}
}

} // namespace copyoffload
