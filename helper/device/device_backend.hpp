// The engine's backend for COPYOFFLOAD_METHOD_DEVICE: whole logical blocks
// copied by the device itself, between the two block devices of one
// DeviceSession (the one of the slice's descriptors, or a given one; the
// request that planned device copy opened it). Around each slice it keeps the page cache coherent with
// what the device did behind it:
// - before: dirty pages of the source and destination ranges are written
//   back and waited for, so the device reads current data and no later
//   writeback of an older page lands on top of the copy (a buffered head
//   or tail written by the fallback shares a page with the first or last
//   blocks of the device range);
// - after: the destination range's pages are dropped, so buffered readers
//   (smbd, the fallback's read-modify-write of a partial page) see the
//   copy. Passthrough commands bypass the page cache entirely.
#pragma once

#include "copy_backend.hpp"
#include "device_session.hpp"

#include <memory>
#include <string>

namespace copyoffload::device {

class DeviceBackend final : public CopyBackend {
public:
	// Finds each slice's session by its descriptors (DeviceSession::find).
	DeviceBackend() = default;
	// Always this session.
	explicit DeviceBackend(std::shared_ptr<DeviceSession> session)
		: session_(std::move(session))
	{
	}

	[[nodiscard]] copyoffload_method method() const override
	{
		return COPYOFFLOAD_METHOD_DEVICE;
	}
	// A slice must be block-aligned (EINVAL otherwise) and on the
	// session's descriptors (EBADF). Without a session or a copier (the
	// devices cannot copy by themselves): EXDEV.
	BackendProgress copy_slice(const CopyRange &slice) override;
	// EOPNOTSUPP (no device copy here, or the device refused a command),
	// EINVAL (not block-aligned), EXDEV, ENOTTY, ENOSYS. A refused command
	// left nothing half done that is counted: the bytes of the commands
	// before it are, so the engine may hand the rest to another method.
	[[nodiscard]] bool is_unsupported(int error) const override;
	// EXDEV: these two devices cannot copy by themselves, whatever the
	// range.
	[[nodiscard]] bool refuses_files(int error) const override { return error == EXDEV; }

	// Why the last slice failed, for the log; empty after a success.
	[[nodiscard]] const std::string &last_reason() const { return last_reason_; }

private:
	std::shared_ptr<DeviceSession> session_;
	std::string last_reason_;
};

// Pages [offset, offset + length) touch, rounded out to whole pages.
struct PageRange {
	std::uint64_t offset = 0;
	std::uint64_t length = 0;
};
PageRange page_range(std::uint64_t offset, std::uint64_t length, std::uint64_t page_size);

} // namespace copyoffload::device
