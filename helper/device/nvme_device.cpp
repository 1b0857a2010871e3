#include "nvme_device.hpp"

#include "device_privileges.hpp"

#include <liburing.h>
#include <linux/nvme_ioctl.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace copyoffload::device {

namespace {

// A refusal by the kernel rather than the controller: no permission for
// passthrough here, no passthrough on this file, a command it rejects.
bool kernel_refusal(int error)
{
	return error == EACCES || error == EPERM || error == ENOTTY || error == EOPNOTSUPP ||
	       error == EINVAL;
}

std::string kernel_text(int error)
{
	std::string text = std::strerror(error);
	if (error == EACCES || error == EPERM) {
		text += " (NVMe passthrough needs CAP_SYS_ADMIN here: copyoffloadd --device-copy)";
	}
	return text;
}

// Outcome of one command from its return value: < 0 a kernel errno, > 0 an
// NVMe status.
int command_errno(int result, std::string &reason)
{
	if (result < 0) {
		reason = "kernel: " + kernel_text(-result);
		return kernel_refusal(-result) ? EOPNOTSUPP : -result;
	}
	if (result > 0) {
		reason = nvme_status_text(result);
		return nvme_status_errno(result);
	}
	return 0;
}

int identify(int fd, std::uint32_t nsid, std::uint32_t cns,
	     std::array<std::uint8_t, nvme_identify_size> &data)
{
	nvme_admin_cmd command{};
	command.opcode = nvme_admin_identify;
	command.nsid = nsid;
	command.addr = reinterpret_cast<std::uintptr_t>(data.data());
	command.data_len = static_cast<std::uint32_t>(data.size());
	command.cdw10 = cns;
	ScopedCapability admin(CAP_SYS_ADMIN);
	int rc;
	do {
		rc = ::ioctl(fd, NVME_IOCTL_ADMIN_CMD, &command);
	} while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : rc;
}

// The Copy command in either passthrough structure (nvme_passthru_cmd64
// for the ioctl, nvme_uring_cmd for io_uring: the same field names).
template <typename Passthrough>
void fill_copy(Passthrough &out, const NvmeCopyCommand &command, std::uint32_t nsid,
	       const std::vector<std::uint8_t> &entries)
{
	out.opcode = nvme_opcode_copy;
	out.nsid = nsid;
	out.addr = reinterpret_cast<std::uintptr_t>(entries.data());
	out.data_len = static_cast<std::uint32_t>(entries.size());
	out.cdw10 = command.cdw10();
	out.cdw11 = command.cdw11();
	out.cdw12 = command.cdw12();
}

} // namespace

// The io_uring instance of one namespace: 128-byte SQEs and 32-byte CQEs,
// as NVMe passthrough needs, and, when the daemon may use CAP_SYS_ADMIN, a
// registered personality carrying it, so the capability applies to these
// commands wherever the kernel issues them (inline or from io-wq) and to
// nothing else.
struct NvmeNamespace::Ring {
	io_uring ring{};
	int personality = -1;

	~Ring() { io_uring_queue_exit(&ring); }
};

