#include "block_device.hpp"

#include "device_privileges.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <system_error>

namespace copyoffload::device {

namespace fs = std::filesystem;

namespace {

DeviceError error_of(int error, std::string what)
{
	return {error, what + ": " + std::strerror(error)};
}

// The first line of a sysfs attribute; nullopt if it cannot be read.
std::optional<std::string> read_attribute(const fs::path &path)
{
	std::ifstream in(path);
	std::string line;
	if (!in || !std::getline(in, line)) {
		return std::nullopt;
	}
	return line;
}

std::optional<std::uint64_t> read_number(const fs::path &path)
{
	auto text = read_attribute(path);
	if (!text || text->empty()) {
		return std::nullopt;
	}
	std::uint64_t value = 0;
	for (char c : *text) {
		if (c < '0' || c > '9' || value > (UINT64_MAX - 9) / 10) {
			return std::nullopt;
		}
		value = value * 10 + static_cast<std::uint64_t>(c - '0');
	}
	return value;
}

DeviceKind kind_of_disk(const fs::path &disk_dir)
{
	std::error_code ec;
	fs::path subsystem = fs::canonical(disk_dir / "device" / "subsystem", ec);
	if (ec) {
		return DeviceKind::other; // loop, ram, device mapper, md, ...
	}
	const std::string name = subsystem.filename().string();
	if (name == "nvme" || name == "nvme-subsystem") {
		return DeviceKind::nvme;
	}
	if (name == "scsi") {
		return DeviceKind::scsi;
	}
	return DeviceKind::other;
}

// "MAJ:MIN" as sysfs writes it.
std::optional<dev_t> parse_dev(const std::string &text)
{
	auto colon = text.find(':');
	if (colon == std::string::npos) {
		return std::nullopt;
	}
	unsigned major_number = 0;
	unsigned minor_number = 0;
	try {
		std::size_t used = 0;
		major_number = static_cast<unsigned>(std::stoul(text.substr(0, colon), &used));
		if (used != colon) {
			return std::nullopt;
		}
		minor_number = static_cast<unsigned>(std::stoul(text.substr(colon + 1), &used));
		if (used != text.size() - colon - 1) {
			return std::nullopt;
		}
	} catch (const std::exception &) {
		return std::nullopt;
	}
	return makedev(major_number, minor_number);
}

} // namespace

std::string_view kind_name(DeviceKind kind)
{
	switch (kind) {
	case DeviceKind::nvme: return "nvme";
	case DeviceKind::scsi: return "scsi";
	case DeviceKind::other: return "other";
	}
	return "other";
}

std::string sysfs_dev_dir(dev_t rdev)
{
	return "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
}

Result<SysfsBlockInfo> read_sysfs_block(const std::string &dev_dir)
{
	std::error_code ec;
	const fs::path dir = fs::canonical(dev_dir, ec);
	if (ec) {
		return DeviceError{ec.value() != 0 ? ec.value() : ENODEV, "no sysfs entry " + dev_dir};
	}
	SysfsBlockInfo info;
	info.name = dir.filename().string();
	info.partition = fs::exists(dir / "partition", ec);
	if (info.partition) {
		auto start = read_number(dir / "start");
		if (!start) {
			return DeviceError{ENODEV, "partition without a start in " + dir.string()};
		}
		info.start_sectors = *start;
		info.disk_dir = dir.parent_path().string();
	} else {
		info.disk_dir = dir.string();
	}
	const fs::path disk_dir = info.disk_dir;
	info.disk_name = disk_dir.filename().string();
	auto disk_dev = read_attribute(disk_dir / "dev");
	auto disk_rdev = disk_dev ? parse_dev(*disk_dev) : std::nullopt;
	if (!disk_rdev) {
		return DeviceError{ENODEV, "no device number for " + info.disk_dir};
	}
	info.disk_rdev = *disk_rdev;
	info.kind = kind_of_disk(disk_dir);
	return info;
}

Result<BlockDevice> inspect_block_device(int fd)
{
	struct stat status{};
	if (::fstat(fd, &status) != 0) {
		return error_of(errno, "fstat");
	}
	if (!S_ISBLK(status.st_mode)) {
		return DeviceError{ENOTBLK, "not a block device"};
	}
	BlockDevice device;
	device.rdev = status.st_rdev;
	auto sysfs = read_sysfs_block(sysfs_dev_dir(status.st_rdev));
	if (!sysfs) {
		return sysfs.error();
	}
	device.sysfs = std::move(sysfs.value());
	device.start = device.sysfs.start_sectors * 512;
	if (::ioctl(fd, BLKGETSIZE64, &device.size) != 0) {
		return error_of(errno, "BLKGETSIZE64");
	}
	int logical = 0;
	if (::ioctl(fd, BLKSSZGET, &logical) != 0) {
		return error_of(errno, "BLKSSZGET");
	}
	if (logical < 512 || (logical & (logical - 1)) != 0) {
		return DeviceError{EINVAL, "logical block size " + std::to_string(logical) +
						   " is not a power of two of at least 512"};
	}
	device.logical_block_size = static_cast<std::uint32_t>(logical);
	return device;
}

Result<UniqueFd> claim_exclusive(int fd)
{
	const std::string path = "/proc/self/fd/" + std::to_string(fd);
	UniqueFd claim;
	int open_error = 0;
	if (!run_with_root_file_ids([&] {
		    claim.reset(::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC | O_NOCTTY));
		    open_error = errno;
	    })) {
		return error_of(errno, "taking file-system uid 0 to claim the device");
	}
	if (!claim) {
		errno = open_error;
		if (errno == EBUSY) {
			return DeviceError{EBUSY, "the device is in use: mounted, part of a "
						  "device-mapper, md or swap device, or opened "
						  "exclusively by another program"};
		}
		return error_of(errno, "exclusive open of the device");
	}
	return claim;
}

