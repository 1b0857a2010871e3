// The clone backend, the clone-first plans and preallocation on real
// filesystems: small loop-mounted XFS (reflink=1), btrfs and ext4 images.
// Needs root, mkfs.xfs
// and loop devices; exits 77 (skip) otherwise. btrfs and ext4 cases skip
// on their own when their mkfs is missing.
//
// Everything is mounted inside a private mount namespace of this process,
// with a fresh tmpfs over $TMPDIR (or /tmp) for the images and mount
// points: when the process exits, however it exits (SIGKILL included), the
// kernel drops the mounts, the loop devices (attached with autoclear)
// detach themselves and no file is left behind. Normal exits also unmount
// explicitly.

#include "copy_service.hpp"
#include "descriptor_check.hpp"
#include "preallocation.hpp"
#include "sparse_files.hpp"

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;

namespace {

struct Filesystem {
	const char *type;
	const char *mkfs; // command line, the image's path appended
	std::uint64_t image_size;
	std::string mount_point;
	bool mounted = false;

	[[nodiscard]] std::string path(const std::string &name) const
	{
		return mount_point + "/" + name;
	}
};

Filesystem xfs{"xfs", "mkfs.xfs -q -m reflink=1", 300 * MiB, {}};
Filesystem btrfs{"btrfs", "mkfs.btrfs -q", 256 * MiB, {}};
Filesystem ext4{"ext4", "mkfs.ext4 -q -F", 64 * MiB, {}};

bool run_quietly(const std::string &command)
{
	return std::system(("{ " + command + "; } >/dev/null 2>&1").c_str()) == 0;
}

std::string shell_quoted(const std::string &text)
{
	return "'" + text + "'"; // paths from mkdtemp: no quotes inside
}

// Makes an image of fs.image_size (sparse), formats and loop-mounts it
// under `dir`, then unlinks the image. False, with a reason, if not.
bool mount_filesystem(const TempDir &dir, Filesystem &fs)
{
	std::string image = dir.file(std::string(fs.type) + ".img");
	fs.mount_point = dir.file(fs.type);
	{
		copyoffload::UniqueFd fd(::open(image.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		if (!fd.valid() || ::ftruncate(fd.get(), static_cast<off_t>(fs.image_size)) != 0) {
			std::fprintf(stderr, "%s: cannot create %s\n", fs.type, image.c_str());
			return false;
		}
	}
	bool ok = run_quietly(std::string(fs.mkfs) + " " + shell_quoted(image));
	if (!ok) {
		std::fprintf(stderr, "%s: %s failed\n", fs.type, fs.mkfs);
	} else if (::mkdir(fs.mount_point.c_str(), 0700) != 0 ||
		   !run_quietly("mount -o loop " + shell_quoted(image) + " " + shell_quoted(fs.mount_point))) {
		std::fprintf(stderr, "%s: cannot loop-mount the image\n", fs.type);
		ok = false;
	}
	::unlink(image.c_str()); // the loop device keeps it while mounted
	fs.mounted = ok;
	return ok;
}

void unmount_filesystem(Filesystem &fs)
{
	if (fs.mounted && ::umount2(fs.mount_point.c_str(), 0) != 0) {
		std::fprintf(stderr, "%s: umount: %s; detaching lazily\n", fs.type,
			     std::strerror(errno));
		::umount2(fs.mount_point.c_str(), MNT_DETACH);
	}
	fs.mounted = false;
}

Filesystem &filesystem(void **state)
{
	auto &fs = *static_cast<Filesystem *>(*state);
	if (!fs.mounted) {
		skip();
	}
	return fs;
}

/* --- helpers ---------------------------------------------------------- */

void fsync_file(const std::string &path)
{
	UniqueFd fd = open_file(path, O_RDONLY);
	assert_int_equal(::fsync(fd.get()), 0);
}

std::vector<unsigned char> make_file(const std::string &path, std::size_t size, unsigned seed)
{
	auto bytes = pattern(size, seed);
	write_file(path, bytes);
	return bytes;
}

CopyOutcome copy_between(const std::string &source_path, const std::string &destination_path,
			 const copyoffload_copy_request &request, SliceSizes slices = {})
{
	UniqueFd source = open_file(source_path, O_RDONLY);
	UniqueFd destination = open_file(destination_path, O_WRONLY | O_CREAT);
	return execute_copy(request, source.get(), destination.get(), {}, {.slices = slices});
}

void assert_bytes(const CopyResult &result, int status, std::uint64_t clone, std::uint64_t cfr,
		  std::uint64_t rw)
{
	if (result.status != status || result.bytes_by_method[CLONE] != clone ||
	    result.bytes_by_method[CFR] != cfr || result.bytes_by_method[RW] != rw) {
		fail_msg("status %d clone=%llu copy_file_range=%llu read_write=%llu, expected "
			 "status %d clone=%llu copy_file_range=%llu read_write=%llu",
			 result.status, (unsigned long long)result.bytes_by_method[CLONE],
			 (unsigned long long)result.bytes_by_method[CFR],
			 (unsigned long long)result.bytes_by_method[RW], status,
			 (unsigned long long)clone, (unsigned long long)cfr,
			 (unsigned long long)rw);
	}
	assert_true(result.bytes_done == clone + cfr + rw);
}

// Bytes of [offset, offset + length) of `path` that FIEMAP reports in
// extents flagged `flag` (0: in any extent); `fiemap_flags`
// FIEMAP_FLAG_SYNC writes the file back first.
std::uint64_t flagged_bytes(const std::string &path, std::uint64_t offset, std::uint64_t length,
			    std::uint32_t flag, std::uint32_t fiemap_flags)
{
	constexpr unsigned slots = 128;
	UniqueFd fd = open_file(path, O_RDONLY);
	std::vector<std::uint64_t> buffer(
		(sizeof(fiemap) + slots * sizeof(fiemap_extent)) / sizeof(std::uint64_t) + 1);
	auto *map = reinterpret_cast<fiemap *>(buffer.data());
	const std::uint64_t end = offset + length;
	std::uint64_t shared = 0;
	for (std::uint64_t start = offset; start < end;) {
		std::fill(buffer.begin(), buffer.end(), 0);
		map->fm_start = start;
		map->fm_length = end - start;
		map->fm_flags = fiemap_flags;
		map->fm_extent_count = slots;
		assert_int_equal(::ioctl(fd.get(), FS_IOC_FIEMAP, map), 0);
		if (map->fm_mapped_extents == 0) {
			break;
		}
		const fiemap_extent *last = nullptr;
		for (unsigned i = 0; i < map->fm_mapped_extents; i++) {
			last = &map->fm_extents[i];
			std::uint64_t lo = std::max<std::uint64_t>(last->fe_logical, start);
			std::uint64_t hi = std::min<std::uint64_t>(
				last->fe_logical + last->fe_length, end);
			if ((flag == 0 || (last->fe_flags & flag) != 0) && hi > lo) {
				shared += hi - lo;
			}
		}
		if ((last->fe_flags & FIEMAP_EXTENT_LAST) != 0) {
			break;
		}
		start = last->fe_logical + last->fe_length;
	}
	return shared;
}

// Bytes of the range in extents shared with another file, after writeback.
std::uint64_t shared_bytes(const std::string &path, std::uint64_t offset, std::uint64_t length)
{
	return flagged_bytes(path, offset, length, FIEMAP_EXTENT_SHARED, FIEMAP_FLAG_SYNC);
}

std::uint64_t allocated_bytes(const std::string &path)
{
	struct stat status{};
	assert_int_equal(::stat(path.c_str(), &status), 0);
	return static_cast<std::uint64_t>(status.st_blocks) * 512;
}

/* --- reflink filesystems (XFS, btrfs) --------------------------------- */

void test_aligned_range_is_cloned(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("aligned-src"), 8 * MiB, 1);
	CopyOutcome outcome = copy_between(fs.path("aligned-src"), fs.path("aligned-dst"),
					   copy_request(MiB, 2 * MiB, 6 * MiB));
	assert_bytes(outcome.result, 0, 6 * MiB, 0, 0);
	assert_true(shared_bytes(fs.path("aligned-dst"), 2 * MiB, 6 * MiB) == 6 * MiB);
	assert_true(shared_bytes(fs.path("aligned-src"), MiB, 6 * MiB) == 6 * MiB);
	auto copied = read_file(fs.path("aligned-dst"));
	assert_int_equal(copied.size(), 8 * MiB);
	assert_memory_equal(copied.data() + 2 * MiB, bytes.data() + MiB, 6 * MiB);
	assert_memory_equal(copied.data(), std::vector<unsigned char>(2 * MiB).data(), 2 * MiB);
}

void test_unaligned_range_clones_its_middle(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("unaligned-src"), 4 * MiB, 2);
	CopyOutcome outcome = copy_between(fs.path("unaligned-src"), fs.path("unaligned-dst"),
					   copy_request(1000, 1000, 3 * MiB));
	const std::uint64_t head = 4096 - 1000;
	const std::uint64_t middle = (3 * MiB - head) / 4096 * 4096;
	assert_bytes(outcome.result, 0, middle, 3 * MiB - middle, 0);
	assert_true(shared_bytes(fs.path("unaligned-dst"), 4096, middle) == middle);
	auto copied = read_file(fs.path("unaligned-dst"));
	assert_int_equal(copied.size(), 1000 + 3 * MiB);
	assert_memory_equal(copied.data() + 1000, bytes.data() + 1000, 3 * MiB);
}

void test_tail_at_source_eof(void **state)
{
	Filesystem &fs = filesystem(state);
	const std::uint64_t size = 5 * MiB + 100;
	auto bytes = make_file(fs.path("eof-src"), size, 3);

	// Into a new file: the EOF block is cloned too.
	CopyOutcome outcome = copy_between(fs.path("eof-src"), fs.path("eof-dst"),
					   copy_request(0, 0, size));
	assert_bytes(outcome.result, 0, size, 0, 0);
	assert_true(read_file(fs.path("eof-dst")) == bytes);

	// Into the middle of a longer file: the kernel will not clone the EOF
	// block there (it would zero the rest of that block), so the tail
	// alone is copied and the bytes after it survive.
	auto old = make_file(fs.path("eof-long"), 8 * MiB, 4);
	outcome = copy_between(fs.path("eof-src"), fs.path("eof-long"), copy_request(0, 0, size));
	assert_bytes(outcome.result, 0, 5 * MiB, 100, 0);
	auto after = read_file(fs.path("eof-long"));
	assert_int_equal(after.size(), 8 * MiB);
	assert_memory_equal(after.data(), bytes.data(), size);
	assert_memory_equal(after.data() + size, old.data() + size, 8 * MiB - size);
}

void test_clone_only(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("only-src"), 4 * MiB + 100, 5);

