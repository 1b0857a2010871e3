// Holes: the engine copies only where the source has data and recreates
// its holes in the destination (punching where the destination had data),
// and a range that ends in a hole leaves the destination exactly as long
// as a write of the range would, never longer and never shorter than it
// was. On real files of $TMPDIR (ext4 here; any filesystem with
// SEEK_HOLE), with every data method and pieces smaller than the holes.

#include "copy_service.hpp"
#include "sparse_files.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t block = 4 * KiB;

// Data at [0, 64K) and [2M, 2M + 100K); holes elsewhere up to 4 MiB.
struct Region {
	std::uint64_t offset, length;
};
const std::vector<Region> source_data{{0, 64 * KiB}, {2 * MiB, 100 * KiB}};
constexpr std::uint64_t source_size = 4 * MiB;

void pwrite_all(int fd, const std::vector<unsigned char> &bytes, std::uint64_t offset)
{
	assert_int_equal(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
			 static_cast<ssize_t>(bytes.size()));
}

// The sparse source; its bytes (zeros in the holes) come back.
std::vector<unsigned char> make_source(const std::string &path)
{
	std::vector<unsigned char> bytes(source_size, 0);
	UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
	unsigned seed = 3;
	for (const Region &region : source_data) {
		auto data = pattern(region.length, seed++);
		pwrite_all(fd.get(), data, region.offset);
		std::copy(data.begin(), data.end(), bytes.begin() + static_cast<long>(region.offset));
	}
	assert_int_equal(::ftruncate(fd.get(), static_cast<off_t>(source_size)), 0);
	assert_int_equal(::fsync(fd.get()), 0);
	return bytes;
}

std::uint64_t allocated(const std::string &path)
{
	struct stat status{};
	assert_int_equal(::stat(path.c_str(), &status), 0);
	return static_cast<std::uint64_t>(status.st_blocks) * 512;
}

std::uint64_t size_of(const std::string &path)
{
	struct stat status{};
	assert_int_equal(::stat(path.c_str(), &status), 0);
	return static_cast<std::uint64_t>(status.st_size);
}

// Whether the filesystem reports holes at all (SEEK_HOLE before the end).
bool reports_holes(const std::string &path)
{
	UniqueFd fd = open_file(path, O_RDONLY);
	off_t hole = ::lseek(fd.get(), 0, SEEK_HOLE);
	return hole >= 0 && static_cast<std::uint64_t>(hole) < source_size;
}

CopyOutcome copy(const std::string &from, const std::string &to, std::uint64_t src_off,
		 std::uint64_t dst_off, std::uint64_t length, std::uint32_t methods)
{
	UniqueFd source = open_file(from, O_RDONLY);
	UniqueFd destination = open_file(to, O_WRONLY | O_CREAT);
	// Pieces of 256 KiB: holes and data span several of them.
	return execute_copy(copy_request(src_off, dst_off, length, methods), source.get(),
			    destination.get(), {},
			    CopySettings{.slices = SliceSizes{.copy = 256 * KiB}});
}

const std::uint32_t data_methods[] = {bit(CFR) | bit(RW), bit(RW), ALL};

void test_holes_stay_holes(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = make_source(dir.file("src"));
	if (!reports_holes(dir.file("src"))) {
		skip();
	}
	const std::uint64_t source_allocated = allocated(dir.file("src"));
	for (std::uint32_t methods : data_methods) {
		::unlink(dir.file("dst").c_str());
		CopyOutcome outcome = copy(dir.file("src"), dir.file("dst"), 0, 0, source_size,
					   methods);
		assert_int_equal(outcome.result.status, 0);
		assert_true(outcome.result.bytes_done == source_size);
		assert_true(read_file(dir.file("dst")) == bytes);
		// The source ends in a hole: the size comes from the range, and
		// at most one block more than the source's data is allocated
		// (the block that makes the file long enough).
		assert_true(size_of(dir.file("dst")) == source_size);
		if (allocated(dir.file("dst")) > source_allocated + block) {
			fail_msg("methods %#x: %llu bytes allocated, the source has %llu",
				 methods, static_cast<unsigned long long>(allocated(dir.file("dst"))),
				 static_cast<unsigned long long>(source_allocated));
		}
	}
}

void test_destination_data_is_punched(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = make_source(dir.file("src"));
	if (!reports_holes(dir.file("src"))) {
		skip();
	}
	for (std::uint32_t methods : data_methods) {
		write_file(dir.file("dst"), pattern(source_size, 99)); // no holes, no zeros
		const std::uint64_t before = allocated(dir.file("dst"));
		CopyOutcome outcome = copy(dir.file("src"), dir.file("dst"), 0, 0, source_size,
					   methods);
		assert_int_equal(outcome.result.status, 0);
		assert_true(read_file(dir.file("dst")) == bytes);
		assert_true(allocated(dir.file("dst")) < before / 2);
	}
}

void test_range_past_destination_end(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = make_source(dir.file("src"));
	for (std::uint32_t methods : data_methods) {
		::unlink(dir.file("dst").c_str());
		// [1M, 3M) of the source starts and ends in holes; it lands at
		// 5M of an empty destination, which becomes exactly 7M long.
		CopyOutcome outcome = copy(dir.file("src"), dir.file("dst"), 1 * MiB, 5 * MiB,
					   2 * MiB, methods);
		assert_int_equal(outcome.result.status, 0);
		assert_true(outcome.result.bytes_done == 2 * MiB);
		auto copied = read_file(dir.file("dst"));
		assert_int_equal(copied.size(), 7 * MiB);
		for (std::uint64_t i = 0; i < 5 * MiB; i++) {
			if (copied[i] != 0) {
				fail_msg("byte %llu before the range is not 0",
					 static_cast<unsigned long long>(i));
			}
		}
		assert_memory_equal(copied.data() + 5 * MiB, bytes.data() + 1 * MiB, 2 * MiB);
	}
}

