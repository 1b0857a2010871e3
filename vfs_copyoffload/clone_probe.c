/*
 * copyoffload: does a share's filesystem really clone extents?
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * Filesystem type names are not enough (XFS clones only with reflink=1,
 * and stacked or network filesystems vary), so ask the kernel: clone one
 * empty unnamed file into another. Empty files suffice: the reflink check
 * happens before any range is looked at, and nothing is written.
 */

#include "includes.h"
#include <linux/fs.h>
#include <sys/ioctl.h>
#include "clone_probe.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

int copyoffload_probe_clone(const char *dir)
{
	int src = -1, dst = -1;
	int err = 0;

	/* O_TMPFILE: unnamed, so no client ever sees a probe file. */
	src = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (src == -1) {
		return errno;
	}
	dst = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (dst == -1) {
		err = errno;
		close(src);
		return err;
	}
	if (ioctl(dst, FICLONE, src) == -1) {
		err = errno;
	}
	close(dst);
	close(src);
	return err;
}
