// The slice loop over the planner's segments with its per-segment fallback,
// clone-only and cancellation rules (against scripted fake backends), the
// real backends on real files, and execute_copy's order of checks. The
// clone backend on real reflink filesystems: test_clone_fs.cpp.

#include "clone_backend.hpp"
#include "copy_engine.hpp"
#include "copy_service.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/vfs.h>

#include <cerrno>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;

namespace {

void test_result_accounting(void **)
{
	CopyResult result;
	assert_false(result.dominant_method().has_value());
	result.credit(RW, 10);
	result.credit(CFR, 10);
	// A tie goes to the preferred method.
	assert_int_equal(*result.dominant_method(), CFR);
	result.credit(RW, 1);
	assert_int_equal(*result.dominant_method(), RW);
	assert_true(result.bytes_done == 21);
	assert_true(result.bytes_by_method[CFR] + result.bytes_by_method[RW] == 21);

	CopyResult failed = CopyResult::failed(EIO);
	assert_int_equal(failed.status, EIO);
	assert_true(failed.bytes_done == 0);
}

/* --- engine loop with fake backends ----------------------------------- */

struct Step {
	std::optional<std::uint64_t> bytes; // nullopt: the whole slice
	int error = 0;
};

struct Call {
	copyoffload_method method;
	CopyRange slice;
};

// Follows a script, one step per call (the last step repeats), and records
// the slices it was given in a log shared by all fakes of a run.
class FakeBackend final : public CopyBackend {
public:
	FakeBackend(copyoffload_method method, std::vector<Step> script,
		    std::vector<Call> &calls, std::function<void()> on_call)
		: method_(method), script_(std::move(script)), calls_(calls),
		  on_call_(std::move(on_call))
	{
	}
	copyoffload_method method() const override { return method_; }
	// EXDEV stands for a refusal of one range (clone's EINVAL), EOPNOTSUPP
	// for one of the two files as a whole (no reflink there).
	bool is_unsupported(int error) const override
	{
		return error == EXDEV || error == EOPNOTSUPP;
	}
	bool refuses_files(int error) const override { return error == EOPNOTSUPP; }
	BackendProgress copy_slice(const CopyRange &slice) override
	{
		std::size_t index = std::min(step_++, script_.size() - 1);
		calls_.push_back({method_, slice});
		if (on_call_) {
			on_call_();
		}
		const Step &step = script_[index];
		return {step.bytes.value_or(slice.length), step.error};
	}

private:
	copyoffload_method method_;
	std::vector<Step> script_;
	std::vector<Call> &calls_;
	std::function<void()> on_call_;
	std::size_t step_ = 0;
};

struct Scripts {
	std::vector<Step> clone{{}};
	std::vector<Step> cfr{{}};
	std::vector<Step> rw{{}};
};

struct FakeRun {
	std::vector<Call> calls; // every backend's, in order
	CopyResult result;

	[[nodiscard]] std::vector<CopyRange> of(copyoffload_method method) const
	{
		std::vector<CopyRange> slices;
		for (const Call &call : calls) {
			if (call.method == method) {
				slices.push_back(call.slice);
			}
		}
		return slices;
	}
};

constexpr SliceSizes fake_slices{.copy = 4, .clone = 16};

// Plans `where` for `mask` and `flags` and runs the plan against fakes,
// copy slices of 4 and clone slices of 16 bytes. on_call runs after every
// backend call.
FakeRun run_plan(std::uint32_t mask, std::uint32_t flags, const CopyGeometry &where,
		 Scripts scripts, std::stop_source stop = {},
		 const std::function<void()> &on_call = {}, SliceSizes slices = fake_slices)
{
	FakeRun run;
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<FakeBackend>(CLONE, std::move(scripts.clone),
							 run.calls, on_call));
	backends.push_back(std::make_unique<FakeBackend>(CFR, std::move(scripts.cfr),
							 run.calls, on_call));
	backends.push_back(std::make_unique<FakeBackend>(RW, std::move(scripts.rw),
							 run.calls, on_call));
	CopyEngine engine(std::move(backends));
	CopyRange range{.source = 3, .destination = 4, .source_offset = where.source_offset,
			.destination_offset = where.destination_offset, .length = where.length};
	CopyPlan plan = plan_copy(mask, flags, where);
	assert_int_equal(plan.error, 0);
	run.result = engine.copy(range, plan, stop.get_token(), slices);
	return run;
}

// Copies 10 bytes from offset 100 to 200 in slices of 4 with CFR then RW.
FakeRun run_fakes(std::vector<Step> first, std::vector<Step> second,
		  std::stop_source stop = {}, const std::function<void()> &on_call = {})
{
	return run_plan(bit(CFR) | bit(RW), 0,
			{.source_offset = 100, .destination_offset = 200, .length = 10},
			{.cfr = std::move(first), .rw = std::move(second)}, std::move(stop),
			on_call);
}

