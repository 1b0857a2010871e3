// Per-share state of copyoffloadd: the bandwidth limiter, the latency
// histogram, the statistics and the registry that keys them by share name.
#include "latency_histogram.hpp"
#include "rate_limiter.hpp"
#include "share_registry.hpp"
#include "share_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace std::chrono_literals;

namespace {

using Clock = RateLimiter::Clock;

void test_rate_limiter_schedule(void **)
{
	RateLimiter limiter;
	const Clock::time_point t0 = Clock::now();

	// Unlimited: every slice may start at once.
	assert_true(limiter.reserve(1 << 30, t0) == t0);
	assert_true(limiter.reserve(1 << 30, t0) == t0);

	// 1 MiB/s: each slice starts when the slices before it have had
	// their time; an idle limiter starts the first at once.
	limiter.set_rate(1 << 20);
	assert_int_equal(limiter.rate(), 1 << 20);
	assert_true(limiter.reserve(512 << 10, t0) == t0);
	assert_true(limiter.reserve(512 << 10, t0) == t0 + 500ms);
	assert_true(limiter.reserve(1 << 20, t0 + 100ms) == t0 + 1s);
	assert_true(limiter.reserve(1, t0 + 1s) == t0 + 2s);
	// After an idle spell nothing is owed, and no credit was saved up.
	const Clock::time_point later = t0 + 10s;
	assert_true(limiter.reserve(2 << 20, later) == later);
	assert_true(limiter.reserve(1, later) == later + 2s);

	// Lifting the limit lets the next slice go at once.
	limiter.set_rate(0);
	assert_true(limiter.reserve(1 << 30, later) == later);

	// Huge slices at tiny rates do not overflow the clock.
	limiter.set_rate(1);
	Clock::time_point start = limiter.reserve(std::uint64_t{1} << 30, later);
	assert_true(start >= later);
	assert_true(limiter.reserve(1, later) > later + std::chrono::hours(24 * 365));
}

// Without a limit (or with an idle share) acquire returns at once: no
// wait for a time already past, which the kernel would round up by its
// timer slack (50 us) and charge every piece of every copy.
void test_rate_limiter_free_pass_does_not_sleep(void **)
{
	RateLimiter limiter;
	std::stop_source stop;
	const auto started = Clock::now();
	for (int i = 0; i < 2000; i++) {
		assert_true(limiter.acquire(1 << 20, stop.get_token()));
	}
	// 2000 slack sleeps would take 100 ms at least.
	assert_true(Clock::now() - started < 50ms);
	assert_true(limiter.ready_at() == Clock::time_point{});

	// With a limit, ready_at says when the next slice may start at once.
	limiter.set_rate(1 << 20);
	const Clock::time_point t0 = Clock::now();
	assert_true(limiter.reserve(512 << 10, t0) == t0);
	assert_true(limiter.ready_at() == t0 + 500ms);
}

void test_rate_limiter_waits_and_stops(void **)
{
	RateLimiter limiter;
	limiter.set_rate(10 << 20); // 10 MiB/s
	std::stop_source stop;
	auto started = Clock::now();
	// 3 MiB: the first MiB goes at once, the rest waits 100 ms per MiB.
	for (int i = 0; i < 3; i++) {
		assert_true(limiter.acquire(1 << 20, stop.get_token()));
	}
	auto waited = Clock::now() - started;
	assert_true(waited >= 190ms);
	assert_true(waited < 2s);

	// A stop request ends a long wait early, and says so.
	limiter.set_rate(1 << 10); // the next slice is due in ~100 s
	std::jthread stopper([&] {
		std::this_thread::sleep_for(50ms);
		stop.request_stop();
	});
	started = Clock::now();
	assert_false(limiter.acquire(100 << 10, stop.get_token()));
	assert_false(limiter.acquire(1, stop.get_token()));
	assert_true(Clock::now() - started < 5s);
}

// A new limit applies to what is booked and not yet due: raising it must
// not leave the share waiting out bookings made at the old rate.
void test_rate_limiter_rescales_bookings(void **)
{
	RateLimiter limiter;
	limiter.set_rate(1 << 10); // 1 KiB/s
	const Clock::time_point t0 = Clock::now();
	assert_true(limiter.reserve(100 << 10, t0) == t0);
	assert_true(limiter.ready_at() == t0 + 100s);

	// 1000 times the rate: what is left is due in about 0.1 s.
	limiter.set_rate(1000 << 10);
	assert_true(limiter.ready_at() > t0 + 50ms);
	assert_true(limiter.ready_at() < Clock::now() + 101ms);
	// Lowered again, it takes about 100 s once more.
	limiter.set_rate(1 << 10);
	assert_true(limiter.ready_at() > Clock::now() + 50s);
	// Lifted and set again: nothing is owed.
	limiter.set_rate(0);
	assert_true(limiter.ready_at() == Clock::time_point{});
	limiter.set_rate(1 << 10);
	const Clock::time_point now = Clock::now();
	assert_true(limiter.reserve(1, now) == now);
}

void test_histogram_buckets(void **)
{
	using H = LatencyHistogram;
	// Exact below 16, then 8 buckets per power of two.
	for (std::uint64_t v = 0; v < 16; v++) {
		assert_int_equal(H::bucket_of(v), v);
		assert_int_equal(H::bucket_upper_bound(v), v);
	}
	assert_int_equal(H::bucket_of(16), 16);
	assert_int_equal(H::bucket_of(17), 16);
	assert_int_equal(H::bucket_of(18), 17);
	assert_int_equal(H::bucket_upper_bound(16), 17);
	// Every value lies in its bucket, whose bound is at most 1/8 above.
	std::mt19937_64 random(7);
	for (int i = 0; i < 100000; i++) {
		std::uint64_t v = random() >> (random() % 64);
		if (v >= (std::uint64_t{1} << 41)) {
			assert_int_equal(H::bucket_of(v), H::bucket_count - 1);
			continue;
		}
		std::size_t b = H::bucket_of(v);
		assert_true(b < H::bucket_count - 1);
		std::uint64_t upper = H::bucket_upper_bound(b);
		assert_true(upper >= v);
		assert_true(upper - v <= v / 8);
		if (b > 0) {
			assert_true(H::bucket_upper_bound(b - 1) < v);
		}
	}
}

void test_histogram_percentiles(void **)
{
	LatencyHistogram h;
	assert_int_equal(h.percentile(0.5), 0);
	assert_int_equal(h.max(), 0);
	for (std::uint64_t v = 1; v <= 100; v++) {
		h.record(v * 1000);
	}
	assert_int_equal(h.count(), 100);
	assert_int_equal(h.max(), 100000);
	auto near = [](std::uint64_t reported, std::uint64_t exact) {
		return reported >= exact && reported - exact <= exact / 8;
	};
	assert_true(near(h.percentile(0.50), 50000));
	assert_true(near(h.percentile(0.90), 90000));
	assert_true(near(h.percentile(0.99), 99000));
	assert_int_equal(h.percentile(1.0), 100000); // capped at the largest value
	assert_true(h.percentile(0.5) <= h.percentile(0.9));

	LatencyHistogram one;
	one.record(12345);
	assert_int_equal(one.percentile(0.5), 12345);
	assert_int_equal(one.percentile(0.99), 12345);
}

CopyResult result_of(int status, std::initializer_list<std::uint64_t> bytes,
		     std::initializer_list<std::uint64_t> usec,
		     std::optional<copyoffload_method> failed = std::nullopt)
{
	CopyResult result;
	result.status = status;
	unsigned m = 0;
	for (std::uint64_t b : bytes) {
		result.credit(static_cast<copyoffload_method>(m++), b);
	}
	m = 0;
	for (std::uint64_t u : usec) {
		result.usec_by_method[m++] = u;
	}
	result.failed_method = failed;
	return result;
}

void assert_record_decodes(const copyoffload_share_stats &record)
{
	copyoffload_stats_reply reply{};
	reply.count = 1;
	reply.records[0] = record;
	std::vector<std::uint8_t> buf(COPYOFFLOAD_STATS_REPLY_MAX_SIZE);
	std::size_t size = copyoffload_encode_stats_reply(buf.data(), buf.size(), &reply);
	auto decoded = std::make_unique<copyoffload_stats_reply>();
	assert_int_equal(copyoffload_decode_stats_reply(buf.data(), size, decoded.get()),
			 COPYOFFLOAD_DECODE_OK);
}

void test_share_stats_counts(void **)
{
	ShareStats stats;
	copyoffload_share_stats record{};
	stats.fill(record);
	assert_record_decodes(record);
	assert_int_equal(record.slots[COPYOFFLOAD_STATS_TOTAL].requests, 0);

	// A clone-first copy: clone middle, copy_file_range edges.
	stats.record(result_of(0, {1 << 20, 8192, 0, 0}, {30, 50, 0, 0}), 400);
	// A read/write copy.
	stats.record(result_of(0, {0, 0, 0, 4096}, {0, 0, 0, 70}), 100);
	// A copy that failed in copy_file_range after 1000 bytes.
	stats.record(result_of(ENOSPC, {0, 1000, 0, 0}, {0, 20, 0, 0},
			       COPYOFFLOAD_METHOD_COPY_FILE_RANGE),
		     60);
	// A copy refused before any I/O.
	stats.record(result_of(EBADF, {}, {}), 5);

	stats.fill(record);
	assert_record_decodes(record);
	const auto &total = record.slots[COPYOFFLOAD_STATS_TOTAL];
	assert_int_equal(total.requests, 4);
	assert_int_equal(total.errors, 2);
	assert_int_equal(total.bytes, (1 << 20) + 8192 + 4096 + 1000);
	assert_int_equal(total.latency_max_us, 400);
	const auto &clone = record.slots[COPYOFFLOAD_METHOD_CLONE];
	assert_int_equal(clone.requests, 1);
	assert_int_equal(clone.errors, 0);
	assert_int_equal(clone.bytes, 1 << 20);
	assert_int_equal(clone.latency_max_us, 30);
	const auto &cfr = record.slots[COPYOFFLOAD_METHOD_COPY_FILE_RANGE];
	assert_int_equal(cfr.requests, 2);
	assert_int_equal(cfr.errors, 1);
	assert_int_equal(cfr.bytes, 8192 + 1000);
	assert_int_equal(cfr.latency_max_us, 50);
	const auto &rw = record.slots[COPYOFFLOAD_METHOD_READ_WRITE];
	assert_int_equal(rw.requests, 1);
	assert_int_equal(rw.bytes, 4096);
	assert_int_equal(record.slots[COPYOFFLOAD_METHOD_DEVICE].requests, 0);
}

// CLONED messages claim what smbd cloned; claims the counters cannot add
// are refused whole, so every STATS reply still decodes (the methods' bytes
// must add up to the total without wrapping).
void test_share_stats_never_wrap(void **)
{
	ShareStats stats;
	stats.record(result_of(0, {0, 4096, 0, 0}, {0, 10, 0, 0}), 10);
	const std::uint64_t room = UINT64_MAX - 4096;
	assert_false(stats.record_inline_clones(1, room + 1));
	assert_true(stats.record_inline_clones(3, room));
	assert_false(stats.record_inline_clones(1, 1));
	// A copy's bytes that no longer fit are not counted either.
	stats.record(result_of(0, {0, 1, 0, 0}, {0, 10, 0, 0}), 10);

	copyoffload_share_stats record{};
	stats.fill(record);
	assert_record_decodes(record);
	assert_true(record.slots[COPYOFFLOAD_STATS_TOTAL].bytes == UINT64_MAX);
	assert_int_equal(record.slots[COPYOFFLOAD_STATS_TOTAL].requests, 4);
	assert_true(record.slots[COPYOFFLOAD_METHOD_CLONE].bytes == room);
}

copyoffload_share declaration(const char *name, std::uint64_t rate = 0, std::uint32_t limit = 0)
{
	using namespace test_support::methods;
	return test_support::share_declaration(
		1, name, {.order = {RW, CLONE}, .max_segment = 1 << 20, .rate = rate, .limit = limit});
}

void test_registry_keys_shares_by_name(void **)
{
	ShareRegistry registry;
	bool changed = false;
	ShareBinding a = registry.declare(declaration("projects", 1000, 2), changed);
	assert_true(changed);
	assert_non_null(a.share.get());
	assert_string_equal(a.share->name().c_str(), "projects");
	assert_int_equal(a.order.size(), 2);
	assert_int_equal(a.order[0], COPYOFFLOAD_METHOD_READ_WRITE);
	assert_int_equal(a.order[1], COPYOFFLOAD_METHOD_CLONE);
	assert_int_equal(a.max_segment, 1 << 20);
	assert_int_equal(a.share->rate_limiter().rate(), 1000);
	assert_int_equal(a.share->concurrency().limit(), 2);

	// Another connection, same name: the same state; the same limits are
	// no change; new ones replace them for everyone.
	ShareBinding again = registry.declare(declaration("projects", 1000, 2), changed);
	assert_false(changed);
	assert_ptr_equal(again.share.get(), a.share.get());
	registry.declare(declaration("projects", 5000, 0), changed);
	assert_true(changed);
	assert_int_equal(a.share->rate_limiter().rate(), 5000);
	assert_int_equal(a.share->concurrency().limit(), 0);

	ShareBinding other = registry.declare(declaration("home"), changed);
	assert_ptr_not_equal(other.share.get(), a.share.get());

	// Copies that name no share: the defaults, counted under "".
	ShareBinding none = registry.unattributed();
	assert_true(none.share->unattributed());
	assert_int_equal(none.order.size(), 4);
	assert_int_equal(none.order[0], COPYOFFLOAD_METHOD_CLONE);
	assert_int_equal(none.max_segment, 0);
}

void test_registry_in_flight_and_pages(void **)
{
	ShareRegistry registry;
	bool changed;
	ShareBinding a = registry.declare(declaration("b-share"), changed);
	{
		ShareState::InFlight first(a.share);
		ShareState::InFlight second(a.share);
		ShareState::InFlight moved = std::move(second);
		assert_int_equal(a.share->snapshot().in_flight, 2);
		a.share->concurrency().enter();
		a.share->concurrency().enter();
		a.share->concurrency().enter(); // more than in flight: clamped
		copyoffload_share_stats record = a.share->snapshot();
		assert_int_equal(record.running, 2);
		assert_record_decodes(record);
		a.share->concurrency().leave();
		a.share->concurrency().leave();
		a.share->concurrency().leave();
	}
	assert_int_equal(a.share->snapshot().in_flight, 0);

	for (int i = 0; i < 70; i++) {
		registry.declare(declaration(fmt::format("share{:02}", i).c_str()), changed);
	}
	// 72 shares in name order, "" first, 32 per page.
	std::vector<std::string> names;
	std::uint32_t cursor = 0, next = 0;
	int pages = 0;
	do {
		auto page = registry.page(cursor, COPYOFFLOAD_STATS_MAX_RECORDS, next);
		assert_true(page.size() <= COPYOFFLOAD_STATS_MAX_RECORDS);
		for (const auto &record : page) {
			names.emplace_back(record.name);
		}
		cursor = next;
		pages++;
	} while (cursor != 0);
	assert_int_equal(pages, 3);
	assert_int_equal(names.size(), 72);
	assert_string_equal(names[0].c_str(), "");
	assert_string_equal(names[1].c_str(), "b-share");
	assert_string_equal(names[2].c_str(), "share00");
	assert_string_equal(names[71].c_str(), "share69");
	// Past the end: nothing, and no next page.
	assert_true(registry.page(500, 32, next).empty());
	assert_int_equal(next, 0);
}

void test_registry_is_bounded(void **)
{
	ShareRegistry registry;
	bool changed;
	// Every name held, as by connections that declared them.
	std::vector<ShareBinding> held;
	for (std::size_t i = 0; i < ShareRegistry::max_shares; i++) {
		held.push_back(registry.declare(declaration(fmt::format("s{}", i).c_str()), changed));
		assert_non_null(held.back().share.get());
	}
	assert_null(registry.declare(declaration("one-too-many"), changed).share.get());
	// Known names still bind.
	assert_non_null(registry.declare(declaration("s7"), changed).share.get());

	// A name no connection holds any more makes room ([homes]: one name
	// per user), and is forgotten with its counters.
	held[9].share->stats().record_inline_clones(1, 4096);
	held[9] = {};
	ShareBinding newcomer = registry.declare(declaration("one-too-many"), changed);
	assert_non_null(newcomer.share.get());
	std::vector<std::string> names;
	std::uint32_t cursor = 0;
	do {
		for (const auto &record : registry.page(cursor, 500, cursor)) {
			names.emplace_back(record.name);
		}
	} while (cursor != 0);
	assert_int_equal(names.size(), ShareRegistry::max_shares + 1); // and the unattributed
	assert_true(std::find(names.begin(), names.end(), "s9") == names.end());
	assert_true(std::find(names.begin(), names.end(), "one-too-many") != names.end());
	// Declared again, it starts afresh.
	ShareBinding back = registry.declare(declaration("s9"), changed);
	assert_null(back.share.get()); // all held again: refused
	newcomer = {};
	back = registry.declare(declaration("s9"), changed);
	assert_non_null(back.share.get());
	assert_int_equal(back.share->snapshot().slots[COPYOFFLOAD_STATS_TOTAL].bytes, 0);
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_limiter_schedule),
		cmocka_unit_test(test_rate_limiter_free_pass_does_not_sleep),
		cmocka_unit_test(test_rate_limiter_waits_and_stops),
		cmocka_unit_test(test_rate_limiter_rescales_bookings),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_histogram_percentiles),
		cmocka_unit_test(test_share_stats_counts),
		cmocka_unit_test(test_share_stats_never_wrap),
		cmocka_unit_test(test_registry_keys_shares_by_name),
		cmocka_unit_test(test_registry_in_flight_and_pages),
		cmocka_unit_test(test_registry_is_bounded),
	};
	return cmocka_run_group_tests_name("copyoffloadd_share_limits", tests, nullptr, nullptr);
}