	// Aligned: cloned whole.
	CopyOutcome outcome = copy_between(fs.path("only-src"), fs.path("only-dst"),
					   copy_request(0, 0, 4 * MiB, ALL, CLONE_ONLY));
	assert_bytes(outcome.result, 0, 4 * MiB, 0, 0);
	assert_true(shared_bytes(fs.path("only-dst"), 0, 4 * MiB) == 4 * MiB);

	// Up to an unaligned EOF, into a new file.
	outcome = copy_between(fs.path("only-src"), fs.path("only-whole"),
			       copy_request(0, 0, 4 * MiB + 100, bit(CLONE), CLONE_ONLY));
	assert_bytes(outcome.result, 0, 4 * MiB + 100, 0, 0);
	assert_true(read_file(fs.path("only-whole")) == bytes);
}

void test_clone_only_refusals_change_nothing(void **state)
{
	Filesystem &fs = filesystem(state);
	make_file(fs.path("refuse-src"), 256 * 1024, 6);
	auto old = make_file(fs.path("refuse-dst"), 256 * 1024, 7);
	struct {
		std::uint64_t src, dst, length;
	} refused[] = {
		{1000, 1000, 64 * 1024},   // misaligned offsets
		{0, 512, 64 * 1024},       // different phases
		{4096, 4096, 5000},        // unaligned length, not at EOF
		{0, 4096, 256 * 1024 - 1}, // ditto, one byte short of EOF
	};
	for (const auto &r : refused) {
		CopyOutcome outcome = copy_between(fs.path("refuse-src"), fs.path("refuse-dst"),
						   copy_request(r.src, r.dst, r.length, ALL, CLONE_ONLY));
		assert_bytes(outcome.result, EINVAL, 0, 0, 0);
		assert_true(read_file(fs.path("refuse-dst")) == old);
	}
	// Past the source's EOF: ENODATA, as for every other copy.
	CopyOutcome outcome = copy_between(fs.path("refuse-src"), fs.path("refuse-dst"),
					   copy_request(0, 0, 512 * 1024, ALL, CLONE_ONLY));
	assert_bytes(outcome.result, ENODATA, 0, 0, 0);
	assert_true(read_file(fs.path("refuse-dst")) == old);
}

