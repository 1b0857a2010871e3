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
#include <stdint.h>
#include <sys/stat.h>

/*
 * Verdicts of inline_clone.c's looks at a whole source, which it takes in
 * pieces from the start: how far they found the file clean, by st_dev,
 * st_ino and st_ctim of the fstat taken before the looks. Kept in a tdb in
 * smbd's cache directory, so that one smbd process's looks serve the others
 * (each client connection is a process of its own). A slot per hash of the
 * inode keeps the file small; a verdict lost to another file's is looked at
 * again.
 */

/* Whether verdicts can be kept: if not, the caller should not look at all. */
bool copyoffload_clean_sources_available(void);

/*
 * How many bytes from the file's start looks found clean while it had
 * exactly this ctime; 0 if none (also when the tdb could not be opened,
 * logged once per process).
 */
uint64_t copyoffload_clean_source_progress(const struct stat *st);

/*
 * Remembers that looks found [0, clean_up_to) of the file clean; st as
 * taken before the first of them.
 */
void copyoffload_clean_source_remember(const struct stat *st,
				       uint64_t clean_up_to);

#endif
