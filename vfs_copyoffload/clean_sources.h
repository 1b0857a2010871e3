/*
 * copyoffload: large btrfs sources known to be clean, shared by every smbd.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_CLEAN_SOURCES_H
#define COPYOFFLOAD_CLEAN_SOURCES_H

#include <stdbool.h>
#include <sys/stat.h>

/*
 * A verdict of inline_clone.c's look at a whole source, by st_dev, st_ino
 * and st_ctim of the fstat taken before the look. Kept in a tdb in smbd's
 * cache directory, so that one smbd process's look serves the others (each
 * client connection is a process of its own). A slot per hash of the inode
 * keeps the file small; a verdict lost to another file's is looked at again.
 */

/*
 * Whether a look found the file clean while it had exactly this ctime.
 * false also when no smbd can share verdicts (the tdb could not be
 * opened, logged once per process).
 */
bool copyoffload_clean_source_known(const struct stat *st);

/* Whether verdicts can be kept: if not, the caller should not look at all. */
bool copyoffload_clean_sources_available(void);

/* Remembers that a look found the file clean; st as taken before the look. */
void copyoffload_clean_source_remember(const struct stat *st);

#endif
