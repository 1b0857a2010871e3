#include "device_session.hpp"

#include "scsi_device.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <vector>

namespace copyoffload::device {

namespace {

std::atomic<bool> device_copy_on{false};

// The live sessions by their descriptors.
struct Sessions {
	std::mutex mutex;
	// Several requests may copy between the same two descriptors at once.
	std::map<std::pair<int, int>, std::vector<std::weak_ptr<DeviceSession>>> by_descriptors;
};

Sessions &sessions()
{
	static Sessions instance;
	return instance;
}

std::string block_text(std::uint32_t size)
{
	return std::to_string(size) + "-byte blocks";
}

// What a run of commands copied: the bytes of those that completed (in
// order from the first), and the error that stopped it.
template <typename Command>
std::pair<std::uint64_t, int> commands_done(const std::vector<Command> &commands,
					    CommandsOutcome outcome, std::uint64_t block,
					    std::string &reason)
{
	std::uint64_t blocks = 0;
	for (std::size_t i = 0; i < outcome.completed; i++) {
		blocks += commands[i].blocks;
	}
	reason = std::move(outcome.reason);
	return {blocks * block, outcome.error};
}

class NvmeCopier final : public DeviceCopier {
public:
	NvmeCopier(std::unique_ptr<NvmeNamespace> ns, const BlockDevice &source,
		   const BlockDevice &destination)
		: ns_(std::move(ns)), lba_(ns_->info().lba_size), source_start_(source.start),
		  destination_start_(destination.start), name_(destination.sysfs.disk_name)
	{
	}

	std::pair<std::uint64_t, int> copy(std::uint64_t source_offset,
					   std::uint64_t destination_offset, std::uint64_t length,
					   std::string &reason) override
	{
		const auto commands = plan_nvme_copy((source_start_ + source_offset) / lba_,
						     (destination_start_ + destination_offset) / lba_,
						     length / lba_, *ns_->support().limits);
		return commands_done(commands, ns_->run(commands), lba_, reason);
	}

	[[nodiscard]] std::string describe() const override
	{
		const NvmeCopyLimits &limits = *ns_->support().limits;
		return "NVMe Copy on " + name_ + " (nsid " + std::to_string(ns_->nsid()) +
		       ") through " + ns_->transport() + "; per command at most " +
		       std::to_string(limits.ranges) + " ranges of " +
		       std::to_string(limits.range_blocks) + " and " +
		       std::to_string(limits.command_blocks) + " blocks in all, " +
		       block_text(lba_);
	}

private:
	std::unique_ptr<NvmeNamespace> ns_;
	std::uint64_t lba_;
	std::uint64_t source_start_;
	std::uint64_t destination_start_;
	std::string name_;
};

class ScsiCopier final : public DeviceCopier {
public:
	ScsiCopier(int destination_fd, ScsiDesignator source_id, ScsiDesignator destination_id,
		   XcopyLimits limits, const BlockDevice &source, const BlockDevice &destination)
		: unit_(destination_fd), source_id_(std::move(source_id)),
		  destination_id_(std::move(destination_id)), limits_(limits),
		  block_(destination.logical_block_size), source_start_(source.start),
		  destination_start_(destination.start), source_name_(source.sysfs.disk_name),
		  destination_name_(destination.sysfs.disk_name)
	{
	}

	std::pair<std::uint64_t, int> copy(std::uint64_t source_offset,
					   std::uint64_t destination_offset, std::uint64_t length,
					   std::string &reason) override
	{
		const auto commands = plan_xcopy((source_start_ + source_offset) / block_,
						 (destination_start_ + destination_offset) / block_,
						 length / block_, limits_);
		return commands_done(
			commands, unit_.extended_copy(source_id_, destination_id_, block_, commands),
			block_, reason);
	}