// A clone-only copy is cut into slices that clone on their own: a range
// the kernel refuses as a whole is refused before any slice clones, so a
// refusal changes nothing (the first slices used to replace destination
// blocks before the last one failed).
void test_clone_only_sliced(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("sliced-src"), 4 * MiB + 100, 8);
	auto old = make_file(fs.path("sliced-dst"), 6 * MiB, 11);
	struct {
		std::uint64_t length;
		const char *why;
	} refused[] = {
		{3 * MiB + 100, "unaligned length, not at the source's EOF"},
		{4 * MiB + 100, "to the source's EOF, but inside the destination"},
	};
	for (const auto &r : refused) {
		CopyOutcome outcome = copy_between(fs.path("sliced-src"), fs.path("sliced-dst"),
						   copy_request(0, 0, r.length, ALL, CLONE_ONLY),
						   {.clone = MiB});
		assert_bytes(outcome.result, EINVAL, 0, 0, 0);
		assert_string_equal(std::string(outcome.rejection).c_str(),
				    "clone length not block-aligned");
		assert_true(read_file(fs.path("sliced-dst")) == old);
	}
	// To the source's EOF and past the destination's: cloned, slice by slice.
	CopyOutcome outcome = copy_between(fs.path("sliced-src"), fs.path("sliced-dst"),
					   copy_request(0, 2 * MiB, 4 * MiB + 100, ALL, CLONE_ONLY),
					   {.clone = MiB});
	assert_bytes(outcome.result, 0, 4 * MiB + 100, 0, 0);
	auto copied = read_file(fs.path("sliced-dst"));
	assert_int_equal(copied.size(), 6 * MiB + 100);
	assert_memory_equal(copied.data(), old.data(), 2 * MiB);
	assert_memory_equal(copied.data() + 2 * MiB, bytes.data(), bytes.size());
}

