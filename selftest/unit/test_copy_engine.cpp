// The copy planner, the slice loop with its fallback and cancellation rules
// (against scripted fake backends), the real backends on real files, and
// execute_copy's order of checks.

#include "copy_engine.hpp"
#include "copy_service.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/vfs.h>

#include <cerrno>
#include <functional>
#include <optional>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;

namespace {

constexpr std::uint32_t bit(copyoffload_method m) { return COPYOFFLOAD_METHOD_BIT(m); }
constexpr auto CFR = COPYOFFLOAD_METHOD_COPY_FILE_RANGE;
constexpr auto RW = COPYOFFLOAD_METHOD_READ_WRITE;
constexpr auto CLONE = COPYOFFLOAD_METHOD_CLONE;
constexpr auto DEVICE = COPYOFFLOAD_METHOD_DEVICE;

/* --- planner ---------------------------------------------------------- */

void assert_plan(std::uint32_t mask, std::uint32_t flags,
		 std::vector<copyoffload_method> expected, int error)
{
	CopyPlan plan = plan_copy(mask, flags);
	assert_int_equal(plan.error, error);
	assert_int_equal(plan.methods.size(), expected.size());
	for (std::size_t i = 0; i < expected.size(); i++) {
		assert_int_equal(plan.methods[i], expected[i]);
	}
}

void test_planner(void **)
{
	assert_plan(COPYOFFLOAD_METHODS_ALL, 0, {CFR, RW}, 0);
	assert_plan(bit(CFR), 0, {CFR}, 0);
	assert_plan(bit(RW), 0, {RW}, 0);
	assert_plan(bit(CLONE) | bit(RW), 0, {RW}, 0);
	assert_plan(bit(DEVICE) | bit(CFR), 0, {CFR}, 0);
	// Only methods that are not implemented yet.
	assert_plan(bit(CLONE), 0, {}, EOPNOTSUPP);
	assert_plan(bit(DEVICE), 0, {}, EOPNOTSUPP);
	assert_plan(bit(CLONE) | bit(DEVICE), 0, {}, EOPNOTSUPP);
	// All-or-nothing clones are not implemented yet either.
	assert_plan(COPYOFFLOAD_METHODS_ALL, COPYOFFLOAD_COPY_CLONE_ONLY, {}, EOPNOTSUPP);
}

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

// Follows a script, one step per call (the last step repeats), and records
// the slices it was given.
class FakeBackend final : public CopyBackend {
public:
	FakeBackend(copyoffload_method method, std::vector<Step> script,
		    std::vector<CopyRange> &calls, std::function<void()> on_call = {})
		: method_(method), script_(std::move(script)), calls_(calls),
		  on_call_(std::move(on_call))
	{
	}
	copyoffload_method method() const override { return method_; }
	bool is_unsupported(int error) const override { return error == EXDEV; }
	BackendProgress copy_slice(const CopyRange &slice) override
	{
		std::size_t index = std::min(step_++, script_.size() - 1);
		calls_.push_back(slice);
		if (on_call_) {
			on_call_();
		}
		const Step &step = script_[index];
		return {step.bytes.value_or(slice.length), step.error};
	}

private:
	copyoffload_method method_;
	std::vector<Step> script_;
	std::vector<CopyRange> &calls_;
	std::function<void()> on_call_;
	std::size_t step_ = 0;
};

struct FakeRun {
	std::vector<CopyRange> first_calls;
	std::vector<CopyRange> second_calls;
	CopyResult result;
};

// Copies 10 bytes from offset 100 to 200 in slices of 4 with CFR then RW.
FakeRun run_fakes(std::vector<Step> first, std::vector<Step> second,
		  std::stop_source stop = {}, std::function<void()> on_first_call = {})
{
	FakeRun run;
	std::vector<std::unique_ptr<CopyBackend>> backends;
	backends.push_back(std::make_unique<FakeBackend>(CFR, std::move(first),
							 run.first_calls, on_first_call));
	backends.push_back(std::make_unique<FakeBackend>(RW, std::move(second),
							 run.second_calls));
	CopyEngine engine(std::move(backends), 4);
	CopyRange range{.source = 3, .destination = 4, .source_offset = 100,
			.destination_offset = 200, .length = 10};
	run.result = engine.copy(range, CopyPlan{{CFR, RW}, 0}, stop.get_token());
	return run;
}

void assert_result(const CopyResult &result, int status, std::uint64_t cfr, std::uint64_t rw)
{
	assert_int_equal(result.status, status);
	assert_true(result.bytes_by_method[CFR] == cfr);
	assert_true(result.bytes_by_method[RW] == rw);
	assert_true(result.bytes_done == cfr + rw);
}

void test_slices_cover_range(void **)
{
	FakeRun run = run_fakes({{}}, {{}});
	assert_result(run.result, 0, 10, 0);
	assert_int_equal(run.first_calls.size(), 3);
	const std::uint64_t lengths[] = {4, 4, 2};
	for (std::size_t i = 0; i < 3; i++) {
		assert_true(run.first_calls[i].length == lengths[i]);
		assert_true(run.first_calls[i].source_offset == 100 + 4 * i);
		assert_true(run.first_calls[i].destination_offset == 200 + 4 * i);
		assert_int_equal(run.first_calls[i].source, 3);
		assert_int_equal(run.first_calls[i].destination, 4);
	}
	assert_true(run.second_calls.empty());
}

void test_fallback_before_any_byte(void **)
{
	FakeRun run = run_fakes({{0, EXDEV}}, {{}});
	assert_result(run.result, 0, 0, 10);
	assert_int_equal(run.first_calls.size(), 1);
	assert_int_equal(run.second_calls.size(), 3);
	assert_true(run.second_calls[0].source_offset == 100);
}

void test_no_fallback_after_progress(void **)
{
	// First slice done, then "unsupported": that is now a real error.
	FakeRun run = run_fakes({{}, {0, EXDEV}}, {{}});
	assert_result(run.result, EXDEV, 4, 0);
	assert_true(run.second_calls.empty());

	// Partial progress within the very first slice also forbids it.
	run = run_fakes({{1, EXDEV}}, {{}});
	assert_result(run.result, EXDEV, 1, 0);
	assert_true(run.second_calls.empty());
}

void test_no_fallback_for_real_errors(void **)
{
	FakeRun run = run_fakes({{0, ENOSPC}}, {{}});
	assert_result(run.result, ENOSPC, 0, 0);
	assert_true(run.second_calls.empty());
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
	assert_int_equal(run.first_calls.size(), 2);
}

void test_cancel_before_start(void **)
{
	std::stop_source stop;
	stop.request_stop();
	FakeRun run = run_fakes({{}}, {{}}, stop);
	assert_result(run.result, ECANCELED, 0, 0);
	assert_true(run.first_calls.empty());
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
					   source.get(), destination.get(), {}, 1 << 20);
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

void test_copy_file_range_copies_exactly(void **state)
{
	copy_and_verify(temp_dir(state), COPYOFFLOAD_METHODS_ALL, CFR, 0, 0, big_size);
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

	// Bad descriptors are reported before unsupported methods.
	outcome = execute_copy(copy_request(0, 0, 10, bit(CLONE)), directory.get(),
			       destination.get(), {});
	assert_int_equal(outcome.result.status, EBADF);

	outcome = execute_copy(copy_request(0, 0, 10, bit(CLONE) | bit(DEVICE)), source.get(),
			       destination.get(), {});
	assert_int_equal(outcome.result.status, EOPNOTSUPP);
	assert_false(outcome.rejection.empty());

	outcome = execute_copy(copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL,
				       COPYOFFLOAD_COPY_CLONE_ONLY),
			       source.get(), destination.get(), {});
	assert_int_equal(outcome.result.status, EOPNOTSUPP);

	assert_int_equal(read_file(dir.file("dst")).size(), 0); // nothing was written
}

void test_execute_zero_length(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("src"), pattern(10));
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	// Even past the source's end: nothing to copy is success.
	CopyOutcome outcome = execute_copy(copy_request(1000, 5000, 0), source.get(),
					   destination.get(), {});
	assert_int_equal(outcome.result.status, 0);
	assert_true(outcome.result.bytes_done == 0);
	assert_false(outcome.result.dominant_method().has_value());
	assert_int_equal(read_file(dir.file("dst")).size(), 0);
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
		cmocka_unit_test(test_planner),
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
