// SCSI EXTENDED COPY (LID1, SPC-4 6.4), the pure part: the copy manager's
// operating parameters (RECEIVE COPY RESULTS, service action 03h), the
// logical unit's NAA designator (VPD page 83h), the parameter list of a
// block-to-block copy (identification CSCD descriptors E4h, segment
// descriptors 02h), splitting to the reported limits, and sense data. No
// I/O here (scsi_device.hpp does that).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace copyoffload::device {

inline constexpr std::uint8_t scsi_extended_copy = 0x83;
inline constexpr std::uint8_t scsi_receive_copy_results = 0x84;
inline constexpr std::uint8_t scsi_rcr_operating_parameters = 0x03;
inline constexpr std::uint8_t scsi_inquiry = 0x12;
inline constexpr std::uint8_t scsi_vpd_device_identification = 0x83;
inline constexpr std::uint8_t xcopy_segment_block_to_block = 0x02;
inline constexpr std::uint8_t xcopy_cscd_identification = 0xe4;
inline constexpr std::size_t xcopy_header_size = 16;
inline constexpr std::size_t xcopy_cscd_size = 32;
inline constexpr std::size_t xcopy_segment_size = 28;
// A block-to-block segment's NUMBER OF BLOCKS field is 16 bits.
inline constexpr std::uint32_t xcopy_max_segment_blocks = 0xffff;

struct ScsiCopyParameters {
	bool supports_no_list_id = false;       // SNLID
	std::uint16_t max_cscd_descriptors = 0;
	std::uint16_t max_segment_descriptors = 0;
	std::uint32_t max_descriptor_list_length = 0;
	std::uint32_t max_segment_length = 0;   // bytes; 0: no limit
	std::uint16_t total_concurrent_copies = 0;
	std::uint8_t max_concurrent_copies = 0;
	std::vector<std::uint8_t> descriptor_types; // implemented type codes

	[[nodiscard]] bool implements(std::uint8_t type) const;
};

// The operating parameters (at least 44 bytes, as SPC-4 lays them out);
// nullopt when the data is too short for what it claims.
std::optional<ScsiCopyParameters> parse_copy_operating_parameters(
	std::span<const std::uint8_t> data);

// A designator the copy manager can find the logical unit by: the first
// NAA designator (type 3, binary, associated with the logical unit) of VPD
// page 83h, at most 20 bytes.
struct ScsiDesignator {
	std::vector<std::uint8_t> bytes;

	bool operator==(const ScsiDesignator &) const = default;
	[[nodiscard]] std::string hex() const;
};
std::optional<ScsiDesignator> parse_naa_designator(std::span<const std::uint8_t> vpd83);

struct XcopyLimits {
	std::uint32_t segment_blocks = 0;    // per segment descriptor
	std::uint32_t segments = 0;          // segment descriptors per command
};

// What the helper can send this copy manager, or why nothing: it needs
// block-to-block segments and identification descriptors, no list
// identifier, one or two CSCD descriptors, and room in the descriptor list.
struct XcopySupport {
	std::optional<XcopyLimits> limits;
	std::string reason;
};
XcopySupport xcopy_support(const ScsiCopyParameters &parameters, std::uint32_t block_size,
			   bool same_logical_unit);

struct XcopySegment {
	std::uint64_t source_lba = 0;
	std::uint64_t destination_lba = 0;
	std::uint32_t blocks = 0;
};

struct XcopyCommand {
	std::vector<XcopySegment> segments;
	std::uint64_t blocks = 0;
};

std::vector<XcopyCommand> plan_xcopy(std::uint64_t source_lba, std::uint64_t destination_lba,
				     std::uint64_t blocks, const XcopyLimits &limits);

// The parameter list of one EXTENDED COPY (LID1): header, CSCD descriptors
// (one when source and destination are the same logical unit), segments.
std::vector<std::uint8_t> xcopy_parameter_list(const ScsiDesignator &source,
					       const ScsiDesignator &destination,
					       std::uint32_t block_size,
					       const XcopyCommand &command);

// The 16-byte CDBs and the 6-byte INQUIRY.
std::array<std::uint8_t, 16> extended_copy_cdb(std::uint32_t parameter_list_length);
std::array<std::uint8_t, 16> receive_copy_operating_parameters_cdb(std::uint32_t allocation);
std::array<std::uint8_t, 6> inquiry_vpd_cdb(std::uint8_t page, std::uint16_t allocation);

struct SenseData {
	std::uint8_t key = 0;
	std::uint8_t asc = 0;
	std::uint8_t ascq = 0;
};
// Fixed (70h/71h) or descriptor (72h/73h) format; nullopt otherwise.
std::optional<SenseData> parse_sense(std::span<const std::uint8_t> sense);

// What a CHECK CONDITION means for the helper: EAGAIN for UNIT ATTENTION
// (send again), EOPNOTSUPP when the copy manager refused the copy
// (ILLEGAL REQUEST, COPY ABORTED: SPC-4 tells the initiator to copy some
// other way), EXDEV when it cannot reach one of the devices at all (COPY
// ABORTED, ASC 0Dh), ENOSPC for VOLUME OVERFLOW, EIO otherwise.
int sense_errno(const SenseData &sense);
std::string sense_text(const SenseData &sense);

} // namespace copyoffload::device