void test_range_past_source_eof(void **state)
{
	Filesystem &fs = filesystem(state);
	const std::uint64_t size = MiB + 100;
	auto bytes = make_file(fs.path("short-src"), size, 9);
	// The clone of [0, 2 MiB) is refused; the copy stops at the EOF.
	CopyOutcome outcome = copy_between(fs.path("short-src"), fs.path("short-dst"),
					   copy_request(0, 0, 2 * MiB));
	assert_int_equal(outcome.result.status, ENODATA);
	assert_true(outcome.result.bytes_done == size);
	assert_true(outcome.result.bytes_by_method[CLONE] == 0);
	assert_true(read_file(fs.path("short-dst")) == bytes);
}

void test_mask_with_only_clone(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("mask-src"), 2 * MiB, 10);
	// The aligned part is cloned; the tail has no method left.
	CopyOutcome outcome = copy_between(fs.path("mask-src"), fs.path("mask-dst"),
					   copy_request(0, 0, MiB + 10, bit(CLONE)));
	assert_bytes(outcome.result, EINVAL, MiB, 0, 0);
	auto copied = read_file(fs.path("mask-dst"));
	assert_int_equal(copied.size(), MiB);
	assert_memory_equal(copied.data(), bytes.data(), MiB);
}

// Not an assertion: what one FICLONERANGE costs here.
void test_measure_one_clone(void **state)
{
	Filesystem &fs = filesystem(state);
	const std::uint64_t size = 64 * MiB;
	make_file(fs.path("timed-src"), size, 11);
	fsync_file(fs.path("timed-src"));
	UniqueFd source = open_file(fs.path("timed-src"), O_RDONLY);
	UniqueFd destination = open_file(fs.path("timed-dst"), O_RDWR | O_CREAT);
	auto started = std::chrono::steady_clock::now();
	CopyOutcome outcome = execute_copy(copy_request(0, 0, size, ALL, CLONE_ONLY),
					   source.get(), destination.get(), {});
	auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
		std::chrono::steady_clock::now() - started);
	assert_bytes(outcome.result, 0, size, 0, 0);
	print_message("%s: one FICLONERANGE of %llu MiB took %lld us\n", fs.type,
		      (unsigned long long)(size / MiB), (long long)elapsed.count());
	::unlink(fs.path("timed-src").c_str());
	::unlink(fs.path("timed-dst").c_str());
}

