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
 */

#ifndef COPYOFFLOAD_CHUNK_RUN_H
#define COPYOFFLOAD_CHUNK_RUN_H

/*
 * smbd hands a copychunk request to the VFS one chunk (at most 1 MiB) at a
 * time and waits for each. Clients send whole files as 16 chunks that follow
 * each other in both files, so the module copies such a run with one helper
 * request when smbd asks for its first chunk, and answers the later chunks
 * from that request's reply. The request's other runs (chunks out of file
 * order, or around a file's holes) go to the helper at the same time, each
 * as a request of its own, "sent ahead". Every chunk is still reported only
 * once the helper has done all of its bytes.
 */
struct copyoffload_run_wait;
struct copyoffload_request_runs;

struct copyoffload_chunk_run {
	off_t src_off;		/* its first chunk's */
	off_t dst_off;
	off_t length;		/* of all its chunks */
	uint32_t first_chunk;	/* index in smbd's chunk list */
	uint32_t num_chunks;
	bool sent_ahead;	/* before smbd asked for its first chunk */
	bool declined;		/* the helper did not take it: chunks go alone */
	bool answered;		/* the helper's reply has come */
	int status;		/* its errno; 0 when every byte was copied */
	uint64_t bytes_done;	/* the contiguous prefix the helper did */
	/* The chunk smbd asked for before the reply came (the module's). */
	struct copyoffload_run_wait *wait;
	/* private: the request's runs, its talloc parent */
	struct copyoffload_request_runs *request;
};

/*
 * The run that covers the chunk smbd asks for now and was started for an
 * earlier chunk of the same request (starting at an earlier chunk, or at
 * this one when it was sent ahead); NULL if there is none. The arguments
 * are those of offload_write_send.
 */
struct copyoffload_chunk_run *copyoffload_chunk_run_find(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, uint32_t fsctl,
	const DATA_BLOB *token, off_t src_off, struct files_struct *dst_fsp,
	off_t dst_off, off_t num);

/*
 * A new run from the chunk smbd asks for now through every chunk after it
 * that continues both ranges and has no run yet, owned by smbd's request
 * state (through the request's runs); a run of this chunk alone when the
 * next one does not continue it. NULL
 * when the chunk is the request's last, or when mem_ctx cannot be
 * recognised as smbd's copychunk state (another module in between,
 * another Samba release): the chunk is then copied on its own.
 */
struct copyoffload_chunk_run *copyoffload_chunk_run_start(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, uint32_t fsctl,
	const DATA_BLOB *token, off_t src_off, struct files_struct *dst_fsp,
	off_t dst_off, off_t num);

/*
 * The request's next run after `before` (a run of the same request), to be
 * sent ahead, owned like `before`. NULL after the request's last chunk,
 * when a run still holds the next chunk, or without memory.
 */
struct copyoffload_chunk_run *copyoffload_chunk_run_after(
	const struct copyoffload_chunk_run *before);

/*
 * Whether copying `run` at the same time as the request's runs before it
 * could change what either copies: their destination ranges overlap, or,
 * within one file (same_file), one's destination overlaps the other's
 * source. Such a run waits for its turn.
 */
bool copyoffload_chunk_run_overlaps_earlier(
	const struct copyoffload_chunk_run *run, bool same_file);

/*
 * A run of smbd's request state smbd_state that was sent ahead, taken by
 * the helper and not answered yet; NULL if there is none.
 */
struct copyoffload_chunk_run *copyoffload_chunk_run_unanswered(
	const void *smbd_state);

/*
 * Whether the helper's reply covers all of a chunk of the run (dst_off and
 * num are the chunk's own).
 */
bool copyoffload_chunk_run_covers(const struct copyoffload_chunk_run *run,
				  off_t dst_off, off_t num);

#endif
