/*
 * copyoffload: waking up shortly before the helper's reply is due.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_REPLY_POLL_H
#define COPYOFFLOAD_REPLY_POLL_H

#include <stdbool.h>
#include <stdint.h>
#include <talloc.h>
#include <tevent.h>

/* The default and largest "copyoffload:reply poll", in microseconds. */
#define COPYOFFLOAD_REPLY_POLL_DEFAULT_USEC 60
#define COPYOFFLOAD_REPLY_POLL_MAX_USEC 10000

struct copyoffload_reply_poll;

/*
 * A timer on ev that, once armed, wakes smbd lead_usec before a reply is
 * expected on socket_fd and then polls the socket for at most twice that.
 * When the socket turns readable meanwhile, on_readable(private_data) is
 * called, at most once per arming; it may free the poller. NULL without
 * memory or descriptors (then nothing polls).
 */
struct copyoffload_reply_poll *copyoffload_reply_poll_create(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, int socket_fd,
	unsigned lead_usec, void (*on_readable)(void *private_data),
	void *private_data);

/* Expects the reply expected_usec from now; replaces an earlier arming. */
void copyoffload_reply_poll_arm(struct copyoffload_reply_poll *poller,
				uint64_t expected_usec);

/* The reply came otherwise: no wake-up for it. Cheap when not armed. */
void copyoffload_reply_poll_disarm(struct copyoffload_reply_poll *poller);

/* When to wake up for a reply expected in expected_usec: never 0. */
uint64_t copyoffload_reply_poll_delay(uint64_t expected_usec,
				      unsigned lead_usec);

/*
 * The next expectation after a reply that took sample_usec, from the last
 * (0: none yet).
 */
uint64_t copyoffload_reply_expectation(uint64_t expected_usec,
				       uint64_t sample_usec);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t copyoffload_monotonic_usec(void);

#endif