// The methods of the calls, in order, as one string: "CCKKR" and so on.
std::string sequence(const FakeRun &run)
{
	std::string text;
	for (const Call &call : run.calls) {
		text += call.method == CLONE ? 'K' : call.method == CFR ? 'C' : 'R';
	}
	return text;
}

void assert_sequence(const FakeRun &run, const char *expected)
{
	if (sequence(run) != expected) {
		fail_msg("calls \"%s\", expected \"%s\"", sequence(run).c_str(), expected);
	}
}

void assert_result(const CopyResult &result, int status, std::uint64_t cfr, std::uint64_t rw,
		   std::uint64_t clone = 0)
{
	assert_int_equal(result.status, status);
	assert_true(result.bytes_by_method[CLONE] == clone);
	assert_true(result.bytes_by_method[CFR] == cfr);
	assert_true(result.bytes_by_method[RW] == rw);
	assert_true(result.bytes_by_method[DEVICE] == 0);
	assert_true(result.bytes_done == clone + cfr + rw);
}

void test_slices_cover_range(void **)
{
	FakeRun run = run_fakes({{}}, {{}});
	assert_result(run.result, 0, 10, 0);
	auto cfr = run.of(CFR);
	assert_int_equal(cfr.size(), 3);
	const std::uint64_t lengths[] = {4, 4, 2};
	for (std::size_t i = 0; i < 3; i++) {
		assert_true(cfr[i].length == lengths[i]);
		assert_true(cfr[i].source_offset == 100 + 4 * i);
		assert_true(cfr[i].destination_offset == 200 + 4 * i);
		assert_int_equal(cfr[i].source, 3);
		assert_int_equal(cfr[i].destination, 4);
	}
	assert_true(run.of(RW).empty());
	assert_true(run.of(CLONE).empty());
}

void test_fallback_before_any_byte(void **)
{
	// Refused for the files as a whole: every piece goes to read/write,
	// and copy_file_range is not asked again.
	FakeRun run = run_fakes({{0, EOPNOTSUPP}}, {{}});
	assert_result(run.result, 0, 0, 10);
	assert_int_equal(run.of(CFR).size(), 1);
	assert_int_equal(run.of(RW).size(), 3);
	assert_true(run.of(RW)[0].source_offset == 100);

	// Refused for a range only: each piece asks again, and falls back on
	// its own.
	run = run_fakes({{0, EXDEV}}, {{}});
	assert_result(run.result, 0, 0, 10);
	assert_int_equal(run.of(CFR).size(), 3);
	assert_int_equal(run.of(RW).size(), 3);
}

void test_no_fallback_after_progress(void **)
{
	// A piece that moved bytes may not hand the rest over: "unsupported"
	// after progress is a real error.
	FakeRun run = run_fakes({{1, EXDEV}}, {{}});
	assert_result(run.result, EXDEV, 1, 0);
	assert_true(run.of(RW).empty());

	// The next piece is a piece of its own: refused before its first
	// byte, it goes to read/write although the piece before it was
	// copied with copy_file_range.
	run = run_fakes({{}, {0, EXDEV}}, {{}});
	assert_result(run.result, 0, 4, 6);
	assert_sequence(run, "CCRCR");
}

void test_no_fallback_for_real_errors(void **)
{
	FakeRun run = run_fakes({{0, ENOSPC}}, {{}});
	assert_result(run.result, ENOSPC, 0, 0);
	assert_true(run.of(RW).empty());
}

void test_error_keeps_exact_prefix(void **)
{
	FakeRun run = run_fakes({{}, {3, EDQUOT}}, {{}});
	assert_result(run.result, EDQUOT, 7, 0);

	run = run_fakes({{0, EXDEV}}, {{}, {}, {1, EIO}});
	assert_result(run.result, EIO, 0, 9);

	run = run_fakes({{0, EXDEV}}, {{2, ENODATA}});
	assert_result(run.result, ENODATA, 0, 2);
}

void test_last_method_unsupported(void **)
{
	FakeRun run = run_fakes({{0, EXDEV}}, {{0, EXDEV}});
	assert_result(run.result, EXDEV, 0, 0);
}

void test_short_slice_without_error_is_eio(void **)
{
	FakeRun run = run_fakes({{}, {2, 0}}, {{}});
	assert_result(run.result, EIO, 6, 0);
}

