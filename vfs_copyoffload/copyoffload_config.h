/*
 * copyoffload: per-share options (smb.conf "copyoffload:<name>").
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_CONFIG_H
#define COPYOFFLOAD_CONFIG_H

#include "copyoffload_protocol.h"

/* What a copy does when the helper cannot be reached or goes away. */
enum copyoffload_helper_down {
	COPYOFFLOAD_HELPER_DOWN_NEXT, /* hand the copy to the next VFS module */
	COPYOFFLOAD_HELPER_DOWN_FAIL, /* fail it with NT_STATUS_NOT_SUPPORTED */
};

/* Whether the share advertises FILE_SUPPORTS_BLOCK_REFCOUNTING. */
enum copyoffload_block_refcounting {
	COPYOFFLOAD_BLOCK_REFCOUNTING_AUTO, /* if the filesystem really clones */
	COPYOFFLOAD_BLOCK_REFCOUNTING_YES,
	COPYOFFLOAD_BLOCK_REFCOUNTING_NO,
};

struct copyoffload_config {
	const char *helper_socket;
	enum copyoffload_helper_down helper_down;
	enum copyoffload_block_refcounting block_refcounting;
	/* May a duplicate-extents request that cannot clone copy instead? */
	bool dup_extents_fallback;
	/* May smbd clone a bounded copychunk chunk itself (inline_clone.c)? */
	bool inline_clone;
	/*
	 * May the chunks of a copychunk request that continue each other be
	 * copied by one helper request (chunk_run.c)?
	 */
	bool merge_chunks;
	/*
	 * What the helper is told about this share (its SHARE message; the
	 * helper client assigns share_id): the name, the method order, the
	 * largest segment and the limits.
	 */
	struct copyoffload_share share;
};

/* The methods copyoffload:methods allows, as a COPYOFFLOAD_METHOD_BIT mask. */
uint32_t copyoffload_config_methods(const struct copyoffload_config *config);

/*
 * Reads the options of share snum. A bad value is logged with the option's
 * name and replaced by its default; this never fails except on ENOMEM.
 */
struct copyoffload_config *copyoffload_config_load(TALLOC_CTX *mem_ctx,
						   int snum);

#endif
