/*
 * copyoffload: cloning a bounded range inside smbd.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * smbd sends a copy one chunk (at most 1 MiB) at a time and waits for each.
 * On a reflink filesystem cloning a chunk is metadata work of tens of
 * microseconds, less than a round trip to the helper, so doing it here is
 * both faster and no less responsive (docs/design.md has the numbers). It
 * stays bounded only if the clone cannot wait on I/O and shares few
 * extents:
 *  - XFS writes back dirty pages of both ranges before it clones, btrfs
 *    those of the whole source file, so such ranges and files are left to
 *    the helper (cachestat(2), Linux 6.5);
 *  - each extent costs the kernel about 7 us (a 16 MiB range of 4 KiB
 *    extents took 28 ms on XFS, 19 ms on btrfs), so a range of many is left
 *    to the helper too (FIEMAP, stopped after the limit: 10 us on XFS, 50 us
 *    on btrfs at worst; not asked for a range of fewer filesystem blocks).
 */

#include <errno.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include "clean_sources.h"
#include "inline_clone.h"

#ifndef BTRFS_SUPER_MAGIC
#define BTRFS_SUPER_MAGIC 0x9123683E
#endif

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same number on every architecture */
#endif

/* From <linux/mman.h> of Linux 6.5, newer than Debian 12's headers. */
struct copyoffload_cachestat_range {
	uint64_t off;
	uint64_t len;
};

struct copyoffload_cachestat {
	uint64_t nr_cache;
	uint64_t nr_dirty;
	uint64_t nr_writeback;
	uint64_t nr_evicted;
	uint64_t nr_recently_evicted;
};

/*
 * 0 when the kernel says no page of the range awaits writeback (len 0: to
 * the end of the file); EPERM when it will not say (Linux 6.14 answers only
 * a writer or the owner of the file); else EAGAIN, also where the kernel
 * cannot say (before 6.5), so as not to risk it.
 */
static int range_state(int fd, uint64_t off, uint64_t len)
{
	struct copyoffload_cachestat_range range = { .off = off, .len = len };
	struct copyoffload_cachestat cs = { 0 };

	if (syscall(__NR_cachestat, fd, &range, &cs, 0) != 0) {
		return errno == EPERM ? EPERM : EAGAIN;
	}
	return cs.nr_dirty == 0 && cs.nr_writeback == 0 ? 0 : EAGAIN;
}

static bool clone_is_bounded(uint64_t src_off, uint64_t src_size,
			     uint64_t dst_off, uint64_t len,
			     uint64_t block_size)
{
	if (len == 0 || len > COPYOFFLOAD_INLINE_CLONE_MAX || block_size == 0) {
		return false;
	}
	if (src_off % block_size != 0 || dst_off % block_size != 0) {
		return false;
	}
	/* The kernel clones a partial last block only up to the source's EOF. */
	return len % block_size == 0 || src_off + len == src_size;
}

/* Whether the source range maps at most COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS. */
static bool few_extents(int fd, uint64_t off, uint64_t len)
{
	struct {
		struct fiemap map;
		struct fiemap_extent extents[COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS + 1];
	} query;

	memset(&query, 0, sizeof(query));
	query.map.fm_start = off;
	query.map.fm_length = len;
	/* One more than allowed: the kernel stops once they are filled. */
	query.map.fm_extent_count = COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS + 1;
	if (ioctl(fd, FS_IOC_FIEMAP, &query.map) != 0) {
		return false;
	}
	return query.map.fm_mapped_extents <= COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS;
}

/*
 * range_state of a large btrfs source as a whole, from looks of at most
 * COPYOFFLOAD_INLINE_CLONE_LOOK_STEP each, one per call, by any smbd
 * process (clean_sources.h): EAGAIN until they have covered the file. The
 * pieces add up while the file keeps its ctime: no page of a file turns
 * dirty without a write, which moves its ctime (a write through a shared
 * mapping too, at its first fault after writeback). A verdict counts only
 * for a ctime at least a second older than the look, so that a write in
 * the same clock tick cannot leave the ctime as it was.
 */
static int large_btrfs_source_state(int src_fd)
{
	struct stat st;
	struct timespec now;
	uint64_t clean_up_to, end;
	int err;

	if (fstat(src_fd, &st) != 0 || clock_gettime(CLOCK_REALTIME, &now) != 0 ||
	    st.st_ctim.tv_sec + 1 >= now.tv_sec) {
		return EAGAIN; /* written just now */
	}
	if (!copyoffload_clean_sources_available()) {
		return EAGAIN; /* a look per chunk would cost too much */
	}
	clean_up_to = copyoffload_clean_source_progress(&st);
	if (clean_up_to >= (uint64_t)st.st_size) {
		return 0;
	}
	end = clean_up_to + COPYOFFLOAD_INLINE_CLONE_LOOK_STEP;
	if (end > (uint64_t)st.st_size) {
		end = (uint64_t)st.st_size;
	}
	err = range_state(src_fd, clean_up_to, end - clean_up_to);
	if (err != 0) {
		return err;
	}
	copyoffload_clean_source_remember(&st, end);
	return end == (uint64_t)st.st_size ? 0 : EAGAIN;
}

/* range_state of what the clone writes back: btrfs writes back the whole
 * source before it clones any range of it. */
static int source_state(int src_fd, const struct statfs *fs, uint64_t src_off,
			uint64_t src_size, uint64_t len)
{
	if (fs->f_type == BTRFS_SUPER_MAGIC) {
		if (src_size > COPYOFFLOAD_INLINE_CLONE_MAX) {
			return large_btrfs_source_state(src_fd);
		}
		return range_state(src_fd, 0, 0);
	}
	return range_state(src_fd, src_off, len);
}

int copyoffload_inline_clone_check(int src_fd, uint64_t src_off,
				   uint64_t src_size, int dst_fd,
				   uint64_t dst_off, uint64_t len,
				   uint64_t block_size)
{
	struct statfs fs;
	int err;

	if (!clone_is_bounded(src_off, src_size, dst_off, len, block_size)) {
		return EAGAIN;
	}
	/*
	 * The destination first: its range is usually new, so its look is
	 * cheap, while one of a cached source costs about 7 us per MiB.
	 */
	err = range_state(dst_fd, dst_off, len);
	if (err != 0) {
		return err;
	}
	if (fstatfs(src_fd, &fs) != 0) {
		return EAGAIN;
	}
	err = source_state(src_fd, &fs, src_off, src_size, len);
	if (err != 0) {
		return err;
	}
	/*
	 * A range maps at most one extent per filesystem block (f_bsize on
	 * XFS and btrfs; st_blksize may be larger), and a range unaligned
	 * to it at both ends touches at most two blocks more than it fills.
	 */
	if (fs.f_bsize > 0 &&
	    len / (uint64_t)fs.f_bsize + 2 <= COPYOFFLOAD_INLINE_CLONE_MAX_EXTENTS) {
		return 0;
	}
	return few_extents(src_fd, src_off, len) ? 0 : EAGAIN;
}

int copyoffload_inline_clone(int src_fd, uint64_t src_off, int dst_fd,
			     uint64_t dst_off, uint64_t len)
{
	struct file_clone_range args = {
		.src_fd = src_fd,
		.src_offset = src_off,
		.src_length = len,
		.dest_offset = dst_off,
	};

	if (ioctl(dst_fd, FICLONERANGE, &args) != 0) {
		return errno;
	}
	return 0;
}