void test_cancel_between_slices(void **)
{
	std::stop_source stop;
	int calls = 0;
	FakeRun run = run_fakes({{}}, {{}}, stop, [&] {
		if (++calls == 2) {
			stop.request_stop();
		}
	});
	// The slice in progress completes; the next one never starts.
	assert_result(run.result, ECANCELED, 8, 0);
	assert_int_equal(run.of(CFR).size(), 2);
}

void test_cancel_before_start(void **)
{
	std::stop_source stop;
	stop.request_stop();
	FakeRun run = run_fakes({{}}, {{}}, stop);
	assert_result(run.result, ECANCELED, 0, 0);
	assert_true(run.calls.empty());
}

/* --- clone-first plans against fakes ---------------------------------- */

// 16-byte blocks, 50 bytes from 10 to 26 (same phase): a 6-byte head
// [10, 16), a 32-byte middle [16, 48) in two clone slices, a 12-byte tail
// [48, 60). With the source ending at 60 the tail is cloned too.
constexpr std::uint64_t block = 16;
CopyGeometry split_range(std::uint64_t source_size = 1000)
{
	return {.source_offset = 10, .destination_offset = 26, .length = 50,
		.block_size = block, .source_size = source_size};
}

void test_clone_middle_copy_edges(void **)
{
	FakeRun run = run_plan(ALL, 0, split_range(), {});
	assert_result(run.result, 0, 6 + 12, 0, 32);
	assert_sequence(run, "CCKKCCC");
	auto clones = run.of(CLONE);
	for (std::size_t i = 0; i < clones.size(); i++) {
		assert_true(clones[i].source_offset == 16 + 16 * i);
		assert_true(clones[i].destination_offset == 32 + 16 * i);
		assert_true(clones[i].length == 16);
	}
	auto copies = run.of(CFR);
	assert_true(copies[0].source_offset == 10 && copies[0].length == 4);
	assert_true(copies[1].source_offset == 14 && copies[1].length == 2);
	assert_true(copies[2].source_offset == 48 && copies[2].destination_offset == 64);
	assert_true(copies[4].source_offset == 56 && copies[4].length == 4);
}

void test_tail_at_eof_is_cloned(void **)
{
	FakeRun run = run_plan(ALL, 0, split_range(60), {});
	assert_result(run.result, 0, 6, 0, 44);
	assert_sequence(run, "CCKKK");
	assert_true(run.of(CLONE)[2].source_offset == 48);
	assert_true(run.of(CLONE)[2].length == 12);
}

void test_refused_clone_falls_back_per_segment(void **)
{
	// Both clone pieces of the middle are refused, the EOF tail is
	// cloned: each piece on its own.
	FakeRun run = run_plan(ALL, 0, split_range(60),
			       {.clone = {{0, EXDEV}, {0, EXDEV}, {}}});
	assert_result(run.result, 0, 6 + 32, 0, 12);
	assert_sequence(run, "CCKCCCCKCCCCK");
	assert_true(run.of(CFR)[2].source_offset == 16); // the middle, from its start

	// A refusal of one piece does not keep the next from cloning.
	run = run_plan(ALL, 0, split_range(60), {.clone = {{0, EXDEV}, {}}});
	assert_result(run.result, 0, 6 + 16, 0, 16 + 12);
	assert_sequence(run, "CCKCCCCKK");

	// A filesystem that cannot clone at all: the rest of the middle and
	// the tail are cut as data and never offered to clone again.
	run = run_plan(ALL, 0, split_range(60), {.clone = {{0, EOPNOTSUPP}, {}}});
	assert_result(run.result, 0, 6 + 32 + 12, 0, 0);
	assert_sequence(run, "CCKCCCCCCCCCCC");

	// The middle is cloned, the EOF tail is refused and copied.
	run = run_plan(ALL, 0, split_range(60),
		       {.clone = {{}, {}, {0, EXDEV}}});
	assert_result(run.result, 0, 6 + 12, 0, 32);
	assert_sequence(run, "CCKKKCCC");
}

void test_refused_clone_after_clone_progress(void **)
{
	// A clone slice is all or nothing: after one succeeded, a refused one
	// still hands the rest of its segment over.
	FakeRun run = run_plan(ALL, 0, split_range(),
			       {.clone = {{}, {0, EXDEV}}});
	assert_result(run.result, 0, 6 + 16 + 12, 0, 16);
	assert_sequence(run, "CCKKCCCCCCC");
	assert_true(run.of(CFR)[2].source_offset == 32);
}

void test_copy_fallback_does_not_stick(void **)
{
	// CFR is refused for the first piece of the head; read/write copies
	// it. Every later piece tries CFR first again.
	FakeRun run = run_plan(ALL, 0, split_range(),
			       {.cfr = {{0, EXDEV}, {}}});
	assert_result(run.result, 0, 2 + 12, 4, 32);
	assert_sequence(run, "CRCKKCCC");

	// Unless the refusal is for the files as a whole.
	run = run_plan(ALL, 0, split_range(), {.cfr = {{0, EOPNOTSUPP}, {}}});
	assert_result(run.result, 0, 0, 6 + 12, 32);
	assert_sequence(run, "CRRKKRRR");
}

