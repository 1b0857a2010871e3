#include "io_ring.hpp"

#include <sys/uio.h>

#include <cstdlib>
#include <new>
#include <system_error>
#include <vector>

namespace copyoffload {

IoRing::IoRing(unsigned entries)
{
	int rc = io_uring_queue_init(entries, &ring_,
				     IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (rc == -EINVAL) {
		// Kernels before 6.1 know neither flag.
		rc = io_uring_queue_init(entries, &ring_, 0);
	}
	if (rc < 0) {
		throw std::system_error(-rc, std::generic_category(), "io_uring_queue_init");
	}
}

IoRing::~IoRing()
{
	io_uring_queue_exit(&ring_);
}

io_uring_sqe *IoRing::sqe()
{
	io_uring_sqe *entry = io_uring_get_sqe(&ring_);
	if (entry == nullptr && io_uring_submit(&ring_) >= 0) {
		entry = io_uring_get_sqe(&ring_);
	}
	return entry;
}

void RingBuffers::Free::operator()(std::byte *p) const
{
	std::free(p);
}

RingBuffers::RingBuffers(IoRing &ring, std::size_t count, std::size_t size)
	: ring_(ring), count_(count), size_(size),
	  memory_(static_cast<std::byte *>(std::aligned_alloc(4096, count * size)))
{
	if (!memory_) {
		throw std::bad_alloc();
	}
	std::vector<iovec> vectors(count);
	for (std::size_t i = 0; i < count; i++) {
		vectors[i] = {buffer(i), size};
	}
	// Fails with ENOMEM beyond RLIMIT_MEMLOCK (the daemon has no
	// CAP_IPC_LOCK): the buffers then work unregistered.
	registered_ = io_uring_register_buffers(ring.get(), vectors.data(),
						static_cast<unsigned>(count)) == 0;
}

RingBuffers::~RingBuffers()
{
	// Before the memory goes back to the allocator: the kernel holds the
	// pages until they are unregistered.
	if (registered_) {
		io_uring_unregister_buffers(ring_.get());
	}
}

} // namespace copyoffload
