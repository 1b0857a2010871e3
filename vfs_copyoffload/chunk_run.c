/*
 * copyoffload: the contiguous chunks of one copychunk request, copied as one
 * range.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * offload_write_send names neither the request nor its other chunks. But
 * smbd's copychunk loop passes its own request state as mem_ctx, and that
 * state holds the parsed chunk list. Its type is private to
 * source3/smbd/smb2_ioctl_network_fs.c, so it is mirrored here, and every
 * use first checks that mem_ctx really is one: the talloc name and size
 * tevent_req_create gave it, and fields that must equal what smbd passed
 * to this very call (the event context, the destination, the token, which
 * points into the state itself, and the current chunk's values). Anything
 * else, such as a module stacked above this one that passes a state of its
 * own, is copied chunk by chunk as before.
 */

#include "includes.h"
#include "smbd/smbd.h"
#include "librpc/gen_ndr/ioctl.h"
#include "lib/util/dlinklist.h"
#include "chunk_run.h"

/*
 * struct fsctl_srv_copychunk_state, identical in Samba 4.17 through 4.22
 * (smb2_ioctl_network_fs.c). A release that changes it fails the size or
 * the field checks below, and loses only the merging.
 */
struct smbd_copychunk_state {
	struct tevent_context *ev;
	struct connection_struct *conn;
	struct srv_copychunk_copy cc_copy;
	uint32_t current_chunk;
	NTSTATUS status;
	off_t total_written;
	uint32_t ctl_code;
	DATA_BLOB token;
	struct files_struct *src_fsp;
	struct files_struct *dst_fsp;
	int out_data;
};

#define SMBD_COPYCHUNK_STATE_NAME "struct fsctl_srv_copychunk_state"

/*
 * The runs of one copychunk request, by chunk: a talloc child of smbd's
 * state, made with the request's first run and parent of its runs. A
 * request has up to 256 chunks, and smbd asks for each: looking a chunk's
 * run up must not walk the others.
 */
struct copyoffload_request_runs {
	const struct smbd_copychunk_state *smbd_state;
	uint32_t num_chunks;
	struct copyoffload_request_runs *prev, *next;
	/* The run each chunk belongs to, or NULL. */
	struct copyoffload_chunk_run *by_chunk[COPYCHUNK_MAX_CHUNKS];
};

/* The requests with runs in this smbd process. */
static struct copyoffload_request_runs *copyoffload_requests;

static const struct smbd_copychunk_state *smbd_copychunk_state(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, uint32_t fsctl,
	const DATA_BLOB *token, off_t src_off, struct files_struct *dst_fsp,
	off_t dst_off, off_t num)
{
	const struct smbd_copychunk_state *s = NULL;
	const struct srv_copychunk *chunk = NULL;

	if (fsctl != FSCTL_SRV_COPYCHUNK && fsctl != FSCTL_SRV_COPYCHUNK_WRITE) {
		return NULL;
	}
	if (talloc_check_name(mem_ctx, SMBD_COPYCHUNK_STATE_NAME) == NULL ||
	    talloc_get_size(mem_ctx) != sizeof(struct smbd_copychunk_state)) {
		return NULL;
	}
	s = (const struct smbd_copychunk_state *)mem_ctx;
	if (s->ev != ev || s->dst_fsp != dst_fsp ||
	    s->conn != dst_fsp->conn || s->ctl_code != fsctl ||
	    token != &s->token ||
	    s->token.data != s->cc_copy.source_key ||
	    s->token.length != sizeof(s->cc_copy.source_key) ||
	    s->cc_copy.chunks == NULL ||
	    s->cc_copy.chunk_count > COPYCHUNK_MAX_CHUNKS ||
	    s->current_chunk >= s->cc_copy.chunk_count) {
		return NULL;
	}
	chunk = &s->cc_copy.chunks[s->current_chunk];
	if ((off_t)chunk->source_off != src_off ||
	    (off_t)chunk->target_off != dst_off ||
	    (off_t)chunk->length != num) {
		return NULL;
	}
	return s;
}