/* --- no reflink: ext4, and across filesystems ------------------------- */

void test_ext4_cannot_clone(void **state)
{
	Filesystem &fs = filesystem(state);
	auto bytes = make_file(fs.path("src"), 4 * MiB, 12);
	auto old = make_file(fs.path("dst"), 64 * 1024, 13);

	CopyOutcome outcome = copy_between(fs.path("src"), fs.path("dst"),
					   copy_request(0, 0, 4 * MiB, ALL, CLONE_ONLY));
	assert_bytes(outcome.result, EOPNOTSUPP, 0, 0, 0);
	assert_true(read_file(fs.path("dst")) == old);

	// Without the flag the same request falls back to copy_file_range.
	outcome = copy_between(fs.path("src"), fs.path("dst"), copy_request(0, 0, 4 * MiB));
	assert_bytes(outcome.result, 0, 0, 4 * MiB, 0);
	assert_true(read_file(fs.path("dst")) == bytes);
}

void test_across_filesystems(void **)
{
	if (!xfs.mounted || !ext4.mounted) {
		skip();
	}
	auto bytes = make_file(xfs.path("cross-src"), 2 * MiB + 7, 14);
	CopyOutcome outcome = copy_between(xfs.path("cross-src"), ext4.path("cross-dst"),
					   copy_request(0, 0, 2 * MiB + 7, ALL, CLONE_ONLY));
	assert_bytes(outcome.result, EXDEV, 0, 0, 0);

	outcome = copy_between(xfs.path("cross-src"), ext4.path("cross-dst"),
			       copy_request(0, 0, 2 * MiB + 7));
	assert_int_equal(outcome.result.status, 0);
	assert_true(outcome.result.bytes_by_method[CLONE] == 0);
	assert_true(outcome.result.bytes_done == 2 * MiB + 7);
	assert_true(read_file(ext4.path("cross-dst")) == bytes);
}

/* --- preallocation (ext4 only) --------------------------------------- */

// A source with data at [k * 64K, k * 64K + 4K) for k < regions, holes
// between, 64K per region long in all.
std::vector<unsigned char> make_spotted_file(const std::string &path, unsigned regions)
{
	std::vector<unsigned char> bytes(regions * 64 * 1024, 0);
	UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
	for (unsigned k = 0; k < regions; k++) {
		auto data = pattern(4096, 20 + k);
		const auto offset = static_cast<std::size_t>(k) * 64 * 1024;
		assert_int_equal(::pwrite(fd.get(), data.data(), data.size(),
					  static_cast<off_t>(offset)),
				 4096);
		std::copy(data.begin(), data.end(), bytes.begin() + static_cast<long>(offset));
	}
	assert_int_equal(::ftruncate(fd.get(), static_cast<off_t>(bytes.size())), 0);
	assert_int_equal(::fsync(fd.get()), 0);
	return bytes;
}

