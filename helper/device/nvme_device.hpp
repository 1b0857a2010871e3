// NVMe passthrough for one namespace: Identify (admin), and Copy commands
// submitted through io_uring (IORING_OP_URING_CMD, NVME_URING_CMD_IO) on
// the namespace's generic character device, several in flight at once, or,
// where that is not available, one at a time with NVME_IOCTL_IO64_CMD on
// the block device itself.
#pragma once

#include "block_device.hpp"
#include "device_error.hpp"
#include "nvme_copy_plan.hpp"
#include "unique_fd.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace copyoffload::device {

// How many Copy commands run at once through io_uring.
inline constexpr unsigned nvme_queue_depth = 16;

enum class NvmeTransport {
	automatic,  // io_uring on the generic device if it works, else ioctl
	ioctl_only, // NVME_IOCTL_IO64_CMD on the block device
};

class NvmeNamespace {
public:
	// Identifies the namespace behind `block_fd` (a descriptor of `device`,
	// an NVMe namespace or one of its partitions), and sets up the
	// transport. Fails only when Identify fails; a namespace that cannot
	// copy opens fine and says why in support().reason.
	static Result<std::unique_ptr<NvmeNamespace>> open(const BlockDevice &device,
							   int block_fd,
							   NvmeTransport transport);
	~NvmeNamespace();
	NvmeNamespace(const NvmeNamespace &) = delete;
	NvmeNamespace &operator=(const NvmeNamespace &) = delete;

	[[nodiscard]] std::uint32_t nsid() const { return nsid_; }
	[[nodiscard]] const NvmeControllerInfo &controller() const { return controller_; }
	[[nodiscard]] const NvmeNamespaceInfo &info() const { return namespace_; }
	[[nodiscard]] const NvmeCopySupport &support() const { return support_; }
	// "io_uring URING_CMD on /dev/ng0n1", or the ioctl and why not io_uring.
	[[nodiscard]] std::string transport() const;
	[[nodiscard]] bool uses_io_uring() const { return ring_ != nullptr && !ring_failed_; }

	// Runs the commands, stopping at the first failure; with io_uring
	// several run at once, and every command submitted has completed when
	// this returns. Any thread; calls take turns (one ring). A command the kernel refuses before the controller
	// sees it (no permission, no passthrough) counts as EOPNOTSUPP.
	CommandsOutcome run(std::span<const NvmeCopyCommand> commands);

private:
	struct Ring;
	NvmeNamespace() = default;
	CommandsOutcome run_ioctl(std::span<const NvmeCopyCommand> commands);
	CommandsOutcome run_uring(std::span<const NvmeCopyCommand> commands);

	int block_fd_ = -1;
	std::uint32_t nsid_ = 0;
	NvmeControllerInfo controller_;
	NvmeNamespaceInfo namespace_;
	NvmeCopySupport support_;
	UniqueFd generic_fd_;
	std::string generic_path_;
	std::string no_uring_reason_;
	std::unique_ptr<Ring> ring_;
	bool ring_failed_ = false;
	std::mutex run_mutex_;
	// Range entries of commands a failed ring may still hold.
	std::vector<std::vector<std::uint8_t>> orphaned_entries_;
};

} // namespace copyoffload::device