void test_clone_real_error_ends_request(void **)
{
	for (int error : {ENOSPC, EDQUOT, EIO, EBADF}) {
		FakeRun run = run_plan(ALL, 0, split_range(60),
				       {.clone = {{}, {0, error}}});
		assert_result(run.result, error, 6, 0, 16);
		assert_sequence(run, "CCKK");
	}
	// A refusal that the copy methods then fail for real.
	FakeRun run = run_plan(ALL, 0, split_range(),
			       {.clone = {{0, EXDEV}}, .cfr = {{}, {}, {}, {1, ENOSPC}}});
	assert_result(run.result, ENOSPC, 6 + 5, 0, 0);
	assert_sequence(run, "CCKCC");
}

void test_mask_without_clone(void **)
{
	FakeRun run = run_plan(bit(CFR) | bit(RW), 0, split_range(60), {});
	assert_result(run.result, 0, 50, 0);
	assert_true(run.of(CLONE).empty());
}

void test_mask_with_only_clone(void **)
{
	// Aligned start: the middle is cloned, the tail (not at EOF) has no
	// copy method, so the clone's refusal ends the request.
	CopyGeometry aligned{.source_offset = 0, .destination_offset = 16, .length = 40,
			     .block_size = block, .source_size = 1000};
	FakeRun run = run_plan(bit(CLONE), 0, aligned, {.clone = {{}, {}, {0, EXDEV}}});
	assert_result(run.result, EXDEV, 0, 0, 32);
	assert_sequence(run, "KKK");
	assert_true(run.of(CLONE)[2].length == 8);

	// Unaligned head: refused at once, nothing done.
	run = run_plan(bit(CLONE), 0, split_range(), {.clone = {{0, EXDEV}, {}}});
	assert_result(run.result, EXDEV, 0, 0, 0);
	assert_sequence(run, "K");
}

void test_clone_only_never_falls_back(void **)
{
	CopyGeometry aligned{.source_offset = 0, .destination_offset = 16, .length = 50,
			     .block_size = block, .source_size = 1000};
	FakeRun run = run_plan(ALL, CLONE_ONLY, aligned, {});
	assert_result(run.result, 0, 0, 0, 50);
	assert_sequence(run, "KKKK");
	auto clones = run.of(CLONE);
	for (std::size_t i = 0; i < clones.size(); i++) {
		assert_true(clones[i].source_offset == 16 * i);
		assert_true(clones[i].destination_offset == 16 + 16 * i);
	}
	assert_true(clones[3].length == 2);

	// Refused at the last slice: the earlier slices count, nothing else.
	run = run_plan(ALL, CLONE_ONLY, aligned,
		       {.clone = {{}, {}, {}, {0, EXDEV}}});
	assert_result(run.result, EXDEV, 0, 0, 48);
	assert_sequence(run, "KKKK");

	// Refused at once, also for an unaligned range that a normal
	// request would split.
	run = run_plan(ALL, CLONE_ONLY, split_range(),
		       {.clone = {{0, EXDEV}}});
	assert_result(run.result, EXDEV, 0, 0, 0);
	assert_sequence(run, "K");
}

void test_clone_slices_stay_aligned(void **)
{
	CopyGeometry aligned{.source_offset = 0, .destination_offset = 16, .length = 50,
			     .block_size = block, .source_size = 1000};
	// 20-byte clone slices become 16, 5-byte ones a whole block.
	for (std::uint64_t clone_slice : {20u, 5u, 31u}) {
		FakeRun run = run_plan(ALL, CLONE_ONLY,
				       aligned, {}, {}, {},
				       {.copy = 4, .clone = clone_slice});
		assert_result(run.result, 0, 0, 0, 50);
		for (const CopyRange &slice : run.of(CLONE)) {
			assert_true(slice.source_offset % block == 0);
			assert_true(slice.destination_offset % block == 0);
		}
		assert_int_equal(run.of(CLONE).size(), 4);
	}
	// Multiples of the block are kept.
	FakeRun run = run_plan(ALL, 0, aligned, {}, {}, {},
			       {.copy = 4, .clone = 48});
	assert_int_equal(run.of(CLONE).size(), 1);
	assert_true(run.of(CLONE)[0].length == 48);
}

