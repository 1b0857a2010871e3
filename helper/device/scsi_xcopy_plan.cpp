#include "scsi_xcopy_plan.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace copyoffload::device {

namespace {

std::uint32_t be(std::span<const std::uint8_t> p, std::size_t at, std::size_t bytes)
{
	std::uint32_t value = 0;
	for (std::size_t i = 0; i < bytes; i++) {
		value = value << 8 | p[at + i];
	}
	return value;
}

void put_be(std::uint8_t *p, std::uint64_t value, std::size_t bytes)
{
	for (std::size_t i = 0; i < bytes; i++) {
		p[bytes - 1 - i] = static_cast<std::uint8_t>(value >> (8 * i));
	}
}

void put_cscd(std::uint8_t *p, const ScsiDesignator &designator, std::uint32_t block_size)
{
	p[0] = xcopy_cscd_identification;
	p[1] = 0x00; // peripheral device type 0: direct access block device
	// Bytes 2-3: relative initiator port identifier 0 (any port).
	p[4] = 0x01; // code set: binary
	p[5] = 0x03; // association: logical unit; designator type: NAA
	p[7] = static_cast<std::uint8_t>(designator.bytes.size());
	std::copy(designator.bytes.begin(), designator.bytes.end(), p + 8);
	put_be(p + 29, block_size, 3); // disk block length
}

} // namespace

bool ScsiCopyParameters::implements(std::uint8_t type) const
{
	return std::find(descriptor_types.begin(), descriptor_types.end(), type) !=
	       descriptor_types.end();
}

std::optional<ScsiCopyParameters> parse_copy_operating_parameters(
	std::span<const std::uint8_t> data)
{
	if (data.size() < 44) {
		return std::nullopt;
	}
	ScsiCopyParameters p;
	const std::uint32_t available = be(data, 0, 4); // bytes after the first 4
	p.supports_no_list_id = (data[4] & 0x01) != 0;
	p.max_cscd_descriptors = static_cast<std::uint16_t>(be(data, 8, 2));
	p.max_segment_descriptors = static_cast<std::uint16_t>(be(data, 10, 2));
	p.max_descriptor_list_length = be(data, 12, 4);
	p.max_segment_length = be(data, 16, 4);
	p.total_concurrent_copies = static_cast<std::uint16_t>(be(data, 34, 2));
	p.max_concurrent_copies = data[36];
	const std::size_t types = data[43];
	if (available + 4 < 44 + types || data.size() < 44 + types) {
		return std::nullopt;
	}
	p.descriptor_types.assign(data.begin() + 44, data.begin() + 44 + static_cast<long>(types));
	return p;
}

std::string ScsiDesignator::hex() const
{
	std::string text;
	char digits[3];
	for (std::uint8_t byte : bytes) {
		std::snprintf(digits, sizeof(digits), "%02x", byte);
		text += digits;
	}
	return text;
}

std::optional<ScsiDesignator> parse_naa_designator(std::span<const std::uint8_t> vpd83)
{
	if (vpd83.size() < 4 || vpd83[1] != scsi_vpd_device_identification) {
		return std::nullopt;
	}
	const std::size_t end = std::min<std::size_t>(vpd83.size(), 4 + be(vpd83, 2, 2));
	std::size_t at = 4;
	while (at + 4 <= end) {
		const std::uint8_t code_set = vpd83[at] & 0x0f;
		const std::uint8_t association = (vpd83[at + 1] >> 4) & 0x03;
		const std::uint8_t type = vpd83[at + 1] & 0x0f;
		const std::size_t length = vpd83[at + 3];
		if (at + 4 + length > end) {
			break;
		}
		if (code_set == 1 && association == 0 && type == 3 && length > 0 &&
		    length <= 20) {
			ScsiDesignator designator;
			designator.bytes.assign(vpd83.begin() + static_cast<long>(at + 4),
						vpd83.begin() + static_cast<long>(at + 4 + length));
			return designator;
		}
		at += 4 + length;
	}
	return std::nullopt;
}

XcopySupport xcopy_support(const ScsiCopyParameters &p, std::uint32_t block_size,
			   bool same_logical_unit)
{
	if (!p.implements(xcopy_segment_block_to_block) ||
	    !p.implements(xcopy_cscd_identification)) {
		return {std::nullopt, "the copy manager lacks block-to-block segments (02h) or "
				      "identification descriptors (E4h)"};
	}
	if (!p.supports_no_list_id) {
		return {std::nullopt, "the copy manager needs list identifiers (SNLID clear)"};
	}
	const std::size_t cscds = same_logical_unit ? 1 : 2;
	if (p.max_cscd_descriptors < cscds || p.max_segment_descriptors < 1) {
		return {std::nullopt, "the copy manager takes too few descriptors"};
	}
	if (p.max_descriptor_list_length < cscds * xcopy_cscd_size + xcopy_segment_size) {
		return {std::nullopt, "the copy manager's descriptor list is too short"};
	}
	std::uint64_t blocks = xcopy_max_segment_blocks;
	if (p.max_segment_length != 0) {
		blocks = std::min<std::uint64_t>(blocks, p.max_segment_length / block_size);
	}
	if (blocks == 0) {
		return {std::nullopt, "the copy manager's largest segment is below one block"};
	}
	const std::size_t room =
		(p.max_descriptor_list_length - cscds * xcopy_cscd_size) / xcopy_segment_size;
	XcopyLimits limits{
		.segment_blocks = static_cast<std::uint32_t>(blocks),
		.segments = static_cast<std::uint32_t>(
			std::min<std::size_t>({room, p.max_segment_descriptors, 64})),
	};
	return {limits, {}};
}

