/*
 * copyoffload: waking up shortly before the helper's reply is due.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * smbd sends a chunk to the helper and sleeps in epoll_wait until the reply
 * wakes it. Where an idle CPU halts (a VM's vCPU, a deep C-state), that
 * wake-up costs tens of microseconds, paid once per 1 MiB chunk
 * (docs/performance.md). Like the block layer's hybrid polling, smbd sleeps
 * through most of the expected time instead and polls the socket for the
 * rest: a timerfd (epoll_wait's own timeout has millisecond steps) wakes it
 * `lead` before the reply is due, so that the wake-up overlaps the copy.
 *
 * The expectation needs no calibration of the wake-up cost: a reply found
 * by a late wake-up makes the next expectation earlier, one found while
 * polling makes it the copy's own time, so the wake-up settles just before
 * the reply as long as `lead` exceeds the wake-up cost. The polling is
 * bounded to twice `lead`, after which smbd sleeps until the reply comes.
 */

#include <poll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "reply_poll.h"

struct copyoffload_reply_poll {
	struct tevent_fd *timer_fde;
	int timer_fd;
	int socket_fd;
	unsigned lead_usec;
	bool armed;
	void (*on_readable)(void *private_data);
	void *private_data;
};

uint64_t copyoffload_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t copyoffload_reply_poll_delay(uint64_t expected_usec,
				      unsigned lead_usec)
{
	/* A zero it_value would disarm the timer instead. */
	return expected_usec > lead_usec ? expected_usec - lead_usec : 1;
}

uint64_t copyoffload_reply_expectation(uint64_t expected_usec,
				       uint64_t sample_usec)
{
	if (sample_usec == 0) {
		sample_usec = 1; /* 0 means "none yet" */
	}
	if (expected_usec == 0) {
		return sample_usec;
	}
	/*
	 * A quarter of each sample: a few chunks follow a change, and one
	 * slow chunk (a flush, a busy disk) moves it a quarter of the way.
	 */
	return (3 * expected_usec + sample_usec) / 4;
}

static int reply_poll_destructor(struct copyoffload_reply_poll *poller)
{
	TALLOC_FREE(poller->timer_fde); /* before its descriptor goes */
	close(poller->timer_fd);
	return 0;
}

static void reply_poll_due(struct tevent_context *ev,
			   struct tevent_fd *fde,
			   uint16_t flags,
			   void *private_data)
{
	struct copyoffload_reply_poll *poller = talloc_get_type_abort(
		private_data, struct copyoffload_reply_poll);
	uint64_t expirations = 0;
	uint64_t until;

	if (read(poller->timer_fd, &expirations, sizeof(expirations)) !=
	    sizeof(expirations)) {
		return; /* disarmed after it expired: nothing is due */
	}
	poller->armed = false;
	until = copyoffload_monotonic_usec() + 2 * (uint64_t)poller->lead_usec;
	do {
		struct pollfd pfd = { .fd = poller->socket_fd, .events = POLLIN };

		if (poll(&pfd, 1, 0) == 1) {
			/* Last: the callback may free poller. */
			poller->on_readable(poller->private_data);
			return;
		}
	} while (copyoffload_monotonic_usec() < until);
}

struct copyoffload_reply_poll *copyoffload_reply_poll_create(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, int socket_fd,
	unsigned lead_usec, void (*on_readable)(void *private_data),
	void *private_data)
{
	struct copyoffload_reply_poll *poller = NULL;

	poller = talloc_zero(mem_ctx, struct copyoffload_reply_poll);
	if (poller == NULL) {
		return NULL;
	}
	*poller = (struct copyoffload_reply_poll) {
		.socket_fd = socket_fd,
		.lead_usec = lead_usec,
		.on_readable = on_readable,
		.private_data = private_data,
	};
	poller->timer_fd = timerfd_create(CLOCK_MONOTONIC,
					TFD_NONBLOCK | TFD_CLOEXEC);
	if (poller->timer_fd == -1) {
		TALLOC_FREE(poller);
		return NULL;
	}
	talloc_set_destructor(poller, reply_poll_destructor);
	poller->timer_fde = tevent_add_fd(ev, poller, poller->timer_fd,
					TEVENT_FD_READ, reply_poll_due, poller);
	if (poller->timer_fde == NULL) {
		TALLOC_FREE(poller);
		return NULL;
	}
	return poller;
}

void copyoffload_reply_poll_arm(struct copyoffload_reply_poll *poller,
				uint64_t expected_usec)
{
	uint64_t delay = copyoffload_reply_poll_delay(expected_usec,
						      poller->lead_usec);
	struct itimerspec when = {
		.it_value = {
			.tv_sec = (time_t)(delay / 1000000),
			.tv_nsec = (long)(delay % 1000000) * 1000,
		},
	};

	/* Fails only for bad arguments: then this reply wakes smbd itself. */
	poller->armed = timerfd_settime(poller->timer_fd, 0, &when, NULL) == 0;
}

void copyoffload_reply_poll_disarm(struct copyoffload_reply_poll *poller)
{
	struct itimerspec off = { .it_value = { 0 } };

	if (!poller->armed) {
		return;
	}
	/* Also forgets an expiry not read yet (a read then finds none). */
	timerfd_settime(poller->timer_fd, 0, &off, NULL);
	poller->armed = false;
}