Result<std::shared_ptr<DeviceClaim>> acquire_claim(int fd, const BlockDevice &device)
{
	static std::mutex mutex;
	static std::map<dev_t, std::weak_ptr<DeviceClaim>> live;
	std::lock_guard lock(mutex);
	for (dev_t rdev : {device.rdev, device.sysfs.disk_rdev}) {
		auto found = live.find(rdev);
		if (found != live.end()) {
			if (auto claim = found->second.lock()) {
				return claim;
			}
		}
	}
	auto fd_claim = claim_exclusive(fd);
	if (!fd_claim) {
		return fd_claim.error();
	}
	auto claim = std::make_shared<DeviceClaim>(std::move(fd_claim.value()), device.rdev);
	std::erase_if(live, [](const auto &entry) { return entry.second.expired(); });
	live[device.rdev] = claim;
	return claim;
}

Result<UniqueFd> open_nvme_generic(const BlockDevice &device, std::string &path_out)
{
	const std::string &disk = device.sysfs.disk_name;
	if (device.kind() != DeviceKind::nvme || !disk.starts_with("nvme")) {
		return DeviceError{ENODEV, "not an NVMe namespace"};
	}
	const std::string generic = "ng" + disk.substr(4);
	auto dev_text =
		read_attribute(fs::path(device.sysfs.disk_dir).parent_path() / generic / "dev");
	if (!dev_text) {
		return DeviceError{ENODEV, "no generic character device " + generic +
						   " next to " + disk + " in sysfs"};
	}
	auto rdev = parse_dev(*dev_text);
	if (!rdev) {
		return DeviceError{ENODEV, "unreadable dev attribute of " + generic};
	}
	int last_error = ENOENT;
	for (const std::string &candidate :
	     {"/dev/" + generic, "/dev/char/" + std::to_string(major(*rdev)) + ":" +
					 std::to_string(minor(*rdev))}) {
		UniqueFd fd;
		if (!run_with_root_file_ids([&] {
			    fd.reset(::open(candidate.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
			    if (!fd) {
				    last_error = errno;
			    }
		    })) {
			return error_of(errno, "taking file-system uid 0 to open " + generic);
		}
		if (!fd) {
			continue;
		}
		struct stat status{};
		if (::fstat(fd.get(), &status) == 0 && S_ISCHR(status.st_mode) &&
		    status.st_rdev == *rdev) {
			path_out = candidate;
			return fd;
		}
		last_error = ENODEV; // a node of that name, but another device
	}
	return error_of(last_error, "open /dev/" + generic);
}

} // namespace copyoffload::device