void test_hole_never_shortens_the_destination(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = make_source(dir.file("src"));
	for (std::uint32_t methods : data_methods) {
		auto longer = pattern(10 * MiB, 7);
		write_file(dir.file("dst"), longer);
		CopyOutcome outcome = copy(dir.file("src"), dir.file("dst"), 0, 0, source_size,
					   methods);
		assert_int_equal(outcome.result.status, 0);
		auto copied = read_file(dir.file("dst"));
		assert_int_equal(copied.size(), 10 * MiB);
		assert_memory_equal(copied.data(), bytes.data(), source_size);
		assert_memory_equal(copied.data() + source_size, longer.data() + source_size,
				    10 * MiB - source_size);
	}
}

// A range that runs past the source's end through a trailing hole: the
// hole up to the end counts, then ENODATA, and the destination holds
// exactly the bytes reported.
void test_hole_then_source_end(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = make_source(dir.file("src"));
	for (std::uint32_t methods : data_methods) {
		::unlink(dir.file("dst").c_str());
		CopyOutcome outcome = copy(dir.file("src"), dir.file("dst"), 3 * MiB, 0, 2 * MiB,
					   methods);
		assert_int_equal(outcome.result.status, ENODATA);
		assert_true(outcome.result.bytes_done == 1 * MiB);
		auto copied = read_file(dir.file("dst"));
		assert_int_equal(copied.size(), 1 * MiB);
		assert_memory_equal(copied.data(), bytes.data() + 3 * MiB, 1 * MiB);
	}
}

// A destination that cannot be extended to the end of the done bytes (a
// trailing hole of the source): the done bytes shrink to its end and the
// result takes the extend's error, also over an error it had (ENODATA at
// the source's end described where the bytes used to end).
void test_trailing_hole_not_extended(void **)
{
	struct FullDisk final : SparseFiles {
		std::uint64_t size_after = 0;
		Region region_at(int, std::uint64_t, std::uint64_t limit) override
		{
			return {limit, false};
		}
		int make_hole(int, std::uint64_t, std::uint64_t) override { return 0; }
		int extend_to(int, std::uint64_t, std::uint64_t &size) override
		{
			size = size_after;
			return ENOSPC;
		}
	} disk;
	disk.size_after = 12288 + 4000; // the destination's size: 4000 bytes of the range

	for (int earlier : {0, ENODATA}) {
		CopyResult result;
		result.status = earlier;
		result.bytes_done = 16059;
		result.bytes_by_method[CFR] = 16059;
		result.trailing_hole = 12059;
		if (earlier != 0) {
			result.failed_method = COPYOFFLOAD_METHOD_COPY_FILE_RANGE;
		}
		settle_trailing_hole(12288, -1, disk, result);
		assert_int_equal(result.status, ENOSPC);
		assert_true(result.bytes_done == 4000);
		assert_true(result.bytes_by_method[CFR] == 4000);
		assert_false(result.failed_method.has_value());
	}

	// Nothing taken back: an earlier error stands.
	disk.size_after = 12288 + 16059;
	CopyResult result;
	result.status = ENODATA;
	result.bytes_done = 16059;
	result.bytes_by_method[CFR] = 16059;
	result.trailing_hole = 100;
	settle_trailing_hole(12288, -1, disk, result);
	assert_int_equal(result.status, ENODATA);
	assert_true(result.bytes_done == 16059);
}

// RealSparseFiles on its own: what region_at reports.
void test_region_at(void **state)
{
	TempDir &dir = temp_dir(state);
	make_source(dir.file("src"));
	if (!reports_holes(dir.file("src"))) {
		skip();
	}
	UniqueFd fd = open_file(dir.file("src"), O_RDONLY);
	RealSparseFiles sparse;
	auto region = sparse.region_at(fd.get(), 0, source_size);
	assert_false(region.hole);
	assert_true(region.length >= 64 * KiB && region.length < 2 * MiB);
	region = sparse.region_at(fd.get(), 1 * MiB, source_size);
	assert_true(region.hole);
	assert_true(region.length == 1 * MiB); // up to the data at 2M
	region = sparse.region_at(fd.get(), 1 * MiB, 4096);
	assert_true(region.hole && region.length == 4096); // the limit
	region = sparse.region_at(fd.get(), 3 * MiB, 8 * MiB);
	assert_true(region.hole && region.length == 1 * MiB); // to the end of the file
	region = sparse.region_at(fd.get(), 5 * MiB, 100);
	assert_false(region.hole); // past the end: let the copy say ENODATA
	assert_true(region.length == 100);
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, make_temp_dir, remove_temp_dir)

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		WITH_DIR(test_holes_stay_holes),
		WITH_DIR(test_destination_data_is_punched),
		WITH_DIR(test_range_past_destination_end),
		WITH_DIR(test_hole_never_shortens_the_destination),
		WITH_DIR(test_hole_then_source_end),
		cmocka_unit_test(test_trailing_hole_not_extended),
		WITH_DIR(test_region_at),
	};
	return cmocka_run_group_tests_name("copyoffloadd_sparse_copy", tests, nullptr, nullptr);
}
