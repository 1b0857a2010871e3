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
 * The most of a btrfs source looked at in one go (inline_clone.c): a
 * cachestat of a cached 256 MiB took 2.2-2.4 ms, of a cached 1 GiB 10-17
 * ms, which smbd spent in its main thread. A larger source is looked at in
 * such pieces, one per chunk smbd asks for, and its chunks go to the
 * helper until the pieces have covered it.
 */
#define COPYOFFLOAD_INLINE_CLONE_LOOK_STEP (UINT64_C(256) << 20)

/* Extents one inline clone may share at most (inline_clone.c). */
#define COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS 32

/*
 * Whether cloning [src_off, src_off + len) of src_fd to dst_off of dst_fd
 * cannot wait on I/O and stays short: len is at most
 * COPYOFFLOAD_INLINE_CLONE_MAX, both offsets and the length are multiples
 * of block_size (or the range ends at the source's end of file), neither
 * range has dirty or writeback pages (nor the whole source on btrfs, which
 * writes it all back first: a source over 16 MiB must be unchanged for a
 * second, and is then looked at 256 MiB per call and remembered clean
 * until its ctime moves), and the source range maps at most
 * COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS extents. 0 when it is, else EAGAIN:
 * the caller must copy the range otherwise. EPERM: Linux would not say
 * whether a range is clean, since it answers only a writer or the owner of
 * the file (cachestat, 6.14); the caller may ask again as root.
 */
int copyoffload_inline_clone_check(int src_fd, uint64_t src_off,
				   uint64_t src_size, int dst_fd,
				   uint64_t dst_off, uint64_t len,
				   uint64_t block_size);

/*
 * The clone itself, one FICLONERANGE, after a check that said 0. Returns 0
 * or the kernel's errno (EOPNOTSUPP: the filesystem does not clone).
 */
int copyoffload_inline_clone(int src_fd, uint64_t src_off, int dst_fd,
			     uint64_t dst_off, uint64_t len);

#endif
