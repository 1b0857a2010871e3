// The device layer's pure parts: NVMe Identify parsing, Copy limits and
// command splitting and encoding, NVMe status meanings; SCSI copy operating
// parameters, designators, EXTENDED COPY parameter lists and splitting,
// sense data; the block-device planner; sysfs parsing on a fake tree; page
// rounding. The I/O is tested in the QEMU guest (selftest/blockdev).

#include "block_device.hpp"
#include "copy_engine.hpp"
#include "device_backend.hpp"
#include "device_plan.hpp"
#include "nvme_copy_plan.hpp"
#include "scsi_xcopy_plan.hpp"

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace copyoffload::device;
using namespace test_support;
using namespace test_support::methods;

namespace {

using Identify = std::array<std::uint8_t, nvme_identify_size>;

void put_le(Identify &data, std::size_t at, std::uint64_t value, std::size_t bytes)
{
	for (std::size_t i = 0; i < bytes; i++) {
		data[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
	}
}

Identify controller(std::uint16_t oncs, std::uint16_t ocfs)
{
	Identify data{};
	const char model[] = "QEMU NVMe Ctrl";
	for (std::size_t i = 0; i < 40; i++) {
		data[24 + i] = i < sizeof(model) - 1 ? static_cast<std::uint8_t>(model[i]) : ' ';
	}
	put_le(data, 520, oncs, 2);
	put_le(data, 534, ocfs, 2);
	return data;
}

// A namespace whose format `index` (of `formats` + 1) is in use.
Identify ns(unsigned lbads, std::uint16_t ms, std::uint16_t mssrl, std::uint32_t mcl,
	    std::uint8_t msrc, unsigned index = 1, unsigned formats = 2)
{
	Identify data{};
	put_le(data, 0, 65536, 8); // NSZE
	data[25] = static_cast<std::uint8_t>(formats);
	data[26] = static_cast<std::uint8_t>((index & 0x0f) | ((index >> 4) & 0x3) << 5);
	put_le(data, 74, mssrl, 2);
	put_le(data, 76, mcl, 4);
	data[80] = msrc;
	// Format 0 is 512 bytes; format `index` what the test asks for.
	data[128 + 2] = 9;
	put_le(data, 128 + 4 * index, ms, 2);
	data[128 + 4 * index + 2] = static_cast<std::uint8_t>(lbads);
	return data;
}

void test_identify_parsing(void **)
{
	NvmeControllerInfo c = parse_identify_controller(controller(0x015d, 0x0003));
	assert_string_equal(c.model.c_str(), "QEMU NVMe Ctrl");
	assert_true(c.copy_supported());
	assert_true(c.format0_supported());
	assert_false(parse_identify_controller(controller(0x005d, 0x0003)).copy_supported());
	// Before NVMe 2.0 OCFS is 0 and format 0 is implied; format 1 alone is not 0.
	assert_true(parse_identify_controller(controller(0x0100, 0)).format0_supported());
	assert_false(parse_identify_controller(controller(0x0100, 0x0002)).format0_supported());

	auto n = parse_identify_namespace(ns(12, 0, 128, 256, 7));
	assert_true(n.has_value());
	assert_int_equal(n->lba_size, 4096);
	assert_int_equal(n->size_blocks, 65536);
	assert_int_equal(n->mssrl, 128);
	assert_int_equal(n->mcl, 256);
	assert_int_equal(n->msrc, 7);
	// FLBAS bits 6:5 extend the index beyond 16 formats.
	auto high = parse_identify_namespace(ns(12, 0, 8, 8, 0, 17, 20));
	assert_true(high.has_value());
	assert_int_equal(high->lba_size, 4096);
	// A format index beyond NLBAF, or an LBA data size below 512 bytes.
	assert_false(parse_identify_namespace(ns(12, 0, 8, 8, 0, 3, 2)).has_value());
	assert_false(parse_identify_namespace(ns(8, 0, 8, 8, 0)).has_value());
}

void test_copy_support(void **)
{
	const auto copy = parse_identify_controller(controller(0x0100, 0x0001));
	NvmeCopySupport ok = nvme_copy_support(copy, *parse_identify_namespace(ns(9, 0, 8, 20, 2)));
	assert_true(ok.limits.has_value());
	assert_int_equal(ok.limits->range_blocks, 8);
	assert_int_equal(ok.limits->ranges, 3);
	assert_int_equal(ok.limits->command_blocks, 20);
	assert_int_equal(ok.limits->blocks_per_command(), 20); // MCL binds
	// MSSRL is 16 bits, so at most 65535 blocks per range.
	auto big = nvme_copy_support(copy, *parse_identify_namespace(ns(9, 0, 65535, 1u << 20, 255)));
	assert_int_equal(big.limits->range_blocks, 65535);
	assert_int_equal(big.limits->ranges, 256);

	auto no_copy = nvme_copy_support(parse_identify_controller(controller(0x005d, 3)),
					 *parse_identify_namespace(ns(9, 0, 8, 20, 2)));
	assert_false(no_copy.limits.has_value());
	assert_true(no_copy.reason.find("ONCS") != std::string::npos);
	auto metadata = nvme_copy_support(copy, *parse_identify_namespace(ns(9, 8, 8, 20, 2)));
	assert_false(metadata.limits.has_value());
	assert_true(metadata.reason.find("metadata") != std::string::npos);
	auto zero = nvme_copy_support(copy, *parse_identify_namespace(ns(9, 0, 0, 20, 2)));
	assert_false(zero.limits.has_value());
}

std::uint64_t total_blocks(const std::vector<NvmeCopyCommand> &commands)
{
	std::uint64_t blocks = 0;
	for (const auto &command : commands) {
		blocks += command.blocks;
	}
	return blocks;
}

// Every command within the limits, source ranges contiguous, destinations
// following on.
void assert_nvme_plan(const std::vector<NvmeCopyCommand> &commands, std::uint64_t source,
		      std::uint64_t destination, std::uint64_t blocks,
		      const NvmeCopyLimits &limits)
{
	assert_int_equal(total_blocks(commands), blocks);
	std::uint64_t done = 0;
	for (const auto &command : commands) {
		assert_int_equal(command.destination_lba, destination + done);
		assert_true(command.blocks <= limits.command_blocks);
		assert_true(command.ranges.size() <= limits.ranges);
		assert_false(command.ranges.empty());
		std::uint64_t in_command = 0;
		for (const auto &range : command.ranges) {
			assert_int_equal(range.lba, source + done + in_command);
			assert_true(range.blocks >= 1 && range.blocks <= limits.range_blocks);
			in_command += range.blocks;
		}
		assert_int_equal(in_command, command.blocks);
		done += command.blocks;
	}
}

void test_nvme_split(void **)
{
	// MCL binds: 3 ranges of 8 would be 24 > 20.
	NvmeCopyLimits mcl{.range_blocks = 8, .ranges = 3, .command_blocks = 20};
	auto commands = plan_nvme_copy(100, 5000, 2048, mcl);
	assert_int_equal(commands.size(), 103);
	assert_nvme_plan(commands, 100, 5000, 2048, mcl);
	assert_int_equal(commands[0].ranges.size(), 3);
	assert_int_equal(commands[0].ranges[2].blocks, 4);
	assert_int_equal(commands.back().blocks, 2048 - 102 * 20);

	// MSRC binds: 2 ranges of 4.
	NvmeCopyLimits msrc{.range_blocks = 4, .ranges = 2, .command_blocks = 64};
	commands = plan_nvme_copy(1, 1000, 515, msrc);
	assert_int_equal(commands.size(), 65);
	assert_nvme_plan(commands, 1, 1000, 515, msrc);

	// MSSRL x ranges binds.
	NvmeCopyLimits mssrl{.range_blocks = 16, .ranges = 8, .command_blocks = 256};
	commands = plan_nvme_copy(0, 1ull << 33, 10000, mssrl);
	assert_nvme_plan(commands, 0, 1ull << 33, 10000, mssrl);
	assert_int_equal(commands[0].blocks, 128);

	assert_true(plan_nvme_copy(0, 100, 0, mcl).empty());
	assert_true(plan_nvme_copy(0, 100, 10, NvmeCopyLimits{}).empty());
}

void test_nvme_encoding(void **)
{
	NvmeCopyCommand command;
	command.destination_lba = 0x1122334455667788ull;
	command.ranges = {{0x0102030405060708ull, 8}, {0x0102030405060710ull, 1}};
	command.blocks = 9;
	assert_int_equal(command.cdw10(), 0x55667788u);
	assert_int_equal(command.cdw11(), 0x11223344u);
	assert_int_equal(command.cdw12(), 1); // NR is 0-based; format 0
	auto entries = command.range_entries();
	assert_int_equal(entries.size(), 64);
	for (std::size_t i = 0; i < 8; i++) {
		assert_int_equal(entries[i], 0); // reserved
	}
	assert_int_equal(entries[8], 0x08);  // SLBA, little-endian
	assert_int_equal(entries[15], 0x01);
	assert_int_equal(entries[16], 7);    // NLB 0-based
	assert_int_equal(entries[17], 0);
	assert_int_equal(entries[32 + 8], 0x10);
	assert_int_equal(entries[32 + 16], 0);
}

void test_nvme_status(void **)
{
	assert_int_equal(nvme_status_errno(0), 0);
	assert_int_equal(nvme_status_errno(0x0002), EOPNOTSUPP); // invalid field
	assert_int_equal(nvme_status_errno(0x4002), EOPNOTSUPP); // ... with DNR
	assert_int_equal(nvme_status_errno(0x0001), EOPNOTSUPP); // invalid opcode
	assert_int_equal(nvme_status_errno(0x0183), EOPNOTSUPP); // size limits exceeded
	assert_int_equal(nvme_status_errno(0x0080), EINVAL);     // LBA out of range
	assert_int_equal(nvme_status_errno(0x0006), EIO);        // internal error
	assert_int_equal(nvme_status_errno(0x0281), EIO);        // unrecovered read error
	assert_true(nvme_status_text(0x4183).find("0x183") != std::string::npos);
}

// RECEIVE COPY RESULTS operating parameters as LIO returns them.
std::vector<std::uint8_t> lio_parameters()
{
	std::vector<std::uint8_t> p(54, 0);
	p[3] = 42;
	p[4] = 0x01;
	p[9] = 2;
	p[11] = 1;
	p[14] = 0x04; // 1024
	p[16] = 0x10; // 256 MiB
	p[35] = 1;
	p[36] = 1;
	p[43] = 2;
	p[44] = 0x02;
	p[45] = 0xe4;
	return p;
}

void test_scsi_parameters(void **)
{
	auto p = parse_copy_operating_parameters(lio_parameters());
	assert_true(p.has_value());
	assert_true(p->supports_no_list_id);
	assert_int_equal(p->max_cscd_descriptors, 2);
	assert_int_equal(p->max_segment_descriptors, 1);
	assert_int_equal(p->max_descriptor_list_length, 1024);
	assert_int_equal(p->max_segment_length, 256u << 20);
	assert_true(p->implements(0x02) && p->implements(0xe4));
	// Too short, or a type list beyond the data.
	assert_false(parse_copy_operating_parameters(std::vector<std::uint8_t>(40)).has_value());
	auto truncated = lio_parameters();
	truncated[43] = 20;
	assert_false(parse_copy_operating_parameters(truncated).has_value());

	// 512-byte blocks: the 16-bit block count binds, not 256 MiB.
	XcopySupport s = xcopy_support(*p, 512, false);
	assert_true(s.limits.has_value());
	assert_int_equal(s.limits->segment_blocks, 65535);
	assert_int_equal(s.limits->segments, 1);
	auto small = *p;
	small.max_segment_length = 1 << 20;
	assert_int_equal(xcopy_support(small, 4096, true).limits->segment_blocks, 256);
	small.max_segment_length = 100; // below one block
	assert_false(xcopy_support(small, 512, true).limits.has_value());
	auto no_e4 = *p;
	no_e4.descriptor_types = {0x02};
	assert_false(xcopy_support(no_e4, 512, false).limits.has_value());
	auto list_ids = *p;
	list_ids.supports_no_list_id = false;
	assert_false(xcopy_support(list_ids, 512, false).limits.has_value());
	auto one_cscd = *p;
	one_cscd.max_cscd_descriptors = 1;
	assert_false(xcopy_support(one_cscd, 512, false).limits.has_value());
	assert_true(xcopy_support(one_cscd, 512, true).limits.has_value());
}

void test_scsi_designator(void **)
{
	// VPD 83h: a T10 vendor id (type 1, ASCII), then NAA 6 (type 3).
	std::vector<std::uint8_t> vpd = {0x00, 0x83, 0x00, 0x00};
	std::vector<std::uint8_t> t10 = {0x02, 0x01, 0x00, 0x04, 'L', 'I', 'O', ' '};
	std::vector<std::uint8_t> naa = {0x01, 0x03, 0x00, 0x10, 0x60, 0x01, 0x40, 0x5c};
	naa.resize(4 + 16, 0xab);
	std::vector<std::uint8_t> port_naa = {0x01, 0x13, 0x00, 0x08, 0x50, 1, 2, 3, 4, 5, 6, 7};
	vpd.insert(vpd.end(), t10.begin(), t10.end());
	vpd.insert(vpd.end(), port_naa.begin(), port_naa.end()); // target port: skipped
	vpd.insert(vpd.end(), naa.begin(), naa.end());
	vpd[3] = static_cast<std::uint8_t>(vpd.size() - 4);
	auto designator = parse_naa_designator(vpd);
	assert_true(designator.has_value());
	assert_int_equal(designator->bytes.size(), 16);
	assert_int_equal(designator->bytes[0], 0x60);
	assert_string_equal(designator->hex().substr(0, 8).c_str(), "6001405c");
	// Cut short: the NAA descriptor lies beyond the page length.
	auto cut = vpd;
	cut[3] = static_cast<std::uint8_t>(t10.size() + port_naa.size());
	assert_false(parse_naa_designator(cut).has_value());
	assert_false(parse_naa_designator(std::vector<std::uint8_t>{0, 0x80, 0, 0}).has_value());
}

void test_xcopy_list(void **)
{
	XcopyLimits limits{.segment_blocks = 65535, .segments = 1};
	auto commands = plan_xcopy(10, 1000000, 81920, limits); // 40 MiB of 512
	assert_int_equal(commands.size(), 2);
	assert_int_equal(commands[0].segments[0].blocks, 65535);
	assert_int_equal(commands[1].segments[0].source_lba, 10 + 65535);
	assert_int_equal(commands[1].segments[0].destination_lba, 1000000 + 65535);
	assert_int_equal(commands[1].blocks, 81920 - 65535);
	auto several = plan_xcopy(0, 0, 10, XcopyLimits{.segment_blocks = 3, .segments = 2});
	assert_int_equal(several.size(), 2);
	assert_int_equal(several[0].segments.size(), 2);
	assert_int_equal(several[1].blocks, 4);

	ScsiDesignator a{std::vector<std::uint8_t>(16, 0x61)};
	ScsiDesignator b{std::vector<std::uint8_t>(16, 0x62)};
	XcopyCommand command = commands[1];
	auto list = xcopy_parameter_list(a, b, 512, command);
	assert_int_equal(list.size(), 16 + 64 + 28);
	assert_int_equal(list[1], 0x18); // no list identifier
	assert_int_equal(list[3], 64);   // CSCD list length
	assert_int_equal(list[11], 28);  // segment list length
	assert_int_equal(list[16], 0xe4);
	assert_int_equal(list[16 + 4], 0x01);   // binary
	assert_int_equal(list[16 + 5], 0x03);   // LU, NAA
	assert_int_equal(list[16 + 7], 16);
	assert_int_equal(list[16 + 8], 0x61);
	assert_int_equal(list[16 + 30], 0x02);  // block length 512: 00 02 00
	assert_int_equal(list[48 + 8], 0x62);
	const std::uint8_t *segment = list.data() + 80;
	assert_int_equal(segment[0], 0x02);
	assert_int_equal(segment[3], 0x18);
	assert_int_equal(segment[5], 0); // source CSCD 0
	assert_int_equal(segment[7], 1); // destination CSCD 1
	assert_int_equal(segment[10] << 8 | segment[11], 81920 - 65535);
	assert_int_equal(segment[19], (10 + 65535) & 0xff);
	// One logical unit: one CSCD descriptor for both ends.
	auto same = xcopy_parameter_list(a, a, 4096, command);
	assert_int_equal(same.size(), 16 + 32 + 28);
	assert_int_equal(same[48 + 7], 0);

	auto cdb = extended_copy_cdb(108);
	assert_int_equal(cdb[0], 0x83);
	assert_int_equal(cdb[1], 0x00);
	assert_int_equal(cdb[13], 108);
	auto rcr = receive_copy_operating_parameters_cdb(256);
	assert_int_equal(rcr[1], 0x03);
	assert_int_equal(rcr[12], 1);
	auto inquiry = inquiry_vpd_cdb(0x83, 252);
	assert_int_equal(inquiry[1], 1);
	assert_int_equal(inquiry[2], 0x83);
	assert_int_equal(inquiry[4], 252);
}

void test_sense(void **)
{
	std::vector<std::uint8_t> fixed(18, 0);
	fixed[0] = 0x70;
	fixed[2] = 0x0a; // COPY ABORTED
	fixed[12] = 0x0d;
	fixed[13] = 0x02;
	auto decoded = parse_sense(fixed);
	assert_true(decoded.has_value());
	assert_int_equal(decoded->key, 0x0a);
	assert_int_equal(decoded->asc, 0x0d);
	assert_int_equal(sense_errno(*decoded), EXDEV); // target not reachable
	assert_int_equal(sense_errno({0x0a, 0x26, 0x00}), EOPNOTSUPP);
	std::vector<std::uint8_t> descriptor = {0x72, 0x06, 0x29, 0x00};
	decoded = parse_sense(descriptor);
	assert_int_equal(decoded->key, 0x06);
	assert_int_equal(sense_errno(*decoded), EAGAIN); // UNIT ATTENTION: again
	assert_int_equal(sense_errno({0x05, 0x24, 0}), EOPNOTSUPP);
	assert_int_equal(sense_errno({0x03, 0x11, 0}), EIO);
	assert_int_equal(sense_errno({0x0d, 0, 0}), ENOSPC);
	assert_false(parse_sense(std::vector<std::uint8_t>{0x70, 0, 5}).has_value());
	assert_false(parse_sense(std::vector<std::uint8_t>{}).has_value());
}

CopyGeometry geometry(std::uint64_t source, std::uint64_t destination, std::uint64_t length,
		      std::uint64_t block)
{
	return {.source_offset = source, .destination_offset = destination, .length = length,
		.block_size = block, .source_size = 0};
}

void assert_device_plan(const CopyPlan &plan, std::vector<copyoffload_method> methods,
			std::vector<CopySegment> segments)
{
	assert_int_equal(plan.error, 0);
	assert_true(plan.methods == methods);
	assert_int_equal(plan.segments.size(), segments.size());
	for (std::size_t i = 0; i < segments.size(); i++) {
		assert_int_equal(plan.segments[i].offset, segments[i].offset);
		assert_int_equal(plan.segments[i].length, segments[i].length);
		assert_int_equal(plan.segments[i].first, segments[i].first);
	}
}

void test_device_plan(void **)
{
	// The default order: clone and copy_file_range do not apply. The
	// device gets whole pages of the destination (4 KiB here).
	CopyPlan plan = plan_device_copy(ALL, 0, geometry(100, 4196, 12000, 512));
	assert_device_plan(plan, {DEVICE, RW},
			   {{0, 3996, RW}, {3996, 4096, DEVICE}, {8092, 3908, RW}});
	assert_int_equal(plan.block_size, 4096);
	// Congruent modulo the 512-byte block only: the source side of the
	// device range is block-aligned, the destination side page-aligned.
	assert_device_plan(plan_device_copy(ALL, 0, geometry(512 * 3, 8192 + 512 * 5, 16384, 512)),
			   {DEVICE, RW}, {{0, 3 * 512, RW}, {1536, 12288, DEVICE}, {13824, 2560, RW}});
	assert_device_plan(plan_device_copy(ALL, 0, geometry(0, 4096, 8192, 4096)),
			   {DEVICE, RW}, {{0, 8192, DEVICE}});
	// A block larger than a page sets the unit.
	plan = plan_device_copy(ALL, 0, geometry(8192, 8192, 40000, 16384));
	assert_int_equal(plan.block_size, 16384);
	assert_device_plan(plan, {DEVICE, RW},
			   {{0, 8192, RW}, {8192, 16384, DEVICE}, {24576, 15424, RW}});
	// Not congruent: nothing for the device.
	assert_device_plan(plan_device_copy(ALL, 0, geometry(1, 2, 8192, 512)), {DEVICE, RW},
			   {{0, 8192, RW}});
	// Inside one block.
	assert_device_plan(plan_device_copy(ALL, 0, geometry(10, 10, 100, 512)), {DEVICE, RW},
			   {{0, 100, RW}});
	// Read/write preferred: one segment, the device as its fallback.
	const std::vector<copyoffload_method> rw_first{RW, CLONE, DEVICE};
	assert_device_plan(plan_device_copy(ALL, 0, geometry(0, 0, 8192, 512), rw_first),
			   {RW, DEVICE}, {{0, 8192, RW}});
	// Device alone: one segment, refused as a whole when unaligned.
	assert_device_plan(plan_device_copy(bit(DEVICE), 0, geometry(100, 100, 9000, 512)),
			   {DEVICE}, {{0, 9000, DEVICE}});
	assert_device_plan(plan_device_copy(bit(DEVICE), 0, geometry(0, 512, 1024, 512)),
			   {DEVICE}, {{0, 1024, DEVICE}});
	// No device in the mask or the order; clone-only: refused.
	assert_int_equal(plan_device_copy(bit(RW) | bit(CLONE), 0, geometry(0, 0, 512, 512)).error,
			 EOPNOTSUPP);
	const std::vector<copyoffload_method> no_device{CLONE, CFR, RW};
	assert_int_equal(plan_device_copy(ALL, 0, geometry(0, 0, 512, 512), no_device).error,
			 EOPNOTSUPP);
	assert_int_equal(plan_device_copy(ALL, COPYOFFLOAD_COPY_CLONE_ONLY,
					  geometry(0, 0, 512, 512)).error,
			 EOPNOTSUPP);
	// Zero length: methods, no segments.
	assert_device_plan(plan_device_copy(ALL, 0, geometry(0, 0, 0, 512)), {DEVICE, RW}, {});
}

void write_text(const std::filesystem::path &path, const std::string &text)
{
	std::filesystem::create_directories(path.parent_path());
	std::ofstream(path) << text << "\n";
}

void test_sysfs_parsing(void **state)
{
	namespace fs = std::filesystem;
	TempDir &dir = temp_dir(state);
	const fs::path root = dir.file("sys");
	// devices/.../nvme0/nvme0n1/nvme0n1p2, the controller in class nvme.
	const fs::path ctrl = root / "devices/pci0000:00/0000:00:04.0/nvme/nvme0";
	write_text(ctrl / "nvme0n1/dev", "259:0");
	write_text(ctrl / "nvme0n1/nvme0n1p2/partition", "2");
	write_text(ctrl / "nvme0n1/nvme0n1p2/start", "34816");
	write_text(ctrl / "ng0n1/dev", "242:0");
	fs::create_directories(root / "class/nvme");
	fs::create_directory_symlink(root / "class/nvme", ctrl / "subsystem");
	fs::create_directory_symlink(ctrl, ctrl / "nvme0n1/device");
	const fs::path scsi = root / "devices/platform/host0/target0:0:0/0:0:0:1";
	write_text(scsi / "block/sdb/dev", "8:16");
	fs::create_directories(root / "bus/scsi");
	fs::create_directory_symlink(root / "bus/scsi", scsi / "subsystem");
	fs::create_directory_symlink(scsi, scsi / "block/sdb/device");
	write_text(root / "devices/virtual/block/loop3/dev", "7:3");
	fs::create_directories(root / "dev/block");
	fs::create_directory_symlink(ctrl / "nvme0n1/nvme0n1p2", root / "dev/block/259:2");
	fs::create_directory_symlink(scsi / "block/sdb", root / "dev/block/8:16");
	fs::create_directory_symlink(root / "devices/virtual/block/loop3", root / "dev/block/7:3");

	auto partition = read_sysfs_block(root / "dev/block/259:2");
	assert_true(partition.ok());
	assert_int_equal(static_cast<int>(partition->kind), static_cast<int>(DeviceKind::nvme));
	assert_string_equal(partition->name.c_str(), "nvme0n1p2");
	assert_string_equal(partition->disk_name.c_str(), "nvme0n1");
	assert_true(partition->partition);
	assert_int_equal(partition->start_sectors, 34816);
	assert_true(partition->disk_dir == fs::canonical(ctrl / "nvme0n1").string());

	auto sdb = read_sysfs_block(root / "dev/block/8:16");
	assert_true(sdb.ok());
	assert_int_equal(static_cast<int>(sdb->kind), static_cast<int>(DeviceKind::scsi));
	assert_false(sdb->partition);
	assert_string_equal(sdb->disk_name.c_str(), "sdb");

	auto loop = read_sysfs_block(root / "dev/block/7:3");
	assert_true(loop.ok());
	assert_int_equal(static_cast<int>(loop->kind), static_cast<int>(DeviceKind::other));

	auto missing = read_sysfs_block(root / "dev/block/1:1");
	assert_false(missing.ok());
	write_text(ctrl / "nvme0n1/nvme0n1p3/partition", "3"); // no start
	fs::create_directory_symlink(ctrl / "nvme0n1/nvme0n1p3", root / "dev/block/259:3");
	assert_false(read_sysfs_block(root / "dev/block/259:3").ok());
}

// A backend that moves `moves` bytes of each slice, then fails with
// `error` (0: moves everything); it touches no descriptor.
class ScriptedBackend final : public CopyBackend {
public:
	ScriptedBackend(copyoffload_method method, std::uint64_t moves, int error)
		: method_(method), moves_(moves), error_(error)
	{
	}
	[[nodiscard]] copyoffload_method method() const override { return method_; }
	BackendProgress copy_slice(const CopyRange &slice) override
	{
		slices.push_back(slice);
		if (error_ == 0) {
			return {slice.length, 0};
		}
		return {std::min(moves_, slice.length), error_};
	}
	[[nodiscard]] bool is_unsupported(int error) const override
	{
		return error == EOPNOTSUPP || error == EXDEV;
	}
	std::vector<CopyRange> slices;

private:
	copyoffload_method method_;
	std::uint64_t moves_;
	int error_;
};

// The engine's result, and the slices read/write was given.
std::pair<CopyResult, std::vector<CopyRange>> engine_copy(std::uint64_t device_moves,
							  int device_error, const CopyPlan &plan,
							  std::uint64_t length)
{
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<ScriptedBackend>(DEVICE, device_moves, device_error));
	auto rw = std::make_unique<ScriptedBackend>(RW, 0, 0);
	ScriptedBackend &read_write = *rw;
	backends.push_back(std::move(rw));
	CopyEngine engine(std::move(backends));
	CopyResult result =
		engine.copy({.source = 100, .destination = 101, .length = length}, plan, {});
	return {result, read_write.slices};
}

void test_engine_hands_refused_commands_over(void **)
{
	// A command the device refuses after others completed: the completed
	// ones count for the device, the rest of the piece is read/write.
	const std::uint64_t length = 64 * 1024;
	CopyPlan plan = plan_device_copy(ALL, 0, geometry(0, 0, length, 512));
	auto [result, rw_slices] = engine_copy(8192, EOPNOTSUPP, plan, length);
	assert_int_equal(result.status, 0);
	assert_int_equal(result.bytes_done, length);
	assert_int_equal(result.bytes_by_method[DEVICE], 8192);
	assert_int_equal(result.bytes_by_method[RW], length - 8192);
	assert_false(rw_slices.empty());
	assert_int_equal(rw_slices.front().source_offset, 8192);
	// A real error after progress ends the request with the exact prefix.
	result = engine_copy(8192, EIO, plan, length).first;
	assert_int_equal(result.status, EIO);
	assert_int_equal(result.bytes_done, 8192);
	assert_int_equal(result.bytes_by_method[RW], 0);
}

void test_device_slices_stay_whole_pages(void **)
{
	// A share's largest segment need not be a multiple of a page: device
	// slices are rounded down to the plan's unit, data slices are not.
	const SliceSizes slices{.copy = 100000, .clone = 1 << 20};
	assert_int_equal(slice_limit(slices, DEVICE, 4096), 98304);
	assert_int_equal(slice_limit(slices, RW, 4096), 100000);
	assert_int_equal(slice_limit(SliceSizes{.copy = 65536, .clone = 0}, DEVICE, 16384), 65536);
}

void test_page_range(void **)
{
	PageRange r = page_range(4096 + 512, 1024, 4096);
	assert_int_equal(r.offset, 4096);
	assert_int_equal(r.length, 4096);
	r = page_range(100, 8192, 4096);
	assert_int_equal(r.offset, 0);
	assert_int_equal(r.length, 12288);
	r = page_range(8192, 8192, 4096);
	assert_int_equal(r.offset, 8192);
	assert_int_equal(r.length, 8192);
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_identify_parsing),
		cmocka_unit_test(test_copy_support),
		cmocka_unit_test(test_nvme_split),
		cmocka_unit_test(test_nvme_encoding),
		cmocka_unit_test(test_nvme_status),
		cmocka_unit_test(test_scsi_parameters),
		cmocka_unit_test(test_scsi_designator),
		cmocka_unit_test(test_xcopy_list),
		cmocka_unit_test(test_sense),
		cmocka_unit_test(test_device_plan),
		cmocka_unit_test_setup_teardown(test_sysfs_parsing, make_temp_dir, remove_temp_dir),
		cmocka_unit_test(test_page_range),
		cmocka_unit_test(test_engine_hands_refused_commands_over),
		cmocka_unit_test(test_device_slices_stay_whole_pages),
	};
	return cmocka_run_group_tests(tests, nullptr, nullptr);
}
