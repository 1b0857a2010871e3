/*
 * copyoffload: asynchronous client of the copyoffloadd helper.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_HELPER_CLIENT_H
#define COPYOFFLOAD_HELPER_CLIENT_H

#include "copyoffload_protocol.h"

struct copyoffload_copy_args {
	int src_fd; /* borrowed: the helper receives its own duplicates */
	int dst_fd;
	uint64_t src_offset;
	uint64_t dst_offset;
	uint64_t length;
	uint32_t methods;
	uint32_t flags;
	/*
	 * Talloc objects that live exactly as long as src_fd and dst_fd are
	 * open (smbd's files_struct of each), or NULL. With both, the helper
	 * keeps its duplicates of the two descriptors between copies: the
	 * later copies of the same pair (the other chunks of a copychunk)
	 * name a handle instead of passing descriptors, and the helper lets
	 * go of them when either object is freed.
	 */
	const void *src_owner;
	const void *dst_owner;
};

/*
 * Asks the helper listening on socket_path to copy a range. One connection
 * per socket path and smbd process is opened on first use, kept, and opened
 * again after the helper restarts; requests on it are answered in any order.
 * Nothing here blocks: completion comes through ev.
 *
 * share (may be NULL: the copy counts for no share) names the share and
 * its policy: before the first copy of a share on a connection, the client
 * declares it to the helper with a SHARE message under a share id of its
 * own choosing (share->share_id and request_id are ignored). A share whose
 * policy changed (smb.conf reloaded) is declared again under a new id.
 */
struct tevent_req *copyoffload_helper_copy_send(
	TALLOC_CTX *mem_ctx,
	struct tevent_context *ev,
	const char *socket_path,
	const struct copyoffload_share *share,
	const struct copyoffload_copy_args *args);

/*
 * Returns 0 and fills *reply when the helper answered (the copy itself may
 * still have failed: see reply->status). Otherwise returns the errno that
 * says why the helper could not be reached or went away before answering;
 * then nothing is known about the destination range.
 */
int copyoffload_helper_copy_recv(struct tevent_req *req,
				 struct copyoffload_copy_reply *reply);

/*
 * Whether a copy sent to (or queued for) the helper at socket_path and not
 * answered yet reads or writes either descriptor. A clone locks both files
 * and waits for any clone of them that runs, such as the helper's: smbd
 * does not clone them inline meanwhile.
 */
bool copyoffload_helper_copying(const char *socket_path, int fd_a, int fd_b);

/*
 * Counts a clone of `bytes` that smbd made itself (inline_clone.c) for the
 * helper's statistics of `share`. Reported in batches (CLONED), at most a
 * second later; never fails, and a helper that is down misses them.
 */
void copyoffload_helper_count_inline_clone(struct tevent_context *ev,
					  const char *socket_path,
					  const struct copyoffload_share *share,
					  uint64_t bytes);

/* Reports the inline clones counted so far now (a tree disconnects). */
void copyoffload_helper_report_clones(void);

#endif