Result<std::unique_ptr<NvmeNamespace>> NvmeNamespace::open(const BlockDevice &device,
							  int block_fd,
							  NvmeTransport transport)
{
	std::unique_ptr<NvmeNamespace> ns(new NvmeNamespace());
	ns->block_fd_ = block_fd;
	const int id = ::ioctl(block_fd, NVME_IOCTL_ID);
	if (id <= 0) {
		return DeviceError{id < 0 ? errno : ENODEV, "NVME_IOCTL_ID: not an NVMe namespace"};
	}
	ns->nsid_ = static_cast<std::uint32_t>(id);

	std::array<std::uint8_t, nvme_identify_size> data{};
	std::string reason;
	if (int rc = identify(block_fd, 0, nvme_cns_controller, data); rc != 0) {
		command_errno(rc, reason);
		return DeviceError{rc < 0 ? -rc : EIO, "Identify Controller failed: " + reason};
	}
	ns->controller_ = parse_identify_controller(data);
	data.fill(0);
	if (int rc = identify(block_fd, ns->nsid_, nvme_cns_namespace, data); rc != 0) {
		command_errno(rc, reason);
		return DeviceError{rc < 0 ? -rc : EIO, "Identify Namespace failed: " + reason};
	}
	auto info = parse_identify_namespace(data);
	if (!info) {
		return DeviceError{EIO, "Identify Namespace returned an unusable LBA format"};
	}
	ns->namespace_ = *info;
	ns->support_ = nvme_copy_support(ns->controller_, ns->namespace_);
	if (ns->support_.limits && ns->namespace_.lba_size != device.logical_block_size) {
		ns->support_ = {std::nullopt, "the namespace's LBA size and the block device's "
					      "logical block size differ"};
	}
	if (!ns->support_.limits) {
		return ns;
	}

	if (transport == NvmeTransport::ioctl_only) {
		ns->no_uring_reason_ = "io_uring not requested";
		return ns;
	}
	auto generic = open_nvme_generic(device, ns->generic_path_);
	if (!generic) {
		ns->no_uring_reason_ = generic.error().reason;
		return ns;
	}
	ns->generic_fd_ = std::move(generic.value());
	auto ring = std::make_unique<Ring>();
	if (int rc = io_uring_queue_init(nvme_queue_depth, &ring->ring,
					 IORING_SETUP_SQE128 | IORING_SETUP_CQE32);
	    rc < 0) {
		ns->no_uring_reason_ = std::string("io_uring with 128-byte entries: ") +
				       std::strerror(-rc);
		return ns;
	}
	if (capability_permitted(CAP_SYS_ADMIN)) {
		ScopedCapability admin(CAP_SYS_ADMIN);
		const int personality = io_uring_register_personality(&ring->ring);
		if (personality < 0) {
			ns->no_uring_reason_ = std::string("io_uring personality: ") +
					       std::strerror(-personality);
			return ns;
		}
		ring->personality = personality;
	}
	ns->ring_ = std::move(ring);
	return ns;
}

NvmeNamespace::~NvmeNamespace() = default;

std::string NvmeNamespace::transport() const
{
	if (uses_io_uring()) {
		return "io_uring URING_CMD on " + generic_path_;
	}
	return "NVME_IOCTL_IO64_CMD on the block device" +
	       (no_uring_reason_.empty() ? std::string()
					 : " (no io_uring: " + no_uring_reason_ + ")");
}

CommandsOutcome NvmeNamespace::run(std::span<const NvmeCopyCommand> commands)
{
	std::lock_guard lock(run_mutex_);
	if (!uses_io_uring()) {
		return run_ioctl(commands);
	}
	CommandsOutcome outcome = run_uring(commands);
	// A kernel without NVMe io_uring passthrough refuses the very first
	// command; from then on this namespace uses the ioctl.
	if (outcome.completed == 0 && outcome.error == EOPNOTSUPP &&
	    outcome.reason.starts_with("kernel:")) {
		no_uring_reason_ = "URING_CMD refused, " + outcome.reason;
		ring_.reset();
		generic_fd_.reset();
		return run_ioctl(commands);
	}
	return outcome;
}

CommandsOutcome NvmeNamespace::run_ioctl(std::span<const NvmeCopyCommand> commands)
{
	CommandsOutcome outcome;
	for (const NvmeCopyCommand &command : commands) {
		const std::vector<std::uint8_t> entries = command.range_entries();
		nvme_passthru_cmd64 passthru{};
		fill_copy(passthru, command, nsid_, entries);
		int rc;
		{
			ScopedCapability admin(CAP_SYS_ADMIN);
			do {
				rc = ::ioctl(block_fd_, NVME_IOCTL_IO64_CMD, &passthru);
			} while (rc < 0 && errno == EINTR);
			if (rc < 0) {
				rc = -errno;
			}
		}
		outcome.error = command_errno(rc, outcome.reason);
		if (outcome.error != 0) {
			return outcome;
		}
		outcome.completed++;
	}
	return outcome;
}

