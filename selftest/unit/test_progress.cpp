// Pure logic of a request's pieces: how a plan is cut into pieces
// (PieceCursor), and how pieces finished in any order become one reply
// (ProgressTracker): exactly the contiguous prefix, the first failure's
// status, the bytes per method of the prefix only.

#include "copy_piece.hpp"
#include "progress_tracker.hpp"

#include <cerrno>
#include <stdexcept>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;

namespace {

PieceResult done_by(copyoffload_method method, std::uint64_t bytes, int error = 0)
{
	PieceResult result;
	result.credit(method, bytes);
	result.error = error;
	if (error != 0) {
		result.failed_method = method;
	}
	return result;
}

CopyPiece piece(std::uint64_t offset, std::uint64_t length)
{
	return {.offset = offset, .length = length, .first = CFR};
}

void test_tracker_in_order_and_out_of_order(void **)
{
	ProgressTracker in_order(30);
	in_order.record(piece(0, 10), done_by(CFR, 10));
	assert_true(in_order.bytes_done() == 10);
	in_order.record(piece(10, 10), done_by(RW, 10));
	in_order.record(piece(20, 10), done_by(CFR, 10));
	CopyResult result = in_order.result();
	assert_int_equal(result.status, 0);
	assert_true(result.bytes_done == 30);
	assert_true(result.bytes_by_method[CFR] == 20 && result.bytes_by_method[RW] == 10);

	// The last piece first: nothing counts until the first is there.
	ProgressTracker shuffled(30);
	shuffled.record(piece(20, 10), done_by(CFR, 10));
	shuffled.record(piece(10, 10), done_by(CFR, 10));
	assert_true(shuffled.bytes_done() == 0);
	shuffled.record(piece(0, 10), done_by(CFR, 10));
	assert_true(shuffled.bytes_done() == 30);
	assert_int_equal(shuffled.result().status, 0);
}

void test_tracker_first_failure_ends_the_prefix(void **)
{
	// Piece 2 fails after 4 bytes; piece 3 did everything, too late.
	ProgressTracker tracker(40);
	tracker.record(piece(30, 10), done_by(RW, 10));
	tracker.record(piece(10, 10), done_by(CFR, 4, ENOSPC));
	assert_true(tracker.failed());
	tracker.record(piece(0, 10), done_by(CFR, 10));
	tracker.record(piece(20, 10), done_by(CFR, 10));
	CopyResult result = tracker.result();
	assert_int_equal(result.status, ENOSPC);
	assert_true(result.bytes_done == 14);
	assert_true(result.bytes_by_method[CFR] == 14);
	assert_true(result.bytes_by_method[RW] == 0); // beyond the prefix
	assert_true(result.failed_method == CFR);

	// Two failures: the earlier in the range wins, whatever their order.
	ProgressTracker two(30);
	two.record(piece(20, 10), done_by(RW, 0, EIO));
	two.record(piece(10, 10), done_by(CFR, 2, EDQUOT));
	two.record(piece(0, 10), done_by(CFR, 10));
	assert_int_equal(two.result().status, EDQUOT);
	assert_true(two.result().bytes_done == 12);

	// Short without an error is an I/O error, never success.
	ProgressTracker quiet(10);
	quiet.record(piece(0, 10), done_by(CFR, 9));
	assert_int_equal(quiet.result().status, EIO);
	assert_true(quiet.result().bytes_done == 9);
}

void test_tracker_stop_and_gaps(void **)
{
	// Cancelled after two pieces were handed out: the third never ran.
	ProgressTracker tracker(30);
	tracker.record(piece(10, 10), done_by(CFR, 10));
	tracker.stop_at(20, ECANCELED);
	tracker.record(piece(0, 10), done_by(CFR, 10));
	CopyResult result = tracker.result();
	assert_int_equal(result.status, ECANCELED);
	assert_true(result.bytes_done == 20);

	// A stop past the end means nothing.
	ProgressTracker whole(10);
	whole.record(piece(0, 10), done_by(CFR, 10));
	whole.stop_at(10, ECANCELED);
	assert_int_equal(whole.result().status, 0);

	// A range nobody recorded or stopped is not success.
	ProgressTracker gap(20);
	gap.record(piece(0, 10), done_by(CFR, 10));
	assert_int_equal(gap.result().status, EIO);
	assert_true(gap.result().bytes_done == 10);

	// Time spent counts for every piece, in the prefix or not.
	ProgressTracker timed(20);
	PieceResult late = done_by(RW, 10);
	late.usec_by_method[RW] = 7;
	timed.record(piece(10, 10), late);
	timed.record(piece(0, 10), done_by(CFR, 0, ENOSPC));
	assert_true(timed.result().usec_by_method[RW] == 7);
}

CopyPlan clone_first_plan()
{
	// 16-byte blocks: copy head [0, 6), clone middle [6, 70), copy tail
	// [70, 75).
	return CopyPlan{.methods = {CLONE, CFR, RW},
			.segments = {{0, 6, CFR}, {6, 64, CLONE}, {70, 5, CFR}},
			.block_size = 16};
}

void test_cursor_cuts_by_method(void **)
{
	CopyPlan plan = clone_first_plan();
	PieceCursor cursor(plan, 75, SliceSizes{.copy = 4, .clone = 40});
	std::vector<CopyPiece> pieces;
	while (auto next = cursor.next()) {
		pieces.push_back(*next);
	}
	// Clone pieces are whole blocks (40 -> 32).
	const std::vector<CopyPiece> expected{
		{0, 4, CFR}, {4, 2, CFR}, {6, 32, CLONE}, {38, 32, CLONE},
		{70, 4, CFR}, {74, 1, CFR}};
	assert_true(pieces == expected);
	assert_true(cursor.done());
	assert_true(cursor.position() == 75);
}

void test_cursor_skips_refused_methods(void **)
{
	CopyPlan plan = clone_first_plan();
	PieceCursor cursor(plan, 75, SliceSizes{.copy = 16, .clone = 64});
	assert_true(*cursor.next() == (CopyPiece{0, 6, CFR}));
	// The files cannot clone: the middle is cut as data, for the first
	// copy method.
	const std::uint32_t no_clone = bit(CLONE);
	assert_true(*cursor.next(no_clone) == (CopyPiece{6, 16, CFR}));
	assert_true(cursor.position() == 22);
	// Neither clone nor copy_file_range: read/write.
	assert_true(*cursor.next(no_clone | bit(CFR)) == (CopyPiece{22, 16, RW}));
	// Everything refused: the last method, whose refusal is the answer.
	assert_true(*cursor.next(ALL) == (CopyPiece{38, 16, RW}));

	// Plans whose segments do not tile the range are refused.
	CopyPlan gap{.methods = {CFR}, .segments = {{0, 4, CFR}, {5, 5, CFR}}};
	bool threw = false;
	try {
		PieceCursor bad(gap, 10, {});
	} catch (const std::logic_error &) {
		threw = true;
	}
	assert_true(threw);
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_tracker_in_order_and_out_of_order),
		cmocka_unit_test(test_tracker_first_failure_ends_the_prefix),
		cmocka_unit_test(test_tracker_stop_and_gaps),
		cmocka_unit_test(test_cursor_cuts_by_method),
		cmocka_unit_test(test_cursor_skips_refused_methods),
	};
	return cmocka_run_group_tests_name("copyoffloadd_progress", tests, nullptr, nullptr);
}
