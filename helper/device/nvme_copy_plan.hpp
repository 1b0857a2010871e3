// NVMe Copy (opcode 19h, source range entries of format 0), the pure part:
// what Identify Controller and Identify Namespace say about it, and how a
// contiguous copy within one namespace is split into commands that obey the
// namespace's limits. No I/O here (nvme_device.hpp does that).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace copyoffload::device {

inline constexpr std::size_t nvme_identify_size = 4096;
inline constexpr std::uint8_t nvme_opcode_copy = 0x19;
inline constexpr std::uint8_t nvme_admin_identify = 0x06;
inline constexpr std::uint32_t nvme_cns_namespace = 0x00;
inline constexpr std::uint32_t nvme_cns_controller = 0x01;
inline constexpr std::size_t nvme_copy_range_size = 32; // format 0 entry
// A source range's NLB field is 16 bits, 0-based.
inline constexpr std::uint32_t nvme_max_range_blocks = 65536;

struct NvmeControllerInfo {
	std::uint16_t oncs = 0; // Optional NVM Command Support
	std::uint16_t ocfs = 0; // Optional Copy Formats Supported
	std::string model;      // MN, trimmed
	std::string firmware;   // FR, trimmed

	// ONCS bit 8.
	[[nodiscard]] bool copy_supported() const { return (oncs & (1u << 8)) != 0; }
	// OCFS bit 0; controllers older than NVMe 2.0 report 0 and know only
	// the one format of TP 4065.
	[[nodiscard]] bool format0_supported() const
	{
		return copy_supported() && (ocfs == 0 || (ocfs & 1u) != 0);
	}
};

struct NvmeNamespaceInfo {
	std::uint64_t size_blocks = 0;   // NSZE
	std::uint32_t lba_size = 0;      // 2^LBADS of the format in use
	std::uint16_t metadata_size = 0; // MS of the format in use
	std::uint8_t protection = 0;     // DPS bits 2:0 (0: none)
	std::uint16_t mssrl = 0;         // Maximum Single Source Range Length
	std::uint32_t mcl = 0;           // Maximum Copy Length
	std::uint8_t msrc = 0;           // Maximum Source Range Count, 0-based
};

// Identify data as the controller returns it (little-endian). A namespace
// is nullopt when its data is not plausible (the format in use beyond the
// formats listed, an LBA data size below 9).
NvmeControllerInfo parse_identify_controller(
	std::span<const std::uint8_t, nvme_identify_size> data);
std::optional<NvmeNamespaceInfo> parse_identify_namespace(
	std::span<const std::uint8_t, nvme_identify_size> data);

// The limits one Copy command obeys, in logical blocks.
struct NvmeCopyLimits {
	std::uint32_t range_blocks = 0;   // per source range: MSSRL, at most 65536
	std::uint32_t ranges = 0;         // per command: MSRC + 1
	std::uint64_t command_blocks = 0; // per command: MCL

	// Blocks one command can move: MCL, or the ranges times their
	// length, whichever is smaller.
	[[nodiscard]] std::uint64_t blocks_per_command() const;
};

// The limits of a namespace, or why it cannot copy: no Copy, no format 0,
// metadata or protection information (the helper sends neither), a zero
// limit.
struct NvmeCopySupport {
	std::optional<NvmeCopyLimits> limits;
	std::string reason; // why not, when limits is empty
};
NvmeCopySupport nvme_copy_support(const NvmeControllerInfo &controller,
				  const NvmeNamespaceInfo &ns);

struct NvmeSourceRange {
	std::uint64_t lba = 0;
	std::uint32_t blocks = 0; // 1 to range_blocks
};

struct NvmeCopyCommand {
	std::uint64_t destination_lba = 0;
	std::vector<NvmeSourceRange> ranges; // contiguous, 1 to `ranges`
	std::uint64_t blocks = 0;            // sum of the ranges

	// The 32-byte format 0 entries the command's data pointer carries.
	[[nodiscard]] std::vector<std::uint8_t> range_entries() const;
	// CDW10-11 (SDLBA) and CDW12 (NR, 0-based; format 0; no PI, no FUA).
	[[nodiscard]] std::uint32_t cdw10() const;
	[[nodiscard]] std::uint32_t cdw11() const;
	[[nodiscard]] std::uint32_t cdw12() const;
};

// Commands copying `blocks` blocks from source_lba to destination_lba in
// order, each within `limits`.
std::vector<NvmeCopyCommand> plan_nvme_copy(std::uint64_t source_lba,
					    std::uint64_t destination_lba,
					    std::uint64_t blocks, const NvmeCopyLimits &limits);

// What an NVMe completion status (SCT << 8 | SC, as the kernel's passthrough
// returns it, DNR and More bits included) means for the helper: 0, EIO for
// media and unknown errors, EOPNOTSUPP when the controller refused the
// command as such (invalid opcode or field, a copy limit exceeded), EINVAL
// for an LBA out of range.
int nvme_status_errno(int status);
std::string nvme_status_text(int status);

} // namespace copyoffload::device