static struct copyoffload_request_runs *copyoffload_request_runs_of(
	const void *smbd_state)
{
	struct copyoffload_request_runs *r = NULL;

	for (r = copyoffload_requests; r != NULL; r = r->next) {
		if (r->smbd_state == smbd_state) {
			return r;
		}
	}
	return NULL;
}

static int copyoffload_request_runs_destructor(
	struct copyoffload_request_runs *r)
{
	DLIST_REMOVE(copyoffload_requests, r);
	return 0;
}

/* The runs of request s, made on its first use. */
static struct copyoffload_request_runs *copyoffload_request_runs_get(
	const struct smbd_copychunk_state *s)
{
	struct copyoffload_request_runs *r = copyoffload_request_runs_of(s);

	if (r != NULL) {
		return r;
	}
	r = talloc_zero(discard_const(s), struct copyoffload_request_runs);
	if (r == NULL) {
		return NULL;
	}
	r->smbd_state = s;
	r->num_chunks = s->cc_copy.chunk_count;
	DLIST_ADD(copyoffload_requests, r);
	talloc_set_destructor(r, copyoffload_request_runs_destructor);
	return r;
}

struct copyoffload_chunk_run *copyoffload_chunk_run_find(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, uint32_t fsctl,
	const DATA_BLOB *token, off_t src_off, struct files_struct *dst_fsp,
	off_t dst_off, off_t num)
{
	const struct smbd_copychunk_state *s = NULL;
	struct copyoffload_request_runs *r = NULL;
	struct copyoffload_chunk_run *run = NULL;

	if (copyoffload_requests == NULL) {
		return NULL;
	}
	s = smbd_copychunk_state(mem_ctx, ev, fsctl, token, src_off, dst_fsp,
				 dst_off, num);
	if (s == NULL) {
		return NULL;
	}
	r = copyoffload_request_runs_of(s);
	if (r == NULL || s->current_chunk >= r->num_chunks) {
		return NULL;
	}
	run = r->by_chunk[s->current_chunk];
	/* A run not sent ahead is its first chunk's own request. */
	if (run == NULL ||
	    (!run->sent_ahead && s->current_chunk == run->first_chunk)) {
		return NULL;
	}
	return run;
}

static int copyoffload_chunk_run_destructor(struct copyoffload_chunk_run *run)
{
	/*
	 * Also when its parent is freed: talloc runs the parent's destructor,
	 * then frees its children, and only then the parent's memory.
	 */
	struct copyoffload_chunk_run **by_chunk = run->request->by_chunk;
	uint32_t i;

	for (i = run->first_chunk; i < run->first_chunk + run->num_chunks; i++) {
		if (by_chunk[i] == run) {
			by_chunk[i] = NULL;
		}
	}
	return 0;
}

/* The run of smbd's chunks from index first on, as a child of r. */
static struct copyoffload_chunk_run *copyoffload_chunk_run_new(
	struct copyoffload_request_runs *r, uint32_t first)
{
	const struct smbd_copychunk_state *s = r->smbd_state;
	const struct srv_copychunk *chunks = s->cc_copy.chunks;
	struct copyoffload_chunk_run *run = NULL;
	uint64_t src_off = chunks[first].source_off;
	uint64_t dst_off = chunks[first].target_off;
	uint64_t length = chunks[first].length;
	uint32_t i;

	/* smbd has checked every length (1 to 1 MiB, 16 MiB in all). */
	for (i = first + 1; i < r->num_chunks; i++) {
		const struct srv_copychunk *c = &chunks[i];

		/* A chunk has one run: one that a run still holds ends it. */
		if (r->by_chunk[i] != NULL) {
			break;
		}
		/* Unsigned: the offsets are checked for overflow later. */
		if (c->source_off != src_off + length ||
		    c->target_off != dst_off + length) {
			break;
		}
		length += c->length;
	}

	run = talloc(r, struct copyoffload_chunk_run);
	if (run == NULL) {
		return NULL;
	}
	*run = (struct copyoffload_chunk_run) {
		/* Offsets past INT64_MAX fail the checks' overflow test. */
		.src_off = (off_t)src_off,
		.dst_off = (off_t)dst_off,
		.length = (off_t)length,
		.first_chunk = first,
		.num_chunks = i - first,
		.request = r,
	};
	for (i = first; i < first + run->num_chunks; i++) {
		r->by_chunk[i] = run;
	}
	talloc_set_destructor(run, copyoffload_chunk_run_destructor);
	return run;
}

