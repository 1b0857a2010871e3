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

/* What a copy does when the helper cannot be reached or goes away. */
enum copyoffload_helper_down {
	COPYOFFLOAD_HELPER_DOWN_NEXT, /* hand the copy to the next VFS module */
	COPYOFFLOAD_HELPER_DOWN_FAIL, /* fail it with NT_STATUS_NOT_SUPPORTED */
};

struct copyoffload_config {
	const char *helper_socket;
	enum copyoffload_helper_down helper_down;
};

/*
 * Reads the options of share snum. A bad value is logged with the option's
 * name and replaced by its default; this never fails except on ENOMEM.
 */
struct copyoffload_config *copyoffload_config_load(TALLOC_CTX *mem_ctx,
						   int snum);

#endif