std::vector<XcopyCommand> plan_xcopy(std::uint64_t source_lba, std::uint64_t destination_lba,
				     std::uint64_t blocks, const XcopyLimits &limits)
{
	std::vector<XcopyCommand> commands;
	if (limits.segment_blocks == 0 || limits.segments == 0) {
		return commands;
	}
	std::uint64_t done = 0;
	while (done < blocks) {
		XcopyCommand command;
		while (done < blocks && command.segments.size() < limits.segments) {
			const auto count = static_cast<std::uint32_t>(
				std::min<std::uint64_t>(limits.segment_blocks, blocks - done));
			command.segments.push_back(
				{source_lba + done, destination_lba + done, count});
			command.blocks += count;
			done += count;
		}
		commands.push_back(std::move(command));
	}
	return commands;
}

std::vector<std::uint8_t> xcopy_parameter_list(const ScsiDesignator &source,
					       const ScsiDesignator &destination,
					       std::uint32_t block_size,
					       const XcopyCommand &command)
{
	const bool same = source == destination;
	const std::size_t cscds = same ? 1 : 2;
	const std::size_t cscd_bytes = cscds * xcopy_cscd_size;
	const std::size_t segment_bytes = command.segments.size() * xcopy_segment_size;
	std::vector<std::uint8_t> list(xcopy_header_size + cscd_bytes + segment_bytes, 0);
	std::uint8_t *p = list.data();
	p[0] = 0x00; // list identifier: none
	p[1] = 0x18; // LIST ID USAGE 11b: no list identifier; priority 0
	put_be(p + 2, cscd_bytes, 2);
	put_be(p + 8, segment_bytes, 4);
	// Bytes 12-15: inline data length 0.
	put_cscd(p + xcopy_header_size, source, block_size);
	if (!same) {
		put_cscd(p + xcopy_header_size + xcopy_cscd_size, destination, block_size);
	}
	std::uint8_t *segment = p + xcopy_header_size + cscd_bytes;
	for (const XcopySegment &s : command.segments) {
		segment[0] = xcopy_segment_block_to_block;
		segment[1] = 0x00; // DC 0: blocks of the source's size; CAT 0
		put_be(segment + 2, xcopy_segment_size - 4, 2);
		put_be(segment + 4, 0, 2);            // source CSCD index
		put_be(segment + 6, same ? 0 : 1, 2); // destination CSCD index
		put_be(segment + 10, s.blocks, 2);
		put_be(segment + 12, s.source_lba, 8);
		put_be(segment + 20, s.destination_lba, 8);
		segment += xcopy_segment_size;
	}
	return list;
}

std::array<std::uint8_t, 16> extended_copy_cdb(std::uint32_t parameter_list_length)
{
	std::array<std::uint8_t, 16> cdb{};
	cdb[0] = scsi_extended_copy;
	cdb[1] = 0x00; // LID1
	put_be(cdb.data() + 10, parameter_list_length, 4);
	return cdb;
}

std::array<std::uint8_t, 16> receive_copy_operating_parameters_cdb(std::uint32_t allocation)
{
	std::array<std::uint8_t, 16> cdb{};
	cdb[0] = scsi_receive_copy_results;
	cdb[1] = scsi_rcr_operating_parameters;
	put_be(cdb.data() + 10, allocation, 4);
	return cdb;
}

std::array<std::uint8_t, 6> inquiry_vpd_cdb(std::uint8_t page, std::uint16_t allocation)
{
	std::array<std::uint8_t, 6> cdb{};
	cdb[0] = scsi_inquiry;
	cdb[1] = 0x01; // EVPD
	cdb[2] = page;
	put_be(cdb.data() + 3, allocation, 2);
	return cdb;
}

std::optional<SenseData> parse_sense(std::span<const std::uint8_t> sense)
{
	if (sense.empty()) {
		return std::nullopt;
	}
	const std::uint8_t code = sense[0] & 0x7f;
	if ((code == 0x70 || code == 0x71) && sense.size() >= 14) {
		return SenseData{static_cast<std::uint8_t>(sense[2] & 0x0f), sense[12], sense[13]};
	}
	if ((code == 0x72 || code == 0x73) && sense.size() >= 4) {
		return SenseData{static_cast<std::uint8_t>(sense[1] & 0x0f), sense[2], sense[3]};
	}
	return std::nullopt;
}

int sense_errno(const SenseData &sense)
{
	switch (sense.key) {
	case 0x06: // UNIT ATTENTION: a reset or a change; the command did not run
		return EAGAIN;
	case 0x0a: // COPY ABORTED
		// 0Dh: the copy manager cannot reach a copy target (the other
		// device is not one of its logical units): never, for this pair.
		return sense.asc == 0x0d ? EXDEV : EOPNOTSUPP;
	case 0x05: // ILLEGAL REQUEST
		return EOPNOTSUPP;
	case 0x0d: // VOLUME OVERFLOW
		return ENOSPC;
	}
	return EIO;
}

std::string sense_text(const SenseData &sense)
{
	char text[64];
	std::snprintf(text, sizeof(text), "sense key 0x%x, ASC/ASCQ 0x%02x/0x%02x", sense.key,
		      sense.asc, sense.ascq);
	return text;
}

} // namespace copyoffload::device