struct copyoffload_chunk_run *copyoffload_chunk_run_start(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, uint32_t fsctl,
	const DATA_BLOB *token, off_t src_off, struct files_struct *dst_fsp,
	off_t dst_off, off_t num)
{
	const struct smbd_copychunk_state *s = NULL;
	struct copyoffload_request_runs *r = NULL;

	s = smbd_copychunk_state(mem_ctx, ev, fsctl, token, src_off, dst_fsp,
				 dst_off, num);
	if (s == NULL || s->current_chunk + 1 >= s->cc_copy.chunk_count) {
		return NULL;
	}
	r = copyoffload_request_runs_get(s);
	if (r == NULL || r->by_chunk[s->current_chunk] != NULL) {
		return NULL; /* a chunk has one run at a time */
	}
	return copyoffload_chunk_run_new(r, s->current_chunk);
}

struct copyoffload_chunk_run *copyoffload_chunk_run_after(
	const struct copyoffload_chunk_run *before)
{
	struct copyoffload_request_runs *r = before->request;
	struct copyoffload_chunk_run *run = NULL;
	uint32_t first = before->first_chunk + before->num_chunks;

	/*
	 * A run that still holds the next chunk (sent ahead before and
	 * declined, or still with the helper) is not sent again.
	 */
	if (first >= r->num_chunks || r->by_chunk[first] != NULL) {
		return NULL;
	}
	run = copyoffload_chunk_run_new(r, first);
	if (run != NULL) {
		run->sent_ahead = true;
	}
	return run;
}

static bool copyoffload_ranges_overlap(off_t a_off, off_t a_len, off_t b_off,
				       off_t b_len)
{
	/* Both checked: neither end passes INT64_MAX. */
	return a_off < b_off + b_len && b_off < a_off + a_len;
}

/*
 * The run of r that starts at or after chunk *next, before chunk end; NULL
 * when there is none. *next moves past it.
 */
static struct copyoffload_chunk_run *copyoffload_next_run(
	const struct copyoffload_request_runs *r, uint32_t *next, uint32_t end)
{
	while (*next < end) {
		struct copyoffload_chunk_run *run = r->by_chunk[*next];

		if (run == NULL) {
			*next += 1;
			continue;
		}
		*next = run->first_chunk + run->num_chunks;
		return run;
	}
	return NULL;
}

bool copyoffload_chunk_run_overlaps_earlier(
	const struct copyoffload_chunk_run *run, bool same_file)
{
	const struct copyoffload_chunk_run *o = NULL;
	uint32_t next = 0;

	while ((o = copyoffload_next_run(run->request, &next,
					 run->first_chunk)) != NULL) {
		if (copyoffload_ranges_overlap(o->dst_off, o->length,
					       run->dst_off, run->length)) {
			return true;
		}
		if (same_file &&
		    (copyoffload_ranges_overlap(o->dst_off, o->length,
						run->src_off, run->length) ||
		     copyoffload_ranges_overlap(o->src_off, o->length,
						run->dst_off, run->length))) {
			return true;
		}
	}
	return false;
}

struct copyoffload_chunk_run *copyoffload_chunk_run_unanswered(
	const void *smbd_state)
{
	const struct copyoffload_request_runs *r =
		copyoffload_request_runs_of(smbd_state);
	struct copyoffload_chunk_run *run = NULL;
	uint32_t next = 0;

	if (r == NULL) {
		return NULL;
	}
	while ((run = copyoffload_next_run(r, &next, r->num_chunks)) != NULL) {
		if (run->sent_ahead && !run->declined && !run->answered) {
			return run;
		}
	}
	return NULL;
}

bool copyoffload_chunk_run_covers(const struct copyoffload_chunk_run *run,
				  off_t dst_off, off_t num)
{
	return run->answered && dst_off >= run->dst_off &&
	       (uint64_t)(dst_off - run->dst_off + num) <= run->bytes_done;
}
