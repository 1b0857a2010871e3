// The read/write method on io_uring: a slice is read into the worker's
// registered buffers and written from them, with up to `queue_depth`
// buffers in flight at once, so reads of later buffers overlap writes of
// earlier ones and the device sees a queue instead of one request at a
// time. Each buffer goes through read, then write, sequentially; short
// reads and writes continue where they stopped. The bytes reported are
// the contiguous prefix: a failure in one buffer counts the buffers
// before it in full and its own bytes written, never a later buffer's.
//
// The ring and its buffers are made on first use (most copies never
// fall back this far) or by prepare(); where the kernel refuses io_uring
// the method uses pread/pwrite instead.
#pragma once

#include "copy_backend.hpp"
#include "io_ring.hpp"
#include "read_write_backend.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace copyoffload {

class UringReadWriteBackend final : public CopyBackend {
public:
	// Bytes per buffer: measured on ext4, 256 KiB buffers moved as much
	// as larger ones and more than 128 KiB ones.
	static constexpr std::size_t buffer_size = std::size_t{256} << 10;
	static constexpr unsigned default_queue_depth = 8;

	explicit UringReadWriteBackend(unsigned queue_depth = default_queue_depth);
	~UringReadWriteBackend() override;

	[[nodiscard]] copyoffload_method method() const override
	{
		return COPYOFFLOAD_METHOD_READ_WRITE;
	}
	BackendProgress copy_slice(const CopyRange &slice) override;
	[[nodiscard]] bool is_unsupported(int) const override { return false; }

	// Makes the ring now; says what the method will use ("io_uring, 8 x
	// 256 KiB registered buffers", or why pread/pwrite).
	std::string prepare();

private:
	struct Ring;

	unsigned queue_depth_;
	std::unique_ptr<Ring> ring_;
	std::optional<std::string> unavailable_; // why io_uring is not used
	ReadWriteBackend fallback_;
};

} // namespace copyoffload