void test_cancel_between_clone_slices(void **)
{
	std::stop_source stop;
	int calls = 0;
	FakeRun run = run_plan(ALL, 0, split_range(), {}, stop, [&] {
		if (++calls == 3) { // the head's two copy slices, one clone slice
			stop.request_stop();
		}
	});
	assert_result(run.result, ECANCELED, 6, 0, 16);
	assert_sequence(run, "CCK");
}

void test_segments_must_tile_the_range(void **)
{
	std::vector<Call> calls;
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<FakeBackend>(CFR, std::vector<Step>{{}}, calls,
							 std::function<void()>{}));
	CopyEngine engine(std::move(backends));
	CopyRange range{.source = 3, .destination = 4, .length = 10};
	CopyPlan gap{.methods = {CFR}, .segments = {{0, 4, CFR}, {5, 5, CFR}}};
	CopyPlan short_of_end{.methods = {CFR}, .segments = {{0, 9, CFR}}};
	CopyPlan unknown_method{.methods = {CFR}, .segments = {{0, 10, RW}}};
	for (const CopyPlan *plan : {&gap, &short_of_end, &unknown_method}) {
		bool threw = false;
		try {
			engine.copy(range, *plan, {}, fake_slices);
		} catch (const std::logic_error &) {
			threw = true;
		}
		assert_true(threw);
	}
	assert_true(calls.empty());
}

/* --- the clone backend, whatever $TMPDIR is ------------------------- */

void test_clone_backend_errors(void **)
{
	CloneBackend clone;
	assert_int_equal(clone.method(), CLONE);
	for (int error : {EINVAL, EXDEV, EOPNOTSUPP, ENOTTY, ENOSYS}) {
		assert_true(clone.is_unsupported(error));
	}
	for (int error : {EBADF, ENOSPC, EDQUOT, EIO, EPERM, ETXTBSY, EFBIG, ENODATA, EINTR}) {
		assert_false(clone.is_unsupported(error));
	}
	// A zero length would mean "to EOF" to the kernel: it is never sent
	// (these descriptors would make any ioctl fail with EBADF).
	BackendProgress progress = clone.copy_slice({.source = -1, .destination = -1});
	assert_true(progress.bytes == 0);
	assert_int_equal(progress.error, 0);
	progress = clone.copy_slice({.source = -1, .destination = -1, .length = 4096});
	assert_true(progress.bytes == 0);
	assert_int_equal(progress.error, EBADF);
}

/* --- real backends ---------------------------------------------------- */


constexpr std::size_t big_size = 3 * 1024 * 1024 + 7;

// Copies `length` bytes from src_off to dst_off of a fresh destination with
// a small slice size, and checks every byte and the method accounting.
void copy_and_verify(const TempDir &dir, std::uint32_t methods, copyoffload_method expected,
		     std::uint64_t src_off, std::uint64_t dst_off, std::uint64_t length)
{
	auto source_bytes = pattern(big_size, 7);
	write_file(dir.file("src"), source_bytes);
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	CopyOutcome outcome = execute_copy(copy_request(src_off, dst_off, length, methods),
					   source.get(), destination.get(), {},
					   CopySettings{.slices = SliceSizes{.copy = 1 << 20}});
	assert_int_equal(outcome.result.status, 0);
	assert_true(outcome.result.bytes_done == length);
	assert_true(outcome.result.bytes_by_method[expected] == length);
	assert_true(outcome.rejection.empty());

	auto copied = read_file(dir.file("dst"));
	assert_int_equal(copied.size(), dst_off + length);
	for (std::size_t i = 0; i < dst_off; i++) {
		assert_int_equal(copied[i], 0); // the hole before dst_off
	}
	assert_memory_equal(copied.data() + dst_off, source_bytes.data() + src_off, length);
}

// Without CLONE in the mask: whether $TMPDIR can clone must not matter.
constexpr std::uint32_t no_clone = ALL & ~bit(CLONE);

void test_copy_file_range_copies_exactly(void **state)
{
	copy_and_verify(temp_dir(state), no_clone, CFR, 0, 0, big_size);
	copy_and_verify(temp_dir(state), bit(CFR), CFR, 5, 1000, big_size - 5);
}

void test_read_write_copies_exactly(void **state)
{
	copy_and_verify(temp_dir(state), bit(RW), RW, 0, 0, big_size);
	copy_and_verify(temp_dir(state), bit(RW) | bit(CLONE), RW, 4093, 3, big_size - 4093);
}

