// The copy planner: which methods a request may use and how its range is
// split into clone and copy segments. Pure logic, no I/O.

#include "copy_planner.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support::methods;

namespace {

void assert_methods(std::uint32_t mask, std::uint32_t flags,
		    std::vector<copyoffload_method> expected, int error)
{
	CopyPlan plan = plan_methods(mask, flags);
	assert_int_equal(plan.error, error);
	assert_int_equal(plan.methods.size(), expected.size());
	for (std::size_t i = 0; i < expected.size(); i++) {
		assert_int_equal(plan.methods[i], expected[i]);
	}
	assert_true(plan.segments.empty());
}

CopyGeometry geometry(std::uint64_t src, std::uint64_t dst, std::uint64_t length,
		      std::uint64_t block_size = 4096, std::uint64_t source_size = UINT64_MAX)
{
	return {.source_offset = src, .destination_offset = dst, .length = length,
		.block_size = block_size, .source_size = source_size};
}

void print_segments(const std::vector<CopySegment> &segments)
{
	for (const CopySegment &s : segments) {
		std::fprintf(stderr, "  [%" PRIu64 ", +%" PRIu64 ") %s\n", s.offset, s.length,
			     copyoffload_method_name(s.first));
	}
}

void assert_segments(std::uint32_t mask, std::uint32_t flags, const CopyGeometry &where,
		     const std::vector<CopySegment> &expected)
{
	CopyPlan plan = plan_copy(mask, flags, where);
	assert_int_equal(plan.error, 0);
	if (plan.segments != expected) {
		std::fprintf(stderr, "planned:\n");
		print_segments(plan.segments);
		std::fprintf(stderr, "expected:\n");
		print_segments(expected);
		fail();
	}
}

void test_methods(void **)
{
	assert_methods(ALL, 0, {CLONE, CFR, RW}, 0);
	assert_methods(bit(CFR), 0, {CFR}, 0);
	assert_methods(bit(RW), 0, {RW}, 0);
	assert_methods(bit(CLONE), 0, {CLONE}, 0);
	assert_methods(bit(CLONE) | bit(RW), 0, {CLONE, RW}, 0);
	assert_methods(bit(DEVICE) | bit(CFR), 0, {CFR}, 0);
	// DEVICE is not implemented.
	assert_methods(bit(DEVICE), 0, {}, EOPNOTSUPP);
	// CLONE_ONLY: just CLONE, whatever else the mask allows; EINVAL
	// without it.
	assert_methods(ALL, CLONE_ONLY, {CLONE}, 0);
	assert_methods(bit(CLONE), CLONE_ONLY, {CLONE}, 0);
	assert_methods(bit(CFR) | bit(RW), CLONE_ONLY, {}, EINVAL);
	assert_methods(bit(DEVICE), CLONE_ONLY, {}, EINVAL);
}

void test_aligned_range_is_one_clone(void **)
{
	assert_segments(ALL, 0, geometry(0, 8192, 5 * MiB), {{0, 5 * MiB, CLONE}});
	// Aligned to the block, not to the start of the file.
	assert_segments(ALL, 0, geometry(4096 * 3, 4096 * 7, 4096), {{0, 4096, CLONE}});
	// A reported block size of 0 means 4096.
	assert_segments(ALL, 0, geometry(4096, 0, 8192, 0), {{0, 8192, CLONE}});
	// Another block size: 64 KiB aligned clones.
	assert_segments(ALL, 0, geometry(65536, 131072, 65536 * 2, 65536),
			{{0, 131072, CLONE}});
}

void test_unaligned_head_and_tail_are_copied(void **)
{
	// The integration case: 1000..1000+3 MiB on 4 KiB blocks.
	const std::uint64_t head = 4096 - 1000;
	const std::uint64_t middle = (3 * MiB - head) / 4096 * 4096;
	const std::uint64_t tail = 3 * MiB - head - middle;
	assert_int_equal(tail, 1000);
	assert_segments(ALL, 0, geometry(1000, 1000, 3 * MiB),
			{{0, head, CFR}, {head, middle, CLONE}, {head + middle, tail, CFR}});
	// Same phase, different blocks.
	assert_segments(ALL, 0, geometry(4096 + 10, 40960 + 10, 8192),
			{{0, 4086, CFR}, {4086, 4096, CLONE}, {8182, 10, CFR}});
	// Only a head, only a tail.
	assert_segments(ALL, 0, geometry(100, 100, 4096 * 2 - 100),
			{{0, 3996, CFR}, {3996, 4096, CLONE}});
	assert_segments(ALL, 0, geometry(0, 0, 4096 + 1), {{0, 4096, CLONE}, {4096, 1, CFR}});
	// The first copy method allowed is the tag: read/write without CFR.
	assert_segments(bit(CLONE) | bit(RW), 0, geometry(100, 100, 8192),
			{{0, 3996, RW}, {3996, 4096, CLONE}, {8092, 100, RW}});
}

void test_no_aligned_middle(void **)
{
	// Offsets in different phases: nothing can ever be cloned.
	assert_segments(ALL, 0, geometry(0, 512, 10 * MiB), {{0, 10 * MiB, CFR}});
	assert_segments(ALL, 0, geometry(4093, 3, 10 * MiB), {{0, 10 * MiB, CFR}});
	// Within one block, and from a block start to before the next one.
	assert_segments(ALL, 0, geometry(10, 10, 100), {{0, 100, CFR}});
	assert_segments(ALL, 0, geometry(10, 10, 4086), {{0, 4086, CFR}});
	assert_segments(ALL, 0, geometry(0, 0, 100), {{0, 100, CFR}});
	// Head up to the boundary, then a tail shorter than a block: the two
	// copy segments merge.
	assert_segments(ALL, 0, geometry(10, 10, 4090), {{0, 4090, CFR}});
}

void test_zero_length_has_no_segments(void **)
{
	for (std::uint32_t flags : {0u, CLONE_ONLY}) {
		CopyPlan plan = plan_copy(ALL, flags, geometry(123, 456, 0));
		assert_int_equal(plan.error, 0);
		assert_true(plan.segments.empty());
	}
}

void test_tail_at_source_eof_is_cloned(void **)
{
	// The range ends exactly at the source's EOF: its tail is cloned,
	// as a segment of its own so that a refusal costs only the tail.
	assert_segments(ALL, 0, geometry(4096, 0, 10000, 4096, 14096),
			{{0, 8192, CLONE}, {8192, 1808, CLONE}});
	// A whole small file.
	assert_segments(ALL, 0, geometry(0, 0, 100, 4096, 100), {{0, 100, CLONE}});
	// With an unaligned head, too.
	assert_segments(ALL, 0, geometry(1000, 1000, 10000, 4096, 11000),
			{{0, 3096, CFR}, {3096, 4096, CLONE}, {7192, 2808, CLONE}});
	// Ending before or after the EOF: copied.
	assert_segments(ALL, 0, geometry(0, 0, 100, 4096, 101), {{0, 100, CFR}});
	assert_segments(ALL, 0, geometry(0, 0, 100, 4096, 99), {{0, 100, CFR}});
	// Starting past the EOF.
	assert_segments(ALL, 0, geometry(8192, 0, 100, 4096, 100), {{0, 100, CFR}});
	// An unaligned start inside the last block stays a copy.
	assert_segments(ALL, 0, geometry(10, 10, 90, 4096, 100), {{0, 90, CFR}});
}

void test_mask_without_clone_never_clones(void **)
{
	assert_segments(bit(CFR) | bit(RW), 0, geometry(0, 0, 64 * MiB), {{0, 64 * MiB, CFR}});
	assert_segments(bit(RW), 0, geometry(1000, 1000, 3 * MiB), {{0, 3 * MiB, RW}});
	assert_segments(bit(CFR), 0, geometry(0, 0, 100, 4096, 100), {{0, 100, CFR}});
}

void test_mask_with_only_clone(void **)
{
	// Nothing may copy: every segment tries a clone, so the kernel's
	// refusal of the unaligned parts becomes the request's error.
	assert_segments(bit(CLONE), 0, geometry(1000, 1000, 3 * MiB),
			{{0, 3096, CLONE}, {3096, 3141632, CLONE}, {3144728, 1000, CLONE}});
	assert_segments(bit(CLONE) | bit(DEVICE), 0, geometry(0, 512, 8192),
			{{0, 8192, CLONE}});
}

void test_clone_only_is_never_split(void **)
{
	assert_segments(ALL, CLONE_ONLY, geometry(1000, 1000, 3 * MiB), {{0, 3 * MiB, CLONE}});
	assert_segments(bit(CLONE), CLONE_ONLY, geometry(0, 512, 100), {{0, 100, CLONE}});
	assert_segments(ALL, CLONE_ONLY, geometry(0, 0, 8 * MiB), {{0, 8 * MiB, CLONE}});

	CopyPlan plan = plan_copy(bit(CFR), CLONE_ONLY, geometry(0, 0, 4096));
	assert_int_equal(plan.error, EINVAL);
	assert_true(plan.segments.empty());
}

void test_huge_ranges_do_not_overflow(void **)
{
	const std::uint64_t max_len = COPYOFFLOAD_MAX_COPY_LENGTH;
	// 2^63 - 1 - 2^48: the highest offset a request of the largest length
	// may name (its end is INT64_MAX), in phase 4095 of a 4 KiB block.
	const std::uint64_t top = static_cast<std::uint64_t>(INT64_MAX) - max_len;
	assert_segments(ALL, 0, geometry(top, top, max_len),
			{{0, 1, CFR}, {1, max_len - 4096, CLONE}, {max_len - 4095, 4095, CFR}});
	assert_segments(ALL, 0, geometry(top, top - 4096, max_len),
			{{0, 1, CFR}, {1, max_len - 4096, CLONE}, {max_len - 4095, 4095, CFR}});
	// Ending exactly at an EOF at INT64_MAX.
	assert_segments(ALL, 0, geometry(top, top, max_len, 4096, INT64_MAX),
			{{0, 1, CFR}, {1, max_len - 4096, CLONE}, {max_len - 4095, 4095, CLONE}});
	assert_segments(ALL, 0, geometry(INT64_MAX - 1, INT64_MAX - 1, 1, 4096, INT64_MAX),
			{{0, 1, CFR}});
	assert_segments(ALL, 0, geometry(INT64_MAX - 4095, 0, 4095, 4096, INT64_MAX),
			{{0, 4095, CLONE}});
	// A block size larger than any offset, and the largest one.
	assert_segments(ALL, 0, geometry(5, 5, 100, UINT64_MAX), {{0, 100, CFR}});
	assert_segments(ALL, 0, geometry(0, 0, max_len, UINT64_MAX), {{0, max_len, CFR}});
	// A source's size below the offset is never "at EOF".
	assert_segments(ALL, 0, geometry(8192, 8192, 100, 4096, 0), {{0, 100, CFR}});
}

// Every small geometry: segments tile the range in order; a CLONE segment
// starts block-aligned on both sides and is whole blocks unless it ends at
// the source's EOF; with CLONE in the mask every whole block of a range
// with congruent offsets is cloned, and nothing at all otherwise.
void test_exhaustive_small_geometries(void **)
{
	for (std::uint64_t bs : {1u, 3u, 8u, 16u}) {
		for (std::uint64_t src = 0; src < 40; src++) {
			for (std::uint64_t dst = 0; dst < 40; dst += 3) {
				for (std::uint64_t length = 0; length < 50; length++) {
					for (std::uint64_t eof : {src + length, src + length + 1}) {
						for (std::uint32_t mask : {ALL, bit(CFR), bit(CLONE)}) {
							CopyPlan plan = plan_copy(
								mask, 0, geometry(src, dst, length, bs, eof));
							assert_int_equal(plan.error, 0);
							std::uint64_t covered = 0;
							std::uint64_t cloned = 0;
							for (const CopySegment &s : plan.segments) {
								assert_true(s.offset == covered);
								assert_true(s.length > 0);
								covered += s.length;
								if (s.first != CLONE || mask == bit(CLONE)) {
									continue;
								}
								cloned += s.length;
								assert_true((src + s.offset) % bs == 0);
								assert_true((dst + s.offset) % bs == 0);
								assert_true(s.length % bs == 0 ||
									    src + s.offset + s.length == eof);
							}
							assert_true(covered == length);
							if (mask == bit(CFR)) {
								assert_true(cloned == 0);
							}
							// All whole blocks of a congruent range are cloned.
							if (mask == ALL && src % bs == dst % bs) {
								std::uint64_t head = (bs - src % bs) % bs;
								std::uint64_t whole = length > head
									? (length - head) / bs * bs : 0;
								assert_true(cloned >= whole);
							} else if (mask == ALL) {
								assert_true(cloned == 0);
							}
						}
					}
				}
			}
		}
	}
}

// A share's method order is the preference and the allow-list.
void test_order_is_honoured(void **)
{
	const std::vector<copyoffload_method> cfr_first{CFR, CLONE, RW};
	CopyPlan plan = plan_methods(ALL, 0, cfr_first);
	assert_int_equal(plan.error, 0);
	assert_true(plan.methods == cfr_first);
	// Clone is only a fallback here: no clone-first split.
	plan = plan_copy(ALL, 0, geometry(0, 0, 5 * MiB), cfr_first);
	assert_true(plan.segments == (std::vector<CopySegment>{{0, 5 * MiB, CFR}}));
	plan = plan_copy(ALL, 0, geometry(100, 100, 3 * MiB), cfr_first);
	assert_true(plan.segments == (std::vector<CopySegment>{{0, 3 * MiB, CFR}}));

	// Clone first, read/write before copy_file_range: the copied edges
	// start with read/write; copy_file_range is left out.
	const std::vector<copyoffload_method> clone_rw{CLONE, RW};
	plan = plan_copy(ALL, 0, geometry(100, 100, 2 * MiB), clone_rw);
	assert_true(plan.methods == clone_rw);
	assert_true(plan.segments == (std::vector<CopySegment>{
					     {0, 3996, RW}, {3996, 2 * MiB - 4096, CLONE},
					     {2 * MiB - 100, 100, RW}}));

	// The mask still restricts the order, and the order the mask.
	plan = plan_methods(bit(RW) | bit(CLONE), 0, cfr_first);
	assert_true(plan.methods == (std::vector<copyoffload_method>{CLONE, RW}));
	plan = plan_methods(ALL, 0, std::vector<copyoffload_method>{RW});
	assert_true(plan.methods == (std::vector<copyoffload_method>{RW}));
	plan = plan_methods(bit(CFR), 0, std::vector<copyoffload_method>{RW});
	assert_int_equal(plan.error, EOPNOTSUPP);
	// Device copy is not implemented: an order of it alone allows nothing.
	plan = plan_methods(ALL, 0, std::vector<copyoffload_method>{DEVICE});
	assert_int_equal(plan.error, EOPNOTSUPP);
	// A repeated method counts once.
	plan = plan_methods(ALL, 0, std::vector<copyoffload_method>{RW, CFR, RW});
	assert_true(plan.methods == (std::vector<copyoffload_method>{RW, CFR}));

	// An all-or-nothing clone needs clone in the order too.
	plan = plan_methods(ALL, CLONE_ONLY, std::vector<copyoffload_method>{CFR, RW});
	assert_int_equal(plan.error, EINVAL);
	plan = plan_methods(ALL, CLONE_ONLY, cfr_first);
	assert_true(plan.methods == (std::vector<copyoffload_method>{CLONE}));
	assert_true(method_implemented(CLONE));
	assert_false(method_implemented(DEVICE));
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_aligned_range_is_one_clone),
		cmocka_unit_test(test_unaligned_head_and_tail_are_copied),
		cmocka_unit_test(test_no_aligned_middle),
		cmocka_unit_test(test_zero_length_has_no_segments),
		cmocka_unit_test(test_tail_at_source_eof_is_cloned),
		cmocka_unit_test(test_mask_without_clone_never_clones),
		cmocka_unit_test(test_mask_with_only_clone),
		cmocka_unit_test(test_clone_only_is_never_split),
		cmocka_unit_test(test_huge_ranges_do_not_overflow),
		cmocka_unit_test(test_exhaustive_small_geometries),
		cmocka_unit_test(test_order_is_honoured),
	};
	return cmocka_run_group_tests_name("copyoffloadd_copy_planner", tests, nullptr, nullptr);
}