std::uint64_t preallocate(const std::string &source_path, const std::string &destination_path,
			  std::uint64_t length)
{
	UniqueFd source = open_file(source_path, O_RDONLY);
	UniqueFd destination = open_file(destination_path, O_WRONLY | O_CREAT);
	RealSparseFiles sparse;
	return preallocate_destination({.source = source.get(),
					.destination = destination.get(),
					.length = length},
				       sparse);
}

void test_only_ext4_preallocates(void **state)
{
	Filesystem &fs = filesystem(state);
	make_file(fs.path("kind-src"), 4096, 30);
	UniqueFd source = open_file(fs.path("kind-src"), O_RDONLY);
	UniqueFd destination = open_file(fs.path("kind-dst"), O_WRONLY | O_CREAT);
	auto checked = check_descriptor_pair(source.get(), destination.get());
	assert_true(std::holds_alternative<PairIdentity>(checked));
	assert_int_equal(std::get<PairIdentity>(checked).destination_preallocates,
			 std::string(fs.type) == "ext4");
}

// The source's data is reserved, its holes are not, and the size stays.
void test_preallocation_keeps_holes_and_size(void **state)
{
	Filesystem &fs = filesystem(state);
	make_spotted_file(fs.path("spots-src"), 4);
	assert_true(preallocate(fs.path("spots-src"), fs.path("spots-dst"), 4 * 64 * 1024) ==
		    4 * 4096);
	assert_true(allocated_bytes(fs.path("spots-dst")) == 4 * 4096);
	assert_true(read_file(fs.path("spots-dst")).empty());
}

void test_preallocation_is_bounded(void **state)
{
	Filesystem &fs = filesystem(state);
	// A sparse source of more regions than are reserved one by one.
	make_spotted_file(fs.path("many-src"), max_preallocated_regions + 4);
	assert_true(preallocate(fs.path("many-src"), fs.path("many-dst"),
				(max_preallocated_regions + 4) * 64 * 1024) ==
		    max_preallocated_regions * 4096);
	// A request longer than any SMB request is not preallocated at all
	// (the source: 1 MiB of data, then a hole to past the bound).
	make_file(fs.path("long-src"), MiB, 31);
	assert_int_equal(::truncate(fs.path("long-src").c_str(),
				    static_cast<off_t>(max_preallocation + 4096)),
			 0);
	assert_true(preallocate(fs.path("long-src"), fs.path("long-dst"),
				max_preallocation + 4096) == 0);
	assert_true(allocated_bytes(fs.path("long-dst")) == 0);
	// Nothing past the source's end, where the copy writes nothing: a
	// range past the bound that the source ends within is reserved.
	make_file(fs.path("short-src"), MiB, 32);
	assert_true(preallocate(fs.path("short-src"), fs.path("past-dst"),
				max_preallocation + 4096) == MiB);
	assert_true(allocated_bytes(fs.path("past-dst")) == MiB);
	// A request shorter than the lower bound is not preallocated, nor is
	// one whose source ends before the bound.
	assert_true(preallocate(fs.path("short-src"), fs.path("small-dst"),
				min_preallocation - 4096) == 0);
	assert_true(allocated_bytes(fs.path("small-dst")) == 0);
	make_file(fs.path("tiny-src"), min_preallocation - 4096, 33);
	assert_true(preallocate(fs.path("tiny-src"), fs.path("tiny-dst"), MiB) == 0);
	assert_true(allocated_bytes(fs.path("tiny-dst")) == 0);
}