void test_source_eof_is_enodata(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("src"), pattern(100));
	for (std::uint32_t methods : {bit(CFR), bit(RW), COPYOFFLOAD_METHODS_ALL}) {
		write_file(dir.file("dst"), {});
		UniqueFd source = open_file(dir.file("src"), O_RDONLY);
		UniqueFd destination = open_file(dir.file("dst"), O_RDWR);

		CopyOutcome outcome = execute_copy(copy_request(40, 0, 200, methods), source.get(),
						   destination.get(), {});
		assert_int_equal(outcome.result.status, ENODATA);
		assert_true(outcome.result.bytes_done == 60);
		assert_int_equal(read_file(dir.file("dst")).size(), 60);

		outcome = execute_copy(copy_request(500, 0, 10, methods), source.get(),
				       destination.get(), {});
		assert_int_equal(outcome.result.status, ENODATA);
		assert_true(outcome.result.bytes_done == 0);
	}
}

// A write past RLIMIT_FSIZE fails with EFBIG (SIGXFSZ ignored, as in the
// daemon): the reply must count exactly the bytes below the limit.
void test_write_error_reports_exact_prefix(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("src"), pattern(big_size));
	::signal(SIGXFSZ, SIG_IGN);
	rlimit saved{};
	assert_int_equal(::getrlimit(RLIMIT_FSIZE, &saved), 0);
	const std::uint64_t limit = (1 << 20) + 123;

	for (std::uint32_t methods : {bit(CFR), bit(RW)}) {
		write_file(dir.file("dst"), {});
		UniqueFd source = open_file(dir.file("src"), O_RDONLY);
		UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
		rlimit small = saved;
		small.rlim_cur = limit;
		assert_int_equal(::setrlimit(RLIMIT_FSIZE, &small), 0);
		CopyOutcome outcome = execute_copy(copy_request(0, 0, big_size, methods),
						   source.get(), destination.get(), {});
		assert_int_equal(::setrlimit(RLIMIT_FSIZE, &saved), 0);

		assert_int_equal(outcome.result.status, EFBIG);
		assert_true(outcome.result.bytes_done == limit);
		auto written = read_file(dir.file("dst"));
		assert_int_equal(written.size(), limit);
		assert_memory_equal(written.data(), pattern(big_size).data(), limit);
	}
}

// copy_file_range between different filesystem types fails with EXDEV;
// the engine must then fall back to read/write for the whole range.
void test_cross_filesystem_falls_back(void **state)
{
	TempDir &dir = temp_dir(state);
	struct statfs shm{}, tmp{};
	if (::statfs("/dev/shm", &shm) != 0 || ::statfs(dir.path().c_str(), &tmp) != 0 ||
	    shm.f_type == tmp.f_type || ::access("/dev/shm", W_OK) != 0) {
		skip();
	}
	std::string other = "/dev/shm/copyoffload-test-" + std::to_string(::getpid());
	auto bytes = pattern(300000, 3);
	write_file(other, bytes);
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(other, O_RDONLY);
	::unlink(other.c_str());
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	CopyOutcome outcome = execute_copy(copy_request(0, 0, bytes.size()), source.get(),
					   destination.get(), {});
	assert_int_equal(outcome.result.status, 0);
	assert_true(outcome.result.bytes_by_method[RW] == bytes.size());
	assert_true(outcome.result.bytes_by_method[CFR] == 0);
	auto copied = read_file(dir.file("dst"));
	assert_int_equal(copied.size(), bytes.size());
	assert_memory_equal(copied.data(), bytes.data(), bytes.size());

	// Without read/write in the mask, the EXDEV is the answer.
	outcome = execute_copy(copy_request(0, 0, bytes.size(), bit(CFR)), source.get(),
			       destination.get(), {});
	assert_int_equal(outcome.result.status, EXDEV);
	assert_true(outcome.result.bytes_done == 0);
}

/* --- hooks, segment size, method order -------------------------------- */

struct HookedRun {
	FakeRun run;
	std::vector<std::uint64_t> paced;    // bytes asked for, in order
	std::vector<std::uint64_t> progress; // bytes done, as reported
};

// Runs `where` with the real planner under `order` against fakes, with
// pacing and progress hooks that record what they see.
HookedRun run_hooked(const CopyGeometry &where, std::span<const copyoffload_method> order,
		     SliceSizes slices, Scripts scripts = {}, bool allow_pacing = true)
{
	HookedRun hooked;
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<FakeBackend>(CLONE, std::move(scripts.clone),
							 hooked.run.calls, nullptr));
	backends.push_back(std::make_unique<FakeBackend>(CFR, std::move(scripts.cfr),
							 hooked.run.calls, nullptr));
	backends.push_back(std::make_unique<FakeBackend>(RW, std::move(scripts.rw),
							 hooked.run.calls, nullptr));
	EngineHooks hooks{
		.pace = [&](std::uint64_t bytes, const std::stop_token &) {
			hooked.paced.push_back(bytes);
			return allow_pacing;
		},
		.progress = [&](std::uint64_t done) { hooked.progress.push_back(done); },
	};
	CopyEngine engine(std::move(backends));
	CopyRange range{.source = 3, .destination = 4, .source_offset = where.source_offset,
			.destination_offset = where.destination_offset, .length = where.length};
	hooked.run.result = engine.copy(range, plan_copy(ALL, 0, where, order), {}, slices, hooks);
	return hooked;
}

