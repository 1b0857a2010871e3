/*
 * The module's reply poller (vfs_copyoffload/reply_poll.c): its arithmetic,
 * a model of the wake-up it converges to, and the real timerfd on a real
 * tevent loop with a socket pair standing in for the helper's socket.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "reply_poll.h"

#define LEAD_USEC 60

static void test_delay_leaves_the_lead(void **state)
{
	(void)state;
	assert_int_equal(copyoffload_reply_poll_delay(300, LEAD_USEC), 240);
	/* Never 0, which would disarm the timer: at once instead. */
	assert_int_equal(copyoffload_reply_poll_delay(LEAD_USEC, LEAD_USEC), 1);
	assert_int_equal(copyoffload_reply_poll_delay(10, LEAD_USEC), 1);
	assert_int_equal(copyoffload_reply_poll_delay(0, LEAD_USEC), 1);
}

static void test_expectation_follows_samples(void **state)
{
	(void)state;
	/* The first sample is taken as it is. */
	assert_int_equal(copyoffload_reply_expectation(0, 250), 250);
	/* Then a quarter of each. */
	assert_int_equal(copyoffload_reply_expectation(400, 200), 350);
	assert_int_equal(copyoffload_reply_expectation(200, 20200), 5200);
	/* 0 stays "none yet" only before any sample. */
	assert_int_equal(copyoffload_reply_expectation(0, 0), 1);
}

/*
 * The claim in reply_poll.c: without knowing the wake-up cost, the wake-up
 * settles before the reply, and the polling after it within the lead, as
 * long as the lead exceeds that cost. smbd sends at 0, the reply comes at
 * copy_usec, and a wake-up (by the timer or by the reply) takes wake_usec.
 */
static uint64_t model_sample(uint64_t expected, uint64_t copy_usec,
			     uint64_t wake_usec, uint64_t *polled_usec)
{
	uint64_t awake;

	*polled_usec = 0;
	if (expected == 0) {
		return copy_usec + wake_usec; /* no arming: the reply wakes it */
	}
	awake = copyoffload_reply_poll_delay(expected, LEAD_USEC) + wake_usec;
	if (awake <= copy_usec && copy_usec - awake <= 2 * LEAD_USEC) {
		*polled_usec = copy_usec - awake;
		return copy_usec; /* found while polling */
	}
	if (awake <= copy_usec) {
		return copy_usec + wake_usec; /* polled too early, slept again */
	}
	return awake; /* already waking when the reply came */
}

static void test_wake_up_settles_before_the_reply(void **state)
{
	static const uint64_t copies[] = {30, 250, 900, 20000}; /* 30: 4 KiB */
	static const uint64_t wakes[] = {5, 25, 45};
	(void)state;

	for (size_t c = 0; c < sizeof(copies) / sizeof(copies[0]); c++) {
		for (size_t w = 0; w < sizeof(wakes) / sizeof(wakes[0]); w++) {
			uint64_t expected = 0;
			uint64_t polled = 0;
			uint64_t sample = 0;

			for (int chunk = 0; chunk < 40; chunk++) {
				sample = model_sample(expected, copies[c], wakes[w],
						      &polled);
				expected = copyoffload_reply_expectation(expected,
									 sample);
			}
			if (copies[c] <= wakes[w]) {
				/* A copy shorter than a wake-up: armed at once. */
				assert_true(sample <= 1 + wakes[w]);
				continue;
			}
			/* The reply finds smbd awake, polling no longer than the lead. */
			assert_int_equal(sample, copies[c]);
			assert_true(polled <= LEAD_USEC);
		}
	}
}

struct fixture {
	TALLOC_CTX *mem;
	struct tevent_context *ev;
	int sockets[2]; /* [0] smbd's end, [1] the helper's */
	struct copyoffload_reply_poll *poller;
	int readable_calls;
	bool guard_fired;
};

static void on_readable(void *private_data)
{
	struct fixture *f = private_data;

	f->readable_calls++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = talloc_new(NULL);
	f->ev = tevent_context_init(f->mem);
	assert_non_null(f->ev);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0,
				    f->sockets), 0);
	f->poller = copyoffload_reply_poll_create(f->mem, f->ev, f->sockets[0],
						  LEAD_USEC, on_readable, f);
	assert_non_null(f->poller);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	talloc_free(f->mem); /* the poller closes its timerfd */
	close(f->sockets[0]);
	close(f->sockets[1]);
	free(f);
	return 0;
}

static void guard_due(struct tevent_context *ev, struct tevent_timer *te,
		      struct timeval now, void *private_data)
{
	struct fixture *f = private_data;

	f->guard_fired = true;
}

/* Runs the loop until the guard timer (ms from now) has fired. */
static void run_for(struct fixture *f, int ms)
{
	struct tevent_timer *guard = tevent_add_timer(
		f->ev, f->mem, tevent_timeval_current_ofs(0, ms * 1000),
		guard_due, f);

	assert_non_null(guard);
	f->guard_fired = false;
	while (!f->guard_fired) {
		assert_int_equal(tevent_loop_once(f->ev), 0);
	}
}

static void helper_replies(struct fixture *f)
{
	assert_int_equal(send(f->sockets[1], "r", 1, 0), 1);
}

static void test_reply_due_is_found_by_polling(void **state)
{
	struct fixture *f = *state;
	uint64_t armed_at = copyoffload_monotonic_usec();

	copyoffload_reply_poll_arm(f->poller, 2000 + LEAD_USEC);
	helper_replies(f);
	run_for(f, 20);
	assert_int_equal(f->readable_calls, 1);
	/* Not before the timer: the wake-up waited for the expected time. */
	assert_true(copyoffload_monotonic_usec() - armed_at >= 2000);
}

static void test_reply_late_is_left_to_the_loop(void **state)
{
	struct fixture *f = *state;

	copyoffload_reply_poll_arm(f->poller, LEAD_USEC + 100);
	run_for(f, 10); /* fires, polls 2 x lead, gives up */
	assert_int_equal(f->readable_calls, 0);

	/* Once given up, a late reply is smbd's ordinary fd event's. */
	helper_replies(f);
	run_for(f, 10);
	assert_int_equal(f->readable_calls, 0);
}

static void test_disarmed_poller_does_not_wake(void **state)
{
	struct fixture *f = *state;

	copyoffload_reply_poll_arm(f->poller, 3000);
	copyoffload_reply_poll_disarm(f->poller);
	helper_replies(f);
	run_for(f, 10);
	assert_int_equal(f->readable_calls, 0);

	/* Disarming twice, or without arming, is harmless. */
	copyoffload_reply_poll_disarm(f->poller);
	copyoffload_reply_poll_arm(f->poller, 500);
	run_for(f, 10);
	assert_int_equal(f->readable_calls, 1);
}

static void test_rearming_replaces_the_wake_up(void **state)
{
	struct fixture *f = *state;

	copyoffload_reply_poll_arm(f->poller, 2000);
	copyoffload_reply_poll_arm(f->poller, 200000); /* 0.2 s */
	helper_replies(f);
	run_for(f, 20);
	assert_int_equal(f->readable_calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_leaves_the_lead),
		cmocka_unit_test(test_expectation_follows_samples),
		cmocka_unit_test(test_wake_up_settles_before_the_reply),
		cmocka_unit_test_setup_teardown(test_reply_due_is_found_by_polling,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_reply_late_is_left_to_the_loop,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_disarmed_poller_does_not_wake,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rearming_replaces_the_wake_up,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