// A copy writes into reserved blocks (unwritten extents until writeback)
// instead of delayed allocation's, with the same bytes and holes; a share
// that turned preallocation off gets delayed allocation.
void test_copy_preallocates(void **state)
{
	Filesystem &fs = filesystem(state);
	// To the end of the last data: a trailing hole would add a block.
	const std::uint64_t length = 7 * 64 * 1024 + 4096;
	auto bytes = make_spotted_file(fs.path("copy-src"), 8);
	bytes.resize(length);
	::sync(); // nothing else's writeback in the window before FIEMAP
	for (bool preallocate : {true, false}) {
		const std::string destination = fs.path(preallocate ? "copy-dst" : "copy-dst-off");
		UniqueFd source = open_file(fs.path("copy-src"), O_RDONLY);
		UniqueFd target = open_file(destination, O_WRONLY | O_CREAT);
		CopyOutcome outcome = execute_copy(copy_request(0, 0, length), source.get(),
						   target.get(), {},
						   {.preallocate = preallocate});
		assert_int_equal(outcome.result.status, 0);
		assert_true(outcome.result.bytes_done == length);
		const std::uint64_t delayed =
			flagged_bytes(destination, 0, length, FIEMAP_EXTENT_DELALLOC, 0);
		if (preallocate) {
			assert_true(delayed == 0);
			assert_true(flagged_bytes(destination, 0, length, FIEMAP_EXTENT_UNWRITTEN,
						  0) == 8 * 4096);
		} else {
			assert_true(delayed == 8 * 4096);
		}
		assert_true(read_file(destination) == bytes);
		assert_true(flagged_bytes(destination, 0, length, 0, FIEMAP_FLAG_SYNC) == 8 * 4096);
	}
}

// One test on one filesystem, named after both.
#define ON(test, fs) CMUnitTest{#fs ": " #test, test, nullptr, nullptr, &(fs)}

} // namespace

int main()
{
	if (::geteuid() != 0) {
		std::fprintf(stderr, "skipped: loop mounts need root\n");
		return 77;
	}
	if (!run_quietly("command -v mkfs.xfs && command -v mount")) {
		std::fprintf(stderr, "skipped: mkfs.xfs or mount missing\n");
		return 77;
	}
	// Mounts made from here on are this process's alone and vanish with it.
	const std::string base = temp_base();
	if (::unshare(CLONE_NEWNS) != 0 ||
	    ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
	    ::mount("copyoffload-test", base.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
		    "mode=1777,size=1g") != 0) {
		std::fprintf(stderr, "skipped: no private mount namespace and tmpfs: %s\n",
			     std::strerror(errno));
		return 77;
	}
	int failures;
	{
		TempDir dir;
		if (!mount_filesystem(dir, xfs)) {
			std::fprintf(stderr, "skipped: no loop-mounted XFS\n");
			return 77;
		}
		if (run_quietly("command -v mkfs.btrfs")) {
			mount_filesystem(dir, btrfs);
		}
		if (run_quietly("command -v mkfs.ext4")) {
			mount_filesystem(dir, ext4);
		}

		const CMUnitTest tests[] = {
			ON(test_aligned_range_is_cloned, xfs),
			ON(test_unaligned_range_clones_its_middle, xfs),
			ON(test_tail_at_source_eof, xfs),
			ON(test_clone_only, xfs),
			ON(test_clone_only_refusals_change_nothing, xfs),
			ON(test_clone_only_sliced, xfs),
			ON(test_range_past_source_eof, xfs),
			ON(test_mask_with_only_clone, xfs),
			ON(test_measure_one_clone, xfs),
			ON(test_aligned_range_is_cloned, btrfs),
			ON(test_unaligned_range_clones_its_middle, btrfs),
			ON(test_tail_at_source_eof, btrfs),
			ON(test_clone_only_refusals_change_nothing, btrfs),
			ON(test_measure_one_clone, btrfs),
			ON(test_ext4_cannot_clone, ext4),
			ON(test_only_ext4_preallocates, ext4),
			ON(test_only_ext4_preallocates, xfs),
			ON(test_only_ext4_preallocates, btrfs),
			ON(test_preallocation_keeps_holes_and_size, ext4),
			ON(test_preallocation_is_bounded, ext4),
			ON(test_copy_preallocates, ext4),
			cmocka_unit_test(test_across_filesystems),
		};
		failures = cmocka_run_group_tests_name("copyoffloadd_clone_fs", tests, nullptr,
						       nullptr);
		unmount_filesystem(ext4);
		unmount_filesystem(btrfs);
		unmount_filesystem(xfs);
	}
	::umount2(base.c_str(), MNT_DETACH);
	return failures;
}