void test_pacing_applies_to_data_not_clones(void **)
{
	// 16-byte blocks: head 6 and tail 10 copied in slices of 4, middle
	// 32 cloned in one slice of 32.
	HookedRun hooked = run_hooked(
		{.source_offset = 10, .destination_offset = 10, .length = 48, .block_size = 16},
		default_method_order, {.copy = 4, .clone = 32});
	assert_result(hooked.run.result, 0, 16, 0, 32);
	assert_true(hooked.paced == (std::vector<std::uint64_t>{4, 2, 4, 4, 2}));
	// Progress after every slice, ending at the whole range.
	assert_true(hooked.progress ==
		    (std::vector<std::uint64_t>{4, 6, 38, 42, 46, 48}));

	// Pacing that is stopped ends the request where it stands.
	hooked = run_hooked({.source_offset = 0, .destination_offset = 0, .length = 10},
			    std::vector<copyoffload_method>{CFR}, {.copy = 4, .clone = 16}, {},
			    false);
	assert_int_equal(hooked.run.result.status, ECANCELED);
	assert_true(hooked.run.result.bytes_done == 0);
	assert_true(hooked.run.calls.empty());
	assert_false(hooked.run.result.failed_method.has_value());
}

void test_segment_bounds_every_slice(void **)
{
	SliceSizes slices = slices_for_segment(8);
	assert_true(slices.copy == 8 && slices.clone == 8);
	HookedRun hooked = run_hooked(
		{.source_offset = 0, .destination_offset = 0, .length = 40, .block_size = 4},
		default_method_order, slices);
	assert_result(hooked.run.result, 0, 0, 0, 40);
	for (const CopyRange &slice : hooked.run.of(CLONE)) {
		assert_true(slice.length == 8);
	}
	assert_int_equal(hooked.run.of(CLONE).size(), 5);
	// 0 keeps the defaults.
	assert_true(slices_for_segment(0).copy == 0);
}

void test_order_and_failed_method(void **)
{
	// Read/write preferred: used although copy_file_range is allowed.
	HookedRun hooked = run_hooked({.source_offset = 0, .destination_offset = 0, .length = 10},
				      std::vector<copyoffload_method>{RW, CFR},
				      {.copy = 4, .clone = 16});
	assert_result(hooked.run.result, 0, 0, 10);
	assert_true(hooked.run.result.used(RW));
	assert_false(hooked.run.result.used(CFR));

	// A real error names the method it came from.
	hooked = run_hooked({.source_offset = 0, .destination_offset = 0, .length = 10},
			    std::vector<copyoffload_method>{CFR, RW}, {.copy = 4, .clone = 16},
			    {.cfr = {{}, {2, ENOSPC}}});
	assert_result(hooked.run.result, ENOSPC, 6, 0);
	assert_true(hooked.run.result.failed_method == CFR);
	assert_true(hooked.run.result.used(CFR));
	assert_false(hooked.run.result.used(RW));

	// A refusal that hands over is no failure of that method.
	hooked = run_hooked({.source_offset = 0, .destination_offset = 0, .length = 10},
			    std::vector<copyoffload_method>{CFR, RW}, {.copy = 4, .clone = 16},
			    {.cfr = {{0, EXDEV}}});
	assert_result(hooked.run.result, 0, 0, 10);
	assert_false(hooked.run.result.failed_method.has_value());
	assert_false(hooked.run.result.used(CFR));
}

/* --- execute_copy's checks -------------------------------------------- */

