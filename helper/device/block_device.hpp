// What the helper learns about a block device descriptor it was given: the
// kind of device (NVMe namespace, SCSI disk, other), the whole disk it
// belongs to, where a partition starts on it, its size and logical block
// size. Everything comes from the descriptor (fstat, ioctls) and from sysfs
// under /sys/dev/block/MAJ:MIN; no device node is opened by name here.
#pragma once

#include "device_error.hpp"
#include "unique_fd.hpp"

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace copyoffload::device {

enum class DeviceKind { nvme, scsi, other };

std::string_view kind_name(DeviceKind kind);

// What sysfs says about one block device (pure: testable on a fake tree).
struct SysfsBlockInfo {
	DeviceKind kind = DeviceKind::other;
	std::string name;      // "nvme0n1p2", "sda"
	std::string disk_name; // the whole disk: "nvme0n1", "sda"
	std::string disk_dir;           // the whole disk's directory (resolved)
	dev_t disk_rdev = 0;            // the whole disk's device number
	bool partition = false;
	std::uint64_t start_sectors = 0; // partition start, 512-byte sectors
};

// Reads /sys/dev/block/MAJ:MIN (or `dev_dir`, the same directory in a fake
// tree): a partition has a `partition` file and lives in its disk's
// directory; the kind is the subsystem of the disk's `device`: nvme (a
// controller) or nvme-subsystem (a multipath head) for NVMe, scsi for SCSI.
Result<SysfsBlockInfo> read_sysfs_block(const std::string &dev_dir);
std::string sysfs_dev_dir(dev_t rdev);

struct BlockDevice {
	dev_t rdev = 0;
	SysfsBlockInfo sysfs;
	std::uint64_t start = 0; // bytes from the whole disk's start
	std::uint64_t size = 0;  // bytes
	std::uint32_t logical_block_size = 512;

	[[nodiscard]] DeviceKind kind() const { return sysfs.kind; }
	// Whether two devices are the same whole disk (an NVMe namespace, a
	// SCSI logical unit), whatever their partitions.
	[[nodiscard]] bool same_disk(const BlockDevice &other) const
	{
		return sysfs.disk_dir == other.sysfs.disk_dir;
	}
};

// `fd` must be a block device descriptor.
Result<BlockDevice> inspect_block_device(int fd);

// Claims the device behind `fd` exclusively (open(2) of /proc/self/fd/N
// with O_EXCL: the same inode the caller passed, nothing else), as mount,
// device mapper, md and swapon do. Fails with EBUSY while any of those, or
// anyone else's O_EXCL open, holds it, and keeps them out while the claim
// lives. The claim is read-only and used for nothing but holding.
Result<UniqueFd> claim_exclusive(int fd);

// An exclusive claim shared by everything in this process that copies on
// the device at the same time (each further O_EXCL open of the process
// would fail like anyone else's). A claim on a whole disk also keeps every
// partition of it from being claimed, so it serves for them too.
class DeviceClaim {
public:
	explicit DeviceClaim(UniqueFd fd, dev_t rdev) : fd_(std::move(fd)), rdev_(rdev) {}
	[[nodiscard]] dev_t rdev() const { return rdev_; }

private:
	UniqueFd fd_;
	dev_t rdev_;
};

// The live claim on `device` (or on its whole disk), or a new one.
Result<std::shared_ptr<DeviceClaim>> acquire_claim(int fd, const BlockDevice &device);

// The NVMe generic character device (/dev/ngXnY) of the namespace `device`
// is on, opened read-write by the helper: it is the sibling of the disk in
// sysfs (ngXnY next to nvmeXnY), and the node opened must have the rdev
// sysfs gives, so it reaches exactly the namespace the caller passed.
// /dev/ngXnY is tried, then /dev/char/MAJ:MIN.
Result<UniqueFd> open_nvme_generic(const BlockDevice &device, std::string &path_out);

} // namespace copyoffload::device
