/*
 * copyoffload: cloning a bounded range inside smbd.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_INLINE_CLONE_H
#define COPYOFFLOAD_INLINE_CLONE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A copychunk request copies at most 16 MiB, and a run of its chunks
 * (chunk_run.h) is cloned at once; nothing larger is cloned inline. A
 * clean range clones in about 10 us whether it is 1 or 16 MiB.
 */
#define COPYOFFLOAD_INLINE_CLONE_MAX (UINT64_C(16) << 20)

/*
 * Clones [src_off, src_off + len) of src_fd to dst_off of dst_fd with one
 * FICLONERANGE, but only when that cannot wait on I/O: len is at most
 * COPYOFFLOAD_INLINE_CLONE_MAX, both offsets and the length are multiples
 * of block_size (or the range ends at the source's end of file), and
 * neither range has dirty or writeback pages (the kernel would flush them
 * first). Returns 0 when the range was cloned, EAGAIN when it was not
 * attempted, or the kernel's errno (EOPNOTSUPP: the filesystem does not
 * clone); unless 0, the caller must copy the range otherwise.
 */
int copyoffload_inline_clone(int src_fd, uint64_t src_off, uint64_t src_size,
			     int dst_fd, uint64_t dst_off, uint64_t len,
			     uint64_t block_size);

#endif