void test_execute_rejections(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("src"), pattern(10));
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
	UniqueFd directory = open_file(dir.path(), O_RDONLY | O_DIRECTORY);

	CopyOutcome outcome = execute_copy(copy_request(0, 0, 10), directory.get(),
					   destination.get(), {});
	assert_int_equal(outcome.result.status, EBADF);
	assert_false(outcome.rejection.empty());

	// Bad descriptors are reported before unsupported methods and flags.
	outcome = execute_copy(copy_request(0, 0, 10, bit(DEVICE)), directory.get(),
			       destination.get(), {});
	assert_int_equal(outcome.result.status, EBADF);
	outcome = execute_copy(copy_request(0, 0, 10, bit(CFR), COPYOFFLOAD_COPY_CLONE_ONLY),
			       directory.get(), destination.get(), {});
	assert_int_equal(outcome.result.status, EBADF);

	// Only a method that is not implemented, even for zero bytes.
	for (std::uint64_t length : {10u, 0u}) {
		outcome = execute_copy(copy_request(0, 0, length, bit(DEVICE)), source.get(),
				       destination.get(), {});
		assert_int_equal(outcome.result.status, EOPNOTSUPP);
		assert_false(outcome.rejection.empty());
	}

	// An all-or-nothing clone without the clone method, even for zero bytes.
	for (std::uint64_t length : {10u, 0u}) {
		outcome = execute_copy(copy_request(0, 0, length, no_clone,
					       COPYOFFLOAD_COPY_CLONE_ONLY),
				       source.get(), destination.get(), {});
		assert_int_equal(outcome.result.status, EINVAL);
		assert_true(outcome.result.bytes_done == 0);
		assert_false(outcome.rejection.empty());
	}

	assert_int_equal(read_file(dir.file("dst")).size(), 0); // nothing was written
}

void test_execute_zero_length(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("src"), pattern(10));
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	// Even past the source's end: nothing to copy is success, also for an
	// all-or-nothing clone at unaligned offsets.
	for (std::uint32_t flags : {0u, COPYOFFLOAD_COPY_CLONE_ONLY}) {
		CopyOutcome outcome = execute_copy(copy_request(1000, 5001, 0,
								COPYOFFLOAD_METHODS_ALL, flags),
						   source.get(), destination.get(), {});
		assert_int_equal(outcome.result.status, 0);
		assert_true(outcome.result.bytes_done == 0);
		assert_false(outcome.result.dominant_method().has_value());
		assert_int_equal(read_file(dir.file("dst")).size(), 0);
	}
}

void test_execute_same_file(void **state)
{
	TempDir &dir = temp_dir(state);
	auto bytes = pattern(1000);
	write_file(dir.file("f"), bytes);
	UniqueFd source = open_file(dir.file("f"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("f"), O_WRONLY);

	CopyOutcome outcome = execute_copy(copy_request(0, 100, 200), source.get(),
					   destination.get(), {});
	assert_int_equal(outcome.result.status, EINVAL);

	// Disjoint ranges within one file are copied.
	outcome = execute_copy(copy_request(0, 500, 500), source.get(), destination.get(), {});
	assert_int_equal(outcome.result.status, 0);
	auto after = read_file(dir.file("f"));
	assert_memory_equal(after.data() + 500, bytes.data(), 500);
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, make_temp_dir, remove_temp_dir)

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_result_accounting),
		cmocka_unit_test(test_slices_cover_range),
		cmocka_unit_test(test_fallback_before_any_byte),
		cmocka_unit_test(test_no_fallback_after_progress),
		cmocka_unit_test(test_no_fallback_for_real_errors),
		cmocka_unit_test(test_error_keeps_exact_prefix),
		cmocka_unit_test(test_last_method_unsupported),
		cmocka_unit_test(test_short_slice_without_error_is_eio),
		cmocka_unit_test(test_cancel_between_slices),
		cmocka_unit_test(test_cancel_before_start),
		cmocka_unit_test(test_clone_middle_copy_edges),
		cmocka_unit_test(test_tail_at_eof_is_cloned),
		cmocka_unit_test(test_refused_clone_falls_back_per_segment),
		cmocka_unit_test(test_refused_clone_after_clone_progress),
		cmocka_unit_test(test_copy_fallback_does_not_stick),
		cmocka_unit_test(test_clone_real_error_ends_request),
		cmocka_unit_test(test_mask_without_clone),
		cmocka_unit_test(test_mask_with_only_clone),
		cmocka_unit_test(test_clone_only_never_falls_back),
		cmocka_unit_test(test_clone_slices_stay_aligned),
		cmocka_unit_test(test_cancel_between_clone_slices),
		cmocka_unit_test(test_segments_must_tile_the_range),
		cmocka_unit_test(test_clone_backend_errors),
		cmocka_unit_test(test_pacing_applies_to_data_not_clones),
		cmocka_unit_test(test_segment_bounds_every_slice),
		cmocka_unit_test(test_order_and_failed_method),
		WITH_DIR(test_copy_file_range_copies_exactly),
		WITH_DIR(test_read_write_copies_exactly),
		WITH_DIR(test_source_eof_is_enodata),
		WITH_DIR(test_write_error_reports_exact_prefix),
		WITH_DIR(test_cross_filesystem_falls_back),
		WITH_DIR(test_execute_rejections),
		WITH_DIR(test_execute_zero_length),
		WITH_DIR(test_execute_same_file),
	};
	return cmocka_run_group_tests_name("copyoffloadd_copy_engine", tests, nullptr, nullptr);
}