	[[nodiscard]] std::string describe() const override
	{
		return "SCSI EXTENDED COPY (LID1) from " + source_name_ + " (NAA " +
		       source_id_.hex() + ") to " + destination_name_ + " (NAA " +
		       destination_id_.hex() + ") through SG_IO; per command at most " +
		       std::to_string(limits_.segments) + " segments of " +
		       std::to_string(limits_.segment_blocks) + " blocks, " + block_text(block_);
	}

private:
	ScsiLogicalUnit unit_;
	ScsiDesignator source_id_;
	ScsiDesignator destination_id_;
	XcopyLimits limits_;
	std::uint64_t block_;
	std::uint64_t source_start_;
	std::uint64_t destination_start_;
	std::string source_name_;
	std::string destination_name_;
};

std::unique_ptr<DeviceCopier> make_nvme_copier(const BlockDevice &source,
					       const BlockDevice &destination, int destination_fd,
					       const SessionOptions &options, std::string &reason)
{
	if (!source.same_disk(destination)) {
		reason = "NVMe Copy (descriptor format 0) copies within one namespace; " +
			 source.sysfs.disk_name + " and " + destination.sysfs.disk_name +
			 " are two";
		return nullptr;
	}
	auto ns = NvmeNamespace::open(destination, destination_fd, options.nvme_transport);
	if (!ns) {
		reason = ns.error().reason;
		return nullptr;
	}
	if (!ns.value()->support().limits) {
		reason = ns.value()->support().reason;
		return nullptr;
	}
	const std::uint32_t lba = ns.value()->info().lba_size;
	if (source.start % lba != 0 || destination.start % lba != 0) {
		reason = "a partition does not start on a logical block boundary";
		return nullptr;
	}
	return std::make_unique<NvmeCopier>(std::move(ns.value()), source, destination);
}

std::unique_ptr<DeviceCopier> make_scsi_copier(const BlockDevice &source, int source_fd,
					       const BlockDevice &destination, int destination_fd,
					       std::string &reason)
{
	if (source.logical_block_size != destination.logical_block_size) {
		reason = "EXTENDED COPY between different logical block sizes is not used";
		return nullptr;
	}
	const std::uint32_t block = destination.logical_block_size;
	if (source.start % block != 0 || destination.start % block != 0) {
		reason = "a partition does not start on a logical block boundary";
		return nullptr;
	}
	ScsiLogicalUnit source_unit(source_fd);
	ScsiLogicalUnit destination_unit(destination_fd);
	auto source_id = source_unit.designator();
	if (!source_id) {
		reason = source.sysfs.disk_name + ": " + source_id.error().reason;
		return nullptr;
	}
	auto destination_id = destination_unit.designator();
	if (!destination_id) {
		reason = destination.sysfs.disk_name + ": " + destination_id.error().reason;
		return nullptr;
	}
	auto parameters = destination_unit.operating_parameters();
	if (!parameters) {
		reason = destination.sysfs.disk_name + ": " + parameters.error().reason;
		return nullptr;
	}
	XcopySupport support = xcopy_support(parameters.value(), block,
					     source_id.value() == destination_id.value());
	if (!support.limits) {
		reason = destination.sysfs.disk_name + ": " + support.reason;
		return nullptr;
	}
	return std::make_unique<ScsiCopier>(destination_fd, source_id.value(),
					    destination_id.value(), *support.limits, source,
					    destination);
}

} // namespace

void enable_device_copy(bool enabled)
{
	device_copy_on.store(enabled);
}

bool device_copy_enabled()
{
	return device_copy_on.load();
}

std::variant<BlockPairLayout, PairRejection> check_block_device_pair(int source,
								     int destination)
{
	if (!device_copy_enabled()) {
		return PairRejection{EBADF, "block devices are copied only by copyoffloadd "
					    "--device-copy"};
	}
	auto src = inspect_block_device(source);
	if (!src) {
		return PairRejection{EBADF, "source block device cannot be inspected"};
	}
	auto dst = inspect_block_device(destination);
	if (!dst) {
		return PairRejection{EBADF, "destination block device cannot be inspected"};
	}
	if (src->kind() != dst->kind()) {
		return PairRejection{EBADF, "source and destination are block devices of "
					    "different kinds"};
	}
	return BlockPairLayout{
		.same_disk = src->same_disk(dst.value()),
		.source_start = src->start,
		.destination_start = dst->start,
		.block_size = std::max(src->logical_block_size, dst->logical_block_size),
	};
}

bool block_ranges_overlap(const BlockPairLayout &layout, std::uint64_t source_offset,
			  std::uint64_t destination_offset, std::uint64_t length)
{
	if (!layout.same_disk || length == 0) {
		return false;
	}
	// Offsets and length fit in off_t and partition starts are far below
	// 2^62, so the sums cannot overflow.
	const std::uint64_t x = layout.source_start + source_offset;
	const std::uint64_t y = layout.destination_start + destination_offset;
	return x < y + length && y < x + length;
}

std::unique_ptr<DeviceCopier> make_copier(const BlockDevice &source, int source_fd,
					  const BlockDevice &destination, int destination_fd,
					  const SessionOptions &options, std::string &reason)
{
	if (source.kind() != destination.kind()) {
		reason = "the two block devices are of different kinds";
		return nullptr;
	}
	switch (destination.kind()) {
	case DeviceKind::nvme:
		return make_nvme_copier(source, destination, destination_fd, options, reason);
	case DeviceKind::scsi:
		return make_scsi_copier(source, source_fd, destination, destination_fd, reason);
	case DeviceKind::other:
		break;
	}
	reason = "no copy offload for " + destination.sysfs.disk_name +
		 ": device copy knows NVMe namespaces and SCSI disks";
	return nullptr;
}

Result<std::shared_ptr<DeviceSession>> DeviceSession::open(int source, int destination,
							   std::uint64_t source_offset,
							   std::uint64_t destination_offset,
							   std::uint64_t length,
							   const SessionOptions &options)
{
	std::shared_ptr<DeviceSession> session(new DeviceSession());
	session->source_fd_ = source;
	session->destination_fd_ = destination;
	auto src = inspect_block_device(source);
	if (!src) {
		return src.error();
	}
	auto dst = inspect_block_device(destination);
	if (!dst) {
		return dst.error();
	}
	session->source_ = std::move(src.value());
	session->destination_ = std::move(dst.value());

	// Claimed before anything is read from them, held until the end,
	// whole disks first: a claim on a disk covers its partitions, while a
	// claim on a partition keeps its disk from being claimed.
	const bool destination_first = !session->destination_.sysfs.partition &&
				       session->source_.sysfs.partition;
	for (bool destination_now : {destination_first, !destination_first}) {
		const BlockDevice &device = destination_now ? session->destination_
							    : session->source_;
		auto claim = acquire_claim(destination_now ? destination : source, device);
		if (!claim) {
			return DeviceError{claim.error().error,
					   (destination_now ? "destination " : "source ") +
						   device.sysfs.name + ": " + claim.error().reason};
		}
		(destination_now ? session->destination_claim_ : session->source_claim_) =
			std::move(claim.value());
	}

	// The protocol decoder keeps offset + length within off_t.
	if (source_offset + length > session->source_.size) {
		return DeviceError{ENODATA, "the range ends past the source device's end"};
	}
	if (destination_offset + length > session->destination_.size) {
		return DeviceError{ENOSPC, "the range ends past the destination device's end"};
	}
	session->copier_ = make_copier(session->source_, source, session->destination_,
				       destination, options, session->unavailable_);
	{
		Sessions &live = sessions();
		std::lock_guard lock(live.mutex);
		live.by_descriptors[{source, destination}].push_back(session);
		session->registered_ = true;
	}
	return session;
}

DeviceSession::~DeviceSession()
{
	if (!registered_) {
		return;
	}
	Sessions &live = sessions();
	std::lock_guard lock(live.mutex);
	auto found = live.by_descriptors.find({source_fd_, destination_fd_});
	if (found == live.by_descriptors.end()) {
		return;
	}
	std::erase_if(found->second, [](const auto &entry) { return entry.expired(); });
	if (found->second.empty()) {
		live.by_descriptors.erase(found);
	}
}

std::shared_ptr<DeviceSession> DeviceSession::find(int source, int destination)
{
	Sessions &live = sessions();
	std::lock_guard lock(live.mutex);
	auto found = live.by_descriptors.find({source, destination});
	if (found == live.by_descriptors.end()) {
		return nullptr;
	}
	for (const auto &entry : found->second) {
		if (auto session = entry.lock(); session && session->still_on(source, destination)) {
			return session;
		}
	}
	return nullptr;
}

bool DeviceSession::still_on(int source, int destination) const
{
	// Descriptor numbers are reused as soon as they are closed: a session
	// whose request let go of them must not meet another request's
	// devices under the same numbers.
	struct stat src{};
	struct stat dst{};
	return ::fstat(source, &src) == 0 && ::fstat(destination, &dst) == 0 &&
	       S_ISBLK(src.st_mode) && S_ISBLK(dst.st_mode) && src.st_rdev == source_.rdev &&
	       dst.st_rdev == destination_.rdev;
}

std::uint32_t DeviceSession::block_size() const
{
	return std::max(source_.logical_block_size, destination_.logical_block_size);
}

} // namespace copyoffload::device
