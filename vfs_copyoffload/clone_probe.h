/*
 * copyoffload: does a share's filesystem really clone extents?
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_CLONE_PROBE_H
#define COPYOFFLOAD_CLONE_PROBE_H

/*
 * Returns 0 when the filesystem holding directory dir clones (FICLONE
 * between two files there succeeds), otherwise the errno that says why
 * not (EOPNOTSUPP: no reflink support). Leaves nothing behind in dir.
 */
int copyoffload_probe_clone(const char *dir);

#endif
