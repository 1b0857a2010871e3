#include "nvme_copy_plan.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace copyoffload::device {

namespace {

std::uint16_t le16(std::span<const std::uint8_t> p, std::size_t at)
{
	return static_cast<std::uint16_t>(p[at] | p[at + 1] << 8);
}

std::uint32_t le32(std::span<const std::uint8_t> p, std::size_t at)
{
	return static_cast<std::uint32_t>(le16(p, at)) |
	       static_cast<std::uint32_t>(le16(p, at + 2)) << 16;
}

std::uint64_t le64(std::span<const std::uint8_t> p, std::size_t at)
{
	return static_cast<std::uint64_t>(le32(p, at)) |
	       static_cast<std::uint64_t>(le32(p, at + 4)) << 32;
}

void put_le(std::uint8_t *p, std::uint64_t value, std::size_t bytes)
{
	for (std::size_t i = 0; i < bytes; i++) {
		p[i] = static_cast<std::uint8_t>(value >> (8 * i));
	}
}

// An ASCII field, blank-padded on the right.
std::string ascii_field(std::span<const std::uint8_t> p, std::size_t at, std::size_t size)
{
	std::string text;
	for (std::size_t i = at; i < at + size; i++) {
		const auto c = static_cast<char>(p[i]);
		text += c >= 0x20 && c < 0x7f ? c : ' ';
	}
	text.erase(text.find_last_not_of(' ') + 1);
	return text;
}

} // namespace

NvmeControllerInfo parse_identify_controller(
	std::span<const std::uint8_t, nvme_identify_size> data)
{
	NvmeControllerInfo info;
	info.model = ascii_field(data, 24, 40);
	info.firmware = ascii_field(data, 64, 8);
	info.oncs = le16(data, 520);
	info.ocfs = le16(data, 534);
	return info;
}

std::optional<NvmeNamespaceInfo> parse_identify_namespace(
	std::span<const std::uint8_t, nvme_identify_size> data)
{
	NvmeNamespaceInfo info;
	info.size_blocks = le64(data, 0);
	const std::uint8_t formats = data[25]; // NLBAF, 0-based
	const std::uint8_t flbas = data[26];
	unsigned index = flbas & 0x0fu;
	if (formats >= 16) {
		index |= static_cast<unsigned>((flbas >> 5) & 0x3u) << 4;
	}
	if (index > formats || index >= 64) {
		return std::nullopt;
	}
	const std::size_t format = 128 + 4 * index;
	const unsigned lbads = data[format + 2];
	if (lbads < 9 || lbads > 31) {
		return std::nullopt; // not in use, or not a size the helper can address
	}
	info.lba_size = 1u << lbads;
	info.metadata_size = le16(data, format);
	info.protection = data[29] & 0x07u;
	info.mssrl = le16(data, 74);
	info.mcl = le32(data, 76);
	info.msrc = data[80];
	return info;
}

std::uint64_t NvmeCopyLimits::blocks_per_command() const
{
	return std::min<std::uint64_t>(command_blocks,
				       static_cast<std::uint64_t>(range_blocks) * ranges);
}

NvmeCopySupport nvme_copy_support(const NvmeControllerInfo &controller,
				  const NvmeNamespaceInfo &ns)
{
	if (!controller.copy_supported()) {
		return {std::nullopt, "the controller has no Copy command (ONCS bit 8 clear)"};
	}
	if (!controller.format0_supported()) {
		return {std::nullopt, "the controller does not support Copy descriptor format 0"};
	}
	if (ns.metadata_size != 0 || ns.protection != 0) {
		return {std::nullopt, "the namespace format has metadata or protection "
				      "information, which device copy does not handle"};
	}
	if (ns.mssrl == 0 || ns.mcl == 0) {
		return {std::nullopt, "the namespace reports a zero copy limit (MSSRL/MCL)"};
	}
	NvmeCopyLimits limits{
		.range_blocks = std::min<std::uint32_t>(ns.mssrl, nvme_max_range_blocks),
		.ranges = static_cast<std::uint32_t>(ns.msrc) + 1,
		.command_blocks = ns.mcl,
	};
	return {limits, {}};
}

std::vector<std::uint8_t> NvmeCopyCommand::range_entries() const
{
	std::vector<std::uint8_t> entries(ranges.size() * nvme_copy_range_size, 0);
	for (std::size_t i = 0; i < ranges.size(); i++) {
		std::uint8_t *entry = entries.data() + i * nvme_copy_range_size;
		put_le(entry + 8, ranges[i].lba, 8);           // SLBA
		put_le(entry + 16, ranges[i].blocks - 1, 2);   // NLB, 0-based
	}
	return entries;
}

std::uint32_t NvmeCopyCommand::cdw10() const
{
	return static_cast<std::uint32_t>(destination_lba);
}

std::uint32_t NvmeCopyCommand::cdw11() const
{
	return static_cast<std::uint32_t>(destination_lba >> 32);
}

std::uint32_t NvmeCopyCommand::cdw12() const
{
	// NR (bits 7:0) is 0-based; DESFMT (bits 11:8) 0; PRINFOR, PRINFOW,
	// STCW, FUA and LR all 0.
	return static_cast<std::uint32_t>(ranges.size() - 1) & 0xffu;
}

std::vector<NvmeCopyCommand> plan_nvme_copy(std::uint64_t source_lba,
					    std::uint64_t destination_lba,
					    std::uint64_t blocks, const NvmeCopyLimits &limits)
{
	std::vector<NvmeCopyCommand> commands;
	const std::uint64_t per_command = limits.blocks_per_command();
	if (per_command == 0) {
		return commands;
	}
	std::uint64_t done = 0;
	while (done < blocks) {
		NvmeCopyCommand command;
		command.destination_lba = destination_lba + done;
		const std::uint64_t command_blocks = std::min(per_command, blocks - done);
		while (command.blocks < command_blocks) {
			const auto range = static_cast<std::uint32_t>(std::min<std::uint64_t>(
				limits.range_blocks, command_blocks - command.blocks));
			command.ranges.push_back({source_lba + done + command.blocks, range});
			command.blocks += range;
		}
		done += command.blocks;
		commands.push_back(std::move(command));
	}
	return commands;
}

int nvme_status_errno(int status)
{
	if (status == 0) {
		return 0;
	}
	const int code = status & 0xff;
	const int type = (status >> 8) & 0x7;
	if (type == 0) { // generic
		switch (code) {
		case 0x01: // invalid command opcode
		case 0x02: // invalid field in command
		case 0x0b: // invalid namespace or format
			return EOPNOTSUPP;
		case 0x80: // LBA out of range
			return EINVAL;
		case 0x81: // capacity exceeded
			return ENOSPC;
		}
		return EIO;
	}
	if (type == 1) {
		// Command specific: for Copy these are refusals of the command
		// as sent (size limits exceeded, incompatible formats, ...).
		return EOPNOTSUPP;
	}
	return EIO; // media and data integrity, path, vendor specific
}

std::string nvme_status_text(int status)
{
	char text[64];
	std::snprintf(text, sizeof(text), "NVMe status 0x%03x (type %d, code 0x%02x)",
		      status & 0x7ff, (status >> 8) & 0x7, status & 0xff);
	return text;
}

} // namespace copyoffload::device
