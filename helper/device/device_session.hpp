// Device copy for one COPY request whose descriptors are both block
// devices: the pair check, the exclusive claims held for the whole request,
// and the copier that issues NVMe Copy or SCSI EXTENDED COPY commands for
// the block-aligned part of the range.
#pragma once

#include "block_device.hpp"
#include "device_error.hpp"
#include "nvme_device.hpp"
#include "unique_fd.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace copyoffload::device {

// Whether copyoffloadd takes block devices at all (--device-copy); until
// enabled, every block device descriptor is refused like any other
// non-regular file. Set once at start.
void enable_device_copy(bool enabled);
bool device_copy_enabled();

// Why a pair of block device descriptors may not be copied at all (checked
// with the other descriptor checks, before any I/O).
struct PairRejection {
	int status;
	std::string_view reason;
};

// Where two block devices lie, for the overlap check of each request.
struct BlockPairLayout {
	bool same_disk = false;
	std::uint64_t source_start = 0; // bytes into the disk (a partition's start)
	std::uint64_t destination_start = 0;
	std::uint32_t block_size = 512; // the larger logical block size
};

// Both descriptors are block devices: device copy must be enabled and they
// must be of the same kind (NVMe, SCSI or other). EBADF otherwise.
std::variant<BlockPairLayout, PairRejection> check_block_device_pair(int source,
								     int destination);

// Whether the two ranges share a byte of one disk (partitions of one disk
// included).
bool block_ranges_overlap(const BlockPairLayout &layout, std::uint64_t source_offset,
			  std::uint64_t destination_offset, std::uint64_t length);

// Issues device copy commands for whole blocks of one source/destination
// pair. Offsets are those of the descriptors (within a partition).
class DeviceCopier {
public:
	virtual ~DeviceCopier() = default;

	// Copies `length` bytes; all three values are multiples of the
	// session's block size and the ranges lie within the devices. Returns
	// the bytes done contiguously from the start and the error that
	// stopped it (EOPNOTSUPP: the device refused the command as such).
	virtual std::pair<std::uint64_t, int> copy(std::uint64_t source_offset,
						   std::uint64_t destination_offset,
						   std::uint64_t length, std::string &reason) = 0;
	[[nodiscard]] virtual std::string describe() const = 0;
};

struct SessionOptions {
	NvmeTransport nvme_transport = NvmeTransport::automatic;
};

class DeviceSession : public std::enable_shared_from_this<DeviceSession> {
public:
	// Inspects and claims both devices (EBUSY while either is mounted or
	// held), checks the range against their sizes (ENODATA past the
	// source's end, ENOSPC past the destination's), and picks a copier.
	// A pair the devices cannot copy by themselves (other kinds, two NVMe
	// namespaces, no Copy support, ...) still opens: copier() is then
	// null and unavailable_reason() says why.
	// The session is findable by its two descriptors (find()) while it
	// lives.
	static Result<std::shared_ptr<DeviceSession>> open(int source, int destination,
							   std::uint64_t source_offset,
							   std::uint64_t destination_offset,
							   std::uint64_t length,
							   const SessionOptions &options = {});
	~DeviceSession();
	DeviceSession(const DeviceSession &) = delete;
	DeviceSession &operator=(const DeviceSession &) = delete;

	// The live session of these two descriptors, if any (any thread). The
	// engine's device backend finds a request's session this way: the
	// descriptors are open, hence unique, as long as the session lives.
	// A session whose descriptors were closed and reused for other
	// devices is not found (the devices are compared too).
	static std::shared_ptr<DeviceSession> find(int source, int destination);

	[[nodiscard]] const BlockDevice &source() const { return source_; }
	[[nodiscard]] const BlockDevice &destination() const { return destination_; }
	[[nodiscard]] int source_fd() const { return source_fd_; }
	[[nodiscard]] int destination_fd() const { return destination_fd_; }
	// The alignment device copies need: the larger logical block size.
	[[nodiscard]] std::uint32_t block_size() const;
	[[nodiscard]] DeviceCopier *copier() const { return copier_.get(); }
	[[nodiscard]] const std::string &unavailable_reason() const { return unavailable_; }

private:
	DeviceSession() = default;
	// Whether these descriptors still name the session's two devices.
	[[nodiscard]] bool still_on(int source, int destination) const;

	bool registered_ = false;

	int source_fd_ = -1;
	int destination_fd_ = -1;
	BlockDevice source_;
	BlockDevice destination_;
	// The same claim when both are one device, or one is the whole disk of
	// the other (which that claim covers).
	std::shared_ptr<DeviceClaim> source_claim_;
	std::shared_ptr<DeviceClaim> destination_claim_;
	std::unique_ptr<DeviceCopier> copier_;
	std::string unavailable_;
};

// The copier for a pair, or why there is none (the reason). Used by the
// session and by `copyoffload probe`.
std::unique_ptr<DeviceCopier> make_copier(const BlockDevice &source, int source_fd,
					  const BlockDevice &destination, int destination_fd,
					  const SessionOptions &options, std::string &reason);

} // namespace copyoffload::device
