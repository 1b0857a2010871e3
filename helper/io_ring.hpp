// RAII for an io_uring instance (liburing) and the buffers registered with
// it. One per worker thread: the ring is created SINGLE_ISSUER and
// DEFER_TASKRUN where the kernel has them (each ring is only ever used by
// the thread that made it), which saves the kernel's cross-thread
// completion work.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <memory>
#include <span>

namespace copyoffload {

class IoRing {
public:
	// Throws std::system_error when the kernel refuses io_uring
	// (io_uring_disabled, seccomp, old kernel).
	explicit IoRing(unsigned entries);
	~IoRing();
	IoRing(const IoRing &) = delete;
	IoRing &operator=(const IoRing &) = delete;

	io_uring *get() { return &ring_; }

	// A submission entry; submits what is queued first when the queue is
	// full, so this only fails when the kernel refuses to take any.
	io_uring_sqe *sqe();

private:
	io_uring ring_{};
};

// `count` page-aligned buffers of `size` bytes, registered as fixed
// buffers with a ring when the locked-memory limit allows (registration
// pins the pages, saving the kernel a page-table walk per I/O); otherwise
// they serve as ordinary buffers.
class RingBuffers {
public:
	// `size` must be a multiple of the page size.
	RingBuffers(IoRing &ring, std::size_t count, std::size_t size);
	~RingBuffers();
	RingBuffers(const RingBuffers &) = delete;
	RingBuffers &operator=(const RingBuffers &) = delete;

	[[nodiscard]] std::size_t count() const { return count_; }
	[[nodiscard]] std::size_t size() const { return size_; }
	[[nodiscard]] bool registered() const { return registered_; }
	[[nodiscard]] std::byte *buffer(std::size_t index) const
	{
		return memory_.get() + index * size_;
	}

private:
	struct Free {
		void operator()(std::byte *p) const;
	};
	IoRing &ring_;
	std::size_t count_;
	std::size_t size_;
	std::unique_ptr<std::byte, Free> memory_;
	bool registered_ = false;
};

} // namespace copyoffload