CommandsOutcome NvmeNamespace::run_uring(std::span<const NvmeCopyCommand> commands)
{
	io_uring &ring = ring_->ring;
	const std::size_t count = commands.size();
	// Each command's range entries stay put until it completes.
	std::vector<std::vector<std::uint8_t>> entries(count);
	std::vector<int> results(count, 0);
	std::vector<bool> finished(count, false);
	std::size_t prepared = 0;  // SQEs filled
	std::size_t submitted = 0; // of those, handed to the kernel
	std::size_t reaped = 0;
	bool stop_submitting = false;
	int ring_error = 0;
	unsigned busy_retries = 0;

	while ((prepared < count && !stop_submitting) || reaped < submitted) {
		while (prepared < count && !stop_submitting &&
		       prepared - reaped < nvme_queue_depth) {
			io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (sqe == nullptr) {
				break;
			}
			entries[prepared] = commands[prepared].range_entries();
			std::memset(sqe, 0, 2 * sizeof(*sqe)); // a 128-byte entry
			sqe->opcode = IORING_OP_URING_CMD;
			sqe->fd = generic_fd_.get();
			sqe->cmd_op = NVME_URING_CMD_IO;
			sqe->user_data = prepared;
			if (ring_->personality >= 0) {
				sqe->personality = static_cast<std::uint16_t>(ring_->personality);
			}
			auto *cmd = reinterpret_cast<nvme_uring_cmd *>(sqe->cmd);
			fill_copy(*cmd, commands[prepared], nsid_, entries[prepared]);
			prepared++;
		}
		// Submits what is prepared and waits for one completion.
		const int rc = io_uring_submit_and_wait(&ring, 1);
		if (rc > 0) {
			submitted += static_cast<std::size_t>(rc);
		} else if (rc == -EAGAIN || rc == -EBUSY || rc == -EINTR) {
			// The kernel is short of resources, or the completion
			// queue is full: reap below, then try again.
			if (reaped == submitted && ++busy_retries > 1000) {
				ring_error = -rc;
				break;
			}
		} else if (rc < 0) {
			ring_error = -rc;
			break;
		}
		io_uring_cqe *cqe = nullptr;
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			const auto index = static_cast<std::size_t>(cqe->user_data);
			if (index < count && !finished[index]) {
				results[index] = cqe->res;
				finished[index] = true;
				reaped++;
				if (cqe->res != 0) {
					stop_submitting = true; // let what runs finish
				}
			}
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	if (reaped < submitted || submitted < prepared) {
		// The ring failed with commands in the kernel, or commands
		// prepared are still waiting in its submission queue (the
		// kernel took part of a batch, then one failed): they may yet
		// read their entries, which therefore outlive this call, and
		// the ring is not used again, lest its next submission send
		// them.
		for (auto &entry : entries) {
			orphaned_entries_.push_back(std::move(entry));
		}
		no_uring_reason_ = ring_error != 0
					   ? std::string("io_uring failed: ") + std::strerror(ring_error)
					   : std::string("io_uring left commands unsubmitted");
		ring_failed_ = true;
	}

	CommandsOutcome outcome;
	for (std::size_t i = 0; i < count && finished[i]; i++) {
		outcome.error = command_errno(results[i], outcome.reason);
		if (outcome.error != 0) {
			return outcome;
		}
		outcome.completed++;
	}
	if (outcome.completed == count) {
		return outcome;
	}
	// The first command that did not complete was never run, or is still
	// in a failed ring: report the failure that stopped the rest.
	for (std::size_t i = outcome.completed; i < count; i++) {
		if (finished[i] && results[i] != 0) {
			outcome.error = command_errno(results[i], outcome.reason);
			return outcome;
		}
	}
	outcome.error = ring_error != 0 ? ring_error : EIO;
	outcome.reason = std::string("io_uring: ") + std::strerror(outcome.error);
	return outcome;
}

} // namespace copyoffload::device
