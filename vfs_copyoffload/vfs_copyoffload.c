/*
 * copyoffload: SMB server-side copy done by the copyoffloadd helper.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * smbd asks for a server-side copy one chunk at a time through
 * offload_write, and for a clone (FSCTL_DUPLICATE_EXTENTS_TO_FILE) with one
 * offload_write for the whole range. This module does every check that needs smbd state in the
 * main thread (token, access, source size, strict locks), then hands the
 * two descriptors to the helper and completes the request when the helper
 * answers: smbd's event loop never waits on data movement. Cases that need
 * smbd's own I/O path (alternate streams, overlapping ranges in one file)
 * and copies the helper cannot take go to the next module.
 */

#include "includes.h"
#include <sys/ioctl.h>
#include <sys/mount.h> /* BLKGETSIZE64 */
#include "smbd/smbd.h"
#include "smbd/globals.h"
#include "librpc/gen_ndr/ioctl.h"
#include "lib/util/tevent_ntstatus.h"
#include "lib/util/sys_rw.h"
#include "offload_token.h"
#include "clone_probe.h"
#include "copyoffload_config.h"
#include "copyoffload_config_parse.h"
#include "helper_client.h"
#include "inline_clone.h"
#include "chunk_run.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

/*
 * Tokens this module resolves. smbd hands each module only the token; the
 * next module minted it, so every token it returns is mirrored here.
 */
static struct vfs_offload_ctx *copyoffload_offload_ctx;

/* The kernel's answers that say a filesystem cannot clone at all. */
static bool copyoffload_refuses_clone(int err)
{
	return err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS;
}

/*
 * Whether the next module (vfs_default) serves FSCTL_DUPLICATE_EXTENTS_TO_FILE:
 * Samba 4.22 (VFS interface 50) added a synchronous FICLONERANGE path there,
 * and mints clone tokens for shares with FILE_SUPPORTS_BLOCK_REFCOUNTING.
 * Before, vfs_default refuses clone tokens and answers INVALID_PARAMETER.
 */
#if SMB_VFS_INTERFACE_VERSION >= 50
#define COPYOFFLOAD_NEXT_CLONES true
#else
#define COPYOFFLOAD_NEXT_CLONES false
#endif

static int copyoffload_connect(struct vfs_handle_struct *handle,
			       const char *service,
			       const char *user)
{
	struct copyoffload_config *config = NULL;
	char methods[80];
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}

	config = copyoffload_config_load(handle->conn, SNUM(handle->conn));
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct copyoffload_config, return -1);
	copyoffload_format_methods(config->share.method_order, methods,
				   sizeof(methods));
	DBG_INFO("copyoffload: share %s uses helper %s: methods = %s, "
		 "max segment = %" PRIu64 ", max bytes per second = %" PRIu64
		 ", max concurrent copies = %" PRIu32 " (0: default or none)"
		 ", preallocate = %s\n",
		 service, config->helper_socket, methods,
		 config->share.max_segment, config->share.max_bytes_per_second,
		 config->share.max_concurrent,
		 (config->share.flags & COPYOFFLOAD_SHARE_NO_PREALLOCATE) != 0
			 ? "no"
			 : "yes");
	return 0;
}

static uint32_t copyoffload_fs_capabilities(
	struct vfs_handle_struct *handle,
	enum timestamp_set_resolution *p_ts_res)
{
	struct copyoffload_config *config = NULL;
	uint32_t caps = SMB_VFS_NEXT_FS_CAPABILITIES(handle, p_ts_res);
	int err;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct copyoffload_config,
				return caps);

	switch (config->block_refcounting) {
	case COPYOFFLOAD_BLOCK_REFCOUNTING_YES:
		return caps | FILE_SUPPORTS_BLOCK_REFCOUNTING;
	case COPYOFFLOAD_BLOCK_REFCOUNTING_NO:
		return caps & ~FILE_SUPPORTS_BLOCK_REFCOUNTING;
	case COPYOFFLOAD_BLOCK_REFCOUNTING_AUTO:
		break;
	}
	if ((copyoffload_config_methods(config) &
	     COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE)) == 0) {
		DBG_INFO("copyoffload: %s: copyoffload:methods excludes clone: "
			 "block refcounting not advertised\n",
			 handle->conn->connectpath);
		return caps & ~FILE_SUPPORTS_BLOCK_REFCOUNTING;
	}

	/* As root: the probe's unnamed files need write access. */
	become_root();
	err = copyoffload_probe_clone(handle->conn->connectpath);
	unbecome_root();
	if (err != 0) {
		DBG_INFO("copyoffload: %s does not clone (%s): block "
			 "refcounting not advertised\n",
			 handle->conn->connectpath, strerror(err));
		if (copyoffload_refuses_clone(err) && config->inline_clone) {
			/* Nor any inline attempt, which would fail the same. */
			DBG_INFO("copyoffload: %s does not clone (%s): chunks "
				 "go to the helper without an inline attempt\n",
				 handle->conn->connectpath, strerror(err));
			config->inline_clone = false;
		}
		return caps;
	}
	DBG_INFO("copyoffload: %s clones: advertising block refcounting\n",
		 handle->conn->connectpath);
	return caps | FILE_SUPPORTS_BLOCK_REFCOUNTING;
}

/* ------------------------------------------------------------------ */
/* offload_read: mint through the next module, mirror the token.      */
/* ------------------------------------------------------------------ */

struct copyoffload_read_state {
	struct vfs_handle_struct *handle;
	files_struct *fsp;
	uint32_t fsctl;
	uint32_t flags;
	uint64_t xferlen;
	DATA_BLOB token;
};

static void copyoffload_offload_read_done(struct tevent_req *subreq);

static struct tevent_req *copyoffload_offload_read_send(
	TALLOC_CTX *mem_ctx,
	struct tevent_context *ev,
	struct vfs_handle_struct *handle,
	files_struct *fsp,
	uint32_t fsctl,
	uint32_t ttl,
	off_t offset,
	size_t to_copy)
{
	struct tevent_req *req = NULL;
	struct tevent_req *subreq = NULL;
	struct copyoffload_read_state *state = NULL;
	NTSTATUS status;

	req = tevent_req_create(mem_ctx, &state,
				struct copyoffload_read_state);
	if (req == NULL) {
		return NULL;
	}
	*state = (struct copyoffload_read_state) {
		.handle = handle,
		.fsp = fsp,
		.fsctl = fsctl,
	};

	status = vfs_offload_token_ctx_init(fsp->conn->sconn->client,
					    &copyoffload_offload_ctx);
	if (tevent_req_nterror(req, status)) {
		return tevent_req_post(req, ev);
	}

	subreq = SMB_VFS_NEXT_OFFLOAD_READ_SEND(mem_ctx, ev, handle, fsp,
						fsctl, ttl, offset, to_copy);
	if (tevent_req_nomem(subreq, req)) {
		return tevent_req_post(req, ev);
	}
	tevent_req_set_callback(subreq, copyoffload_offload_read_done, req);
	return req;
}

static void copyoffload_offload_read_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct copyoffload_read_state *state = tevent_req_data(
		req, struct copyoffload_read_state);
	NTSTATUS status;

	status = SMB_VFS_NEXT_OFFLOAD_READ_RECV(subreq,
						state->handle,
						state,
						&state->flags,
						&state->xferlen,
						&state->token);
	TALLOC_FREE(subreq);
	if (!NT_STATUS_IS_OK(status) && !COPYOFFLOAD_NEXT_CLONES &&
	    state->fsctl == FSCTL_DUP_EXTENTS_TO_FILE) {
		/*
		 * vfs_default before 4.22 mints no clone tokens: mint our own.
		 * From 4.22 on its refusal stands: the token must be one the
		 * next module can resolve, for the helper-down path.
		 */
		status = vfs_offload_token_create_blob(state, state->fsp,
						       state->fsctl,
						       &state->token);
	}
	if (tevent_req_nterror(req, status)) {
		return;
	}

	status = vfs_offload_token_db_store_fsp(copyoffload_offload_ctx,
						state->fsp,
						&state->token);
	if (tevent_req_nterror(req, status)) {
		return;
	}
	tevent_req_done(req);
}

static NTSTATUS copyoffload_offload_read_recv(struct tevent_req *req,
					      struct vfs_handle_struct *handle,
					      TALLOC_CTX *mem_ctx,
					      uint32_t *flags,
					      uint64_t *xferlen,
					      DATA_BLOB *token)
{
	struct copyoffload_read_state *state = tevent_req_data(
		req, struct copyoffload_read_state);
	NTSTATUS status;

	if (tevent_req_is_nterror(req, &status)) {
		tevent_req_received(req);
		return status;
	}

	*flags = state->flags;
	*xferlen = state->xferlen;
	token->length = state->token.length;
	token->data = talloc_move(mem_ctx, &state->token.data);

	tevent_req_received(req);
	return NT_STATUS_OK;
}

/* ------------------------------------------------------------------ */
/* offload_write: checks here, data movement in the helper.           */
/* ------------------------------------------------------------------ */

struct copyoffload_write_state {
	struct vfs_handle_struct *handle;
	TALLOC_CTX *smbd_state;	/* offload_write_send's mem_ctx */
	struct tevent_context *ev;
	struct copyoffload_config *config; /* inline_clone learns */
	uint32_t fsctl;
	DATA_BLOB *token;	/* &token_copy */
	const DATA_BLOB *smbd_token; /* as smbd passed it (chunk_run.c) */
	/*
	 * smbd's DUPLICATE_EXTENTS path passes a token that lives on its
	 * stack: the next module, asked later (helper down), needs a copy.
	 */
	DATA_BLOB token_copy;
	off_t src_off;
	struct files_struct *dst_fsp;
	off_t dst_off;
	off_t num;
	/* The chunks after this one that the same helper request copies. */
	struct copyoffload_chunk_run *run;
	/* Set while this chunk waits for the reply to a run sent ahead. */
	struct copyoffload_run_wait *wait;
	/* What it fails with once that reply has come (OK: not failing). */
	NTSTATUS failure;
	/* As the check read it: the runs sent ahead are checked against it. */
	off_t source_size;
	bool restore_dst_user;
	off_t copied;
};

/* What one request to the helper (or one inline clone) copies. */
static off_t copyoffload_write_length(const struct copyoffload_write_state *state)
{
	return state->run != NULL ? state->run->length : state->num;
}

/*
 * Where a run sent ahead keeps the chunk that waits for its reply: made
 * with the run, so that waiting never needs memory.
 */
struct copyoffload_run_wait {
	struct tevent_req *req;
};

static int copyoffload_run_wait_destructor(struct copyoffload_run_wait *wait)
{
	if (wait->req != NULL) {
		struct copyoffload_write_state *state = tevent_req_data(
			wait->req, struct copyoffload_write_state);

		state->wait = NULL;
	}
	return 0;
}

/* The chunk that waited for the run, which no longer does. */
static struct tevent_req *copyoffload_run_wait_end(
	struct copyoffload_run_wait *wait)
{
	struct tevent_req *req = wait->req;

	if (req != NULL) {
		struct copyoffload_write_state *state = tevent_req_data(
			req, struct copyoffload_write_state);

		state->wait = NULL;
		wait->req = NULL;
	}
	return req;
}

static void copyoffload_write_cleanup(struct tevent_req *req,
				      enum tevent_req_state req_state)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	bool ok;

	if (state->wait != NULL) {
		copyoffload_run_wait_end(state->wait);
	}
	if (!state->restore_dst_user) {
		return;
	}
	/* smbd expects to be back in the destination's context. */
	ok = change_to_user_and_service_by_fsp(state->dst_fsp);
	SMB_ASSERT(ok);
	state->restore_dst_user = false;
}

/* req waits for the helper's reply to run, sent ahead. */
static void copyoffload_write_wait_for(struct tevent_req *req,
				       struct copyoffload_chunk_run *run)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);

	DBG_DEBUG("copyoffload: %s: chunk at %jd waits for the run sent ahead "
		  "at %jd%s\n", fsp_str_dbg(state->dst_fsp),
		  (intmax_t)state->dst_off, (intmax_t)run->dst_off,
		  NT_STATUS_IS_OK(state->failure) ? "" : ", then fails");
	run->wait->req = req;
	state->wait = run->wait;
}

/*
 * Fails req. A failed chunk ends smbd's copychunk loop and with it the
 * request, so while a run of the same request sent ahead is still with the
 * helper, the chunk waits for that reply first: no copy of the request may
 * write to the destination after the client has its answer.
 */
static void copyoffload_write_fail(struct tevent_req *req, NTSTATUS status)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	struct copyoffload_chunk_run *pending =
		copyoffload_chunk_run_unanswered(state->smbd_state);

	if (pending == NULL) {
		tevent_req_nterror(req, status);
		return;
	}
	state->failure = status;
	copyoffload_write_wait_for(req, pending);
}

static void copyoffload_write_next_done(struct tevent_req *subreq);

/* The next module copies req's chunk (or clone). */
static void copyoffload_write_pass_to_next(struct tevent_req *req)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	struct tevent_req *subreq = NULL;

	subreq = SMB_VFS_NEXT_OFFLOAD_WRITE_SEND(state->handle,
						 state,
						 state->ev,
						 state->fsctl,
						 state->token,
						 state->src_off,
						 state->dst_fsp,
						 state->dst_off,
						 state->num);
	if (subreq == NULL) {
		copyoffload_write_fail(req, NT_STATUS_NO_MEMORY);
		return;
	}
	tevent_req_set_callback(subreq, copyoffload_write_next_done, req);
}

static void copyoffload_write_next_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	NTSTATUS status;

	status = SMB_VFS_NEXT_OFFLOAD_WRITE_RECV(state->handle, subreq,
						 &state->copied);
	TALLOC_FREE(subreq);
	if (!NT_STATUS_IS_OK(status)) {
		copyoffload_write_fail(req, status);
		return;
	}
	tevent_req_done(req);
}

static bool copyoffload_strict_lock_ok(files_struct *fsp, off_t offset,
				       off_t length, enum brl_type lock_type)
{
	struct lock_struct lck;

	init_strict_lock_struct(fsp,
				fsp->op->global->open_persistent_id,
				offset,
				length,
				lock_type,
				lp_posix_cifsu_locktype(fsp),
				&lck);
	return SMB_VFS_STRICT_LOCK_CHECK(fsp->conn, fsp, &lck);
}

/*
 * What a request this module cannot serve gets: a copychunk goes to the
 * next module (smbd's buffered copy handles it); a clone has no such path
 * in 4.17, and MS-FSCC answers NOT_SUPPORTED.
 */
static NTSTATUS copyoffload_not_ours(const struct copyoffload_write_state *state)
{
	if (state->fsctl == FSCTL_DUP_EXTENTS_TO_FILE) {
		return NT_STATUS_NOT_SUPPORTED;
	}
	return NT_STATUS_MORE_PROCESSING_REQUIRED;
}

/*
 * A copy between two block-device nodes in a share (raw volumes): smbd
 * serves such a node as a file whose size is 0, so stock Samba refuses any
 * chunk of it with INVALID_VIEW_SIZE. This module sends these pairs to the
 * helper's device path (NVMe Copy, SCSI EXTENDED COPY, which claims both
 * devices exclusively) and checks the range against the device's real
 * size. A pair of a device and a file keeps smbd's view.
 */
static bool copyoffload_device_pair(const files_struct *src_fsp,
				    const files_struct *dst_fsp)
{
	return S_ISBLK(src_fsp->fsp_name->st.st_ex_mode) &&
	       S_ISBLK(dst_fsp->fsp_name->st.st_ex_mode);
}

/* The source's size: its st_size, or a block device's real size. */
static off_t copyoffload_source_size(files_struct *src_fsp, bool device_pair)
{
	uint64_t bytes = 0;

	if (!device_pair) {
		return src_fsp->fsp_name->st.st_ex_size;
	}
	if (ioctl(fsp_get_io_fd(src_fsp), BLKGETSIZE64, &bytes) != 0) {
		DBG_WARNING("copyoffload: %s: BLKGETSIZE64: %s\n",
			    fsp_str_dbg(src_fsp), strerror(errno));
		return 0;
	}
	return bytes > INT64_MAX ? INT64_MAX : (off_t)bytes;
}

/*
 * The checks smbd's own copy path makes, in the same order, so clients see
 * the same statuses: token, access, source size, strict locks (copychunk
 * only: a clone ignores byte-range locks, as on ReFS). A token this module
 * did not mint is the next module's. On success smbd is
 * back in the destination's user context. NT_STATUS_MORE_PROCESSING_REQUIRED
 * means the next module must do this copy.
 */
static NTSTATUS copyoffload_write_check(struct copyoffload_write_state *state,
					files_struct **_src_fsp)
{
	bool is_clone = state->fsctl == FSCTL_DUP_EXTENTS_TO_FILE;
	files_struct *src_fsp = NULL;
	files_struct *dst_fsp = state->dst_fsp;
	off_t src_off = state->src_off;
	off_t dst_off = state->dst_off;
	/* A run, which starts at this chunk, is checked as one range. */
	off_t num = copyoffload_write_length(state);
	NTSTATUS status;

	/* off_t is signed: refuse anything whose end does not fit. */
	if (src_off < 0 || dst_off < 0 || src_off > INT64_MAX - num ||
	    dst_off > INT64_MAX - num) {
		return NT_STATUS_INVALID_PARAMETER;
	}
	if ((uint64_t)num > COPYOFFLOAD_MAX_COPY_LENGTH) {
		/*
		 * Longer than one COPY may name: only a clone (of a sparse
		 * file past 256 TiB). From 4.22 on the next module clones it;
		 * before, nothing in smbd can, and the client copies.
		 */
		DBG_INFO("copyoffload: %s: clone of %jd bytes, more than the "
			 "helper takes in one request\n",
			 fsp_str_dbg(dst_fsp), (intmax_t)num);
		return (is_clone && !COPYOFFLOAD_NEXT_CLONES)
			       ? NT_STATUS_NOT_SUPPORTED
			       : NT_STATUS_MORE_PROCESSING_REQUIRED;
	}

	status = vfs_offload_token_db_fetch_fsp(copyoffload_offload_ctx,
						state->token, &src_fsp);
	if (!NT_STATUS_IS_OK(status)) {
		/*
		 * Not a token this module minted: a RESUME_KEY asked for on a
		 * share without it, whose token only the next module's
		 * database holds (or no token at all). The next module copies
		 * it or gives stock Samba's answer; before 4.22 it does not
		 * clone, and this answer is the one to give.
		 */
		if (is_clone && !COPYOFFLOAD_NEXT_CLONES) {
			return status;
		}
		DBG_DEBUG("copyoffload: %s: resume key not ours (%s), copy "
			  "goes to the next module\n",
			  fsp_str_dbg(dst_fsp), nt_errstr(status));
		return NT_STATUS_MORE_PROCESSING_REQUIRED;
	}
	status = vfs_offload_token_check_handles(state->fsctl, src_fsp,
						 dst_fsp);
	if (!NT_STATUS_IS_OK(status)) {
		return status;
	}

	/*
	 * Streams and in-file overlap need smbd's buffered copy (smbd has
	 * already refused an overlapping clone).
	 */
	if (fsp_is_alternate_stream(src_fsp) ||
	    fsp_is_alternate_stream(dst_fsp)) {
		return copyoffload_not_ours(state);
	}
	if (file_id_equal(&src_fsp->file_id, &dst_fsp->file_id) &&
	    sys_io_ranges_overlap(num, src_off,
				  num, dst_off)) {
		return copyoffload_not_ours(state);
	}
	if (fsp_get_io_fd(src_fsp) == -1 || fsp_get_io_fd(dst_fsp) == -1) {
		return copyoffload_not_ours(state);
	}
	/* A device node and a file (4.17 serves nodes): smbd's own copy. */
	if (!copyoffload_device_pair(src_fsp, dst_fsp) &&
	    !(S_ISREG(src_fsp->fsp_name->st.st_ex_mode) &&
	      S_ISREG(dst_fsp->fsp_name->st.st_ex_mode))) {
		return copyoffload_not_ours(state);
	}

	if (!change_to_user_and_service_by_fsp(src_fsp)) {
		return NT_STATUS_ACCESS_DENIED;
	}
	state->restore_dst_user = true;

	status = vfs_stat_fsp(src_fsp);
	if (!NT_STATUS_IS_OK(status)) {
		return status;
	}
	state->source_size = copyoffload_source_size(
		src_fsp, copyoffload_device_pair(src_fsp, dst_fsp));
	if (state->source_size < src_off + num) {
		/*
		 * MS-SMB2 3.3.5.15.6 <240>: what Windows returns for a chunk;
		 * MS-FSCC 2.3.8: NOT_SUPPORTED for a clone.
		 */
		return is_clone ? NT_STATUS_NOT_SUPPORTED
				: NT_STATUS_INVALID_VIEW_SIZE;
	}
	if (!is_clone &&
	    !copyoffload_strict_lock_ok(src_fsp, src_off, num,
					READ_LOCK)) {
		return NT_STATUS_FILE_LOCK_CONFLICT;
	}

	if (!change_to_user_and_service_by_fsp(dst_fsp)) {
		return NT_STATUS_INTERNAL_ERROR;
	}
	state->restore_dst_user = false;

	if (!is_clone &&
	    !copyoffload_strict_lock_ok(dst_fsp, dst_off, num,
					WRITE_LOCK)) {
		return NT_STATUS_FILE_LOCK_CONFLICT;
	}

	*_src_fsp = src_fsp;
	return NT_STATUS_OK;
}

static void copyoffload_write_helper_done(struct tevent_req *subreq);

/* Whether the chunk may be cloned inline (inline_clone.h). */
static int copyoffload_write_clone_check(
	const struct copyoffload_write_state *state, files_struct *src_fsp)
{
	return copyoffload_inline_clone_check(
		fsp_get_io_fd(src_fsp), state->src_off,
		src_fsp->fsp_name->st.st_ex_size,
		fsp_get_io_fd(state->dst_fsp), state->dst_off,
		copyoffload_write_length(state),
		state->dst_fsp->fsp_name->st.st_ex_blksize);
}

/*
 * A copychunk chunk on a share that clones first is cloned right here when
 * that is bounded (inline_clone.c): cheaper than the round trip to the
 * helper, which still takes everything this declines.
 */
static bool copyoffload_write_inline_clone(
	const struct copyoffload_write_state *state, files_struct *src_fsp)
{
	struct copyoffload_config *config = state->config;
	const SMB_STRUCT_STAT *src_st = &src_fsp->fsp_name->st;
	const SMB_STRUCT_STAT *dst_st = &state->dst_fsp->fsp_name->st;
	int err;

	if (!config->inline_clone || state->fsctl == FSCTL_DUP_EXTENTS_TO_FILE ||
	    config->share.method_order[0] != COPYOFFLOAD_METHOD_CLONE ||
	    !S_ISREG(src_st->st_ex_mode) || !S_ISREG(dst_st->st_ex_mode) ||
	    src_st->st_ex_dev != dst_st->st_ex_dev) {
		/*
		 * Another st_dev: another filesystem, where the clone would
		 * fail with EXDEV, or another btrfs subvolume, which the
		 * helper still clones.
		 */
		return false;
	}
	if (copyoffload_helper_copying(config->helper_socket,
				       fsp_get_io_fd(src_fsp),
				       fsp_get_io_fd(state->dst_fsp))) {
		return false; /* the clone would wait for the helper's */
	}
	err = copyoffload_write_clone_check(state, src_fsp);
	if (err == EPERM) {
		/*
		 * A source the user may only read: Linux answers questions
		 * about its page cache to writers and owners only. Root
		 * only then, since switching costs two credential changes.
		 */
		become_root();
		err = copyoffload_write_clone_check(state, src_fsp);
		unbecome_root();
	}
	if (err != 0) {
		return false;
	}
	err = copyoffload_inline_clone(
		fsp_get_io_fd(src_fsp), state->src_off,
		fsp_get_io_fd(state->dst_fsp), state->dst_off,
		copyoffload_write_length(state));
	if (copyoffload_refuses_clone(err)) {
		/* Not a reflink filesystem: no more attempts on this share. */
		DBG_INFO("copyoffload: %s does not clone (%s): chunks go to "
			 "the helper without an inline attempt\n",
			 state->dst_fsp->conn->connectpath, strerror(err));
		config->inline_clone = false;
	}
	return err == 0;
}

static bool copyoffload_handles_fsctl(uint32_t fsctl)
{
	switch (fsctl) {
	case FSCTL_SRV_COPYCHUNK:
	case FSCTL_SRV_COPYCHUNK_WRITE:
	case FSCTL_DUP_EXTENTS_TO_FILE:
		return true;
	}
	return false;
}

static NTSTATUS copyoffload_status_from_errno(uint32_t fsctl, int err);

/*
 * A chunk after the first of a run: the helper's reply to the run has come
 * (smbd asked for this chunk only once the run's first one completed) and
 * says whether it covers this chunk.
 */
static void copyoffload_write_from_run(struct tevent_req *req)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	const struct copyoffload_chunk_run *run = state->run;

	if (copyoffload_chunk_run_covers(run, state->dst_off, state->num)) {
		state->copied = state->num;
		tevent_req_done(req);
		return;
	}
	if (!run->answered || run->status == 0) {
		DBG_ERR("copyoffload: %s: chunk at %jd of a run without its "
			"reply\n", fsp_str_dbg(state->dst_fsp),
			(intmax_t)state->dst_off);
		copyoffload_write_fail(req, NT_STATUS_INTERNAL_ERROR);
		return;
	}
	/* The run's failure, logged with its reply, reaches this chunk. */
	copyoffload_write_fail(req, copyoffload_status_from_errno(state->fsctl,
								  run->status));
}

static void copyoffload_run_ahead_done(struct tevent_req *subreq);

/*
 * The helper's reply to a copy: 0 and *reply, or the errno of a copy the
 * helper did not take (it cannot be reached, is stopping, or refused the
 * share because all the shares it keeps are in use).
 */
static int copyoffload_helper_reply(struct tevent_req *subreq,
				    struct copyoffload_copy_reply *reply)
{
	int err = copyoffload_helper_copy_recv(subreq, reply);

	TALLOC_FREE(subreq);
	if (err == 0 && reply->bytes_done == 0 &&
	    (reply->status == ESHUTDOWN || reply->status == EUSERS)) {
		err = reply->status;
	}
	return err;
}

/*
 * What copyoffload_write_check checks of a range, for a run sent ahead
 * right after the current chunk passed it: the files (token, access, kind,
 * the source's size as just read) are the same for every run of the
 * request. Byte-range locks are checked apart. False: not sent ahead.
 */
static bool copyoffload_run_ahead_in_range(
	off_t source_size, bool same_file,
	const struct copyoffload_chunk_run *run)
{
	if (run->src_off < 0 || run->dst_off < 0 ||
	    run->src_off > INT64_MAX - run->length ||
	    run->dst_off > INT64_MAX - run->length) {
		return false;
	}
	if (same_file && sys_io_ranges_overlap(run->length, run->src_off,
					       run->length, run->dst_off)) {
		return false;
	}
	return run->src_off + run->length <= source_size;
}

/* Whether no byte-range lock stops a copy of these ranges. */
static bool copyoffload_locks_allow(files_struct *src_fsp, off_t src_off,
				    off_t src_len, files_struct *dst_fsp,
				    off_t dst_off, off_t dst_len)
{
	return copyoffload_strict_lock_ok(src_fsp, src_off, src_len,
					  READ_LOCK) &&
	       copyoffload_strict_lock_ok(dst_fsp, dst_off, dst_len,
					  WRITE_LOCK);
}

/*
 * The request's later runs go to the helper now, each as a copy of its own,
 * so that chunks out of file order do not each wait for a round trip. Each
 * passes the checks smbd would make when it asks for its first chunk; the
 * first one that does not, or that overlaps an earlier run so that copying
 * both at once could change the result, is not sent: it and the chunks
 * after it go their own way when smbd asks for them. Locks are looked up
 * once for the span of all the runs, and run by run only when that span
 * meets one.
 */
static void copyoffload_write_send_ahead(
	const struct copyoffload_write_state *state, files_struct *src_fsp,
	const struct copyoffload_copy_args *current)
{
	struct copyoffload_config *config = state->config;
	bool same_file = file_id_equal(&src_fsp->file_id,
				       &state->dst_fsp->file_id);
	struct copyoffload_chunk_run *runs[COPYCHUNK_MAX_CHUNKS];
	struct copyoffload_chunk_run *run = state->run;
	off_t src_lo = INT64_MAX, src_hi = 0, dst_lo = INT64_MAX, dst_hi = 0;
	bool span_unlocked;
	size_t count = 0;
	size_t i;

	while (count < ARRAY_SIZE(runs) &&
	       (run = copyoffload_chunk_run_after(run)) != NULL) {
		if (!copyoffload_run_ahead_in_range(state->source_size,
						    same_file, run) ||
		    copyoffload_chunk_run_overlaps_earlier(run, same_file)) {
			TALLOC_FREE(run);
			break;
		}
		src_lo = MIN(src_lo, run->src_off);
		src_hi = MAX(src_hi, run->src_off + run->length);
		dst_lo = MIN(dst_lo, run->dst_off);
		dst_hi = MAX(dst_hi, run->dst_off + run->length);
		runs[count++] = run;
	}
	if (count == 0) {
		return;
	}
	span_unlocked = copyoffload_locks_allow(src_fsp, src_lo,
						src_hi - src_lo,
						state->dst_fsp, dst_lo,
						dst_hi - dst_lo);

	for (i = 0; i < count; i++) {
		struct copyoffload_copy_args args = *current;
		struct tevent_req *subreq = NULL;

		run = runs[i];
		if (!span_unlocked &&
		    !copyoffload_locks_allow(src_fsp, run->src_off, run->length,
					     state->dst_fsp, run->dst_off,
					     run->length)) {
			break;
		}
		run->wait = talloc_zero(run, struct copyoffload_run_wait);
		if (run->wait == NULL) {
			break;
		}
		talloc_set_destructor(run->wait,
				      copyoffload_run_wait_destructor);
		args.src_offset = run->src_off;
		args.dst_offset = run->dst_off;
		args.length = run->length;
		subreq = copyoffload_helper_copy_send(run, state->ev,
						      config->helper_socket,
						      &config->share, &args);
		if (subreq == NULL) {
			break;
		}
		tevent_req_set_callback(subreq, copyoffload_run_ahead_done, run);
	}
	if (i > 0) {
		DBG_DEBUG("copyoffload: %s: %zu runs sent ahead\n",
			  fsp_str_dbg(state->dst_fsp), i);
	}
	/* The runs not sent: their chunks go their own way. */
	for (; i < count; i++) {
		TALLOC_FREE(runs[i]);
	}
}

static void copyoffload_write_start(struct tevent_req *req);

/*
 * The helper's reply to a run sent ahead. The chunk smbd asked for in the
 * meantime, if any, is answered from it; when the helper did not take the
 * copy, that chunk and the run's later ones go their own way.
 */
static void copyoffload_run_ahead_done(struct tevent_req *subreq)
{
	struct copyoffload_chunk_run *run = tevent_req_callback_data(
		subreq, struct copyoffload_chunk_run);
	struct tevent_req *waiting = copyoffload_run_wait_end(run->wait);
	struct copyoffload_write_state *state = NULL;
	struct copyoffload_copy_reply reply;
	int err;

	err = copyoffload_helper_reply(subreq, &reply);
	if (err != 0) {
		/*
		 * Kept, so that the request's later chunks are not sent
		 * ahead again, each time to be refused.
		 */
		DBG_INFO("copyoffload: run of %" PRIu32 " chunks at %jd sent "
			 "ahead: helper unavailable (%s), its chunks go alone\n",
			 run->num_chunks, (intmax_t)run->dst_off, strerror(err));
		run->declined = true;
	} else {
		run->answered = true;
		run->status = reply.status;
		run->bytes_done = reply.bytes_done;
		if (reply.status != 0) {
			DBG_NOTICE("copyoffload: copy of %jd bytes at %jd (sent "
				   "ahead) failed after %" PRIu64 " bytes: %s\n",
				   (intmax_t)run->length, (intmax_t)run->dst_off,
				   reply.bytes_done, strerror(reply.status));
		}
	}
	if (waiting == NULL) {
		return;
	}
	state = tevent_req_data(waiting, struct copyoffload_write_state);
	if (!NT_STATUS_IS_OK(state->failure)) {
		/* It waited for the request's last runs to end. */
		copyoffload_write_fail(waiting, state->failure);
	} else if (err != 0) {
		copyoffload_write_start(waiting);
	} else {
		copyoffload_write_from_run(waiting);
	}
}

/*
 * Serves req's chunk (or clone): from a run's reply, inline, through the
 * helper or through the next module. On return req has finished, or it
 * waits for a reply.
 */
static void copyoffload_write_start(struct tevent_req *req)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	struct copyoffload_config *config = state->config;
	struct tevent_context *ev = state->ev;
	uint32_t fsctl = state->fsctl;
	off_t transfer_offset = state->src_off;
	struct files_struct *dest_fsp = state->dst_fsp;
	off_t dest_off = state->dst_off;
	struct tevent_req *subreq = NULL;
	struct copyoffload_copy_args args;
	files_struct *src_fsp = NULL;
	bool alone = !config->merge_chunks;
	NTSTATUS status;

	state->run = copyoffload_chunk_run_find(state->smbd_state, ev, fsctl,
						state->smbd_token,
						transfer_offset, dest_fsp,
						dest_off, state->num);
	if (state->run != NULL && state->run->declined) {
		/* The helper did not take its run sent ahead. */
		state->run = NULL;
		alone = true;
	}
	if (state->run != NULL && !state->run->answered) {
		/* Sent ahead: this chunk waits for the run's reply. */
		copyoffload_write_wait_for(req, state->run);
		return;
	}
	if (state->run != NULL) {
		copyoffload_write_from_run(req);
		return;
	}
	if (!alone) {
		state->run = copyoffload_chunk_run_start(
			state->smbd_state, ev, fsctl, state->smbd_token,
			transfer_offset, dest_fsp, dest_off, state->num);
	}

	status = copyoffload_write_check(state, &src_fsp);
	if (state->run != NULL && !NT_STATUS_IS_OK(status)) {
		bool merged = state->run->num_chunks > 1;

		/* Each chunk on its own then, so each gets its own status. */
		TALLOC_FREE(state->run);
		if (merged) {
			status = copyoffload_write_check(state, &src_fsp);
		}
	}
	if (NT_STATUS_EQUAL(status, NT_STATUS_MORE_PROCESSING_REQUIRED)) {
		DBG_DEBUG("copyoffload: %s: stream, overlapping range or "
			  "foreign token, copy goes to the next module\n",
			  fsp_str_dbg(dest_fsp));
		copyoffload_write_pass_to_next(req);
		return;
	}
	if (!NT_STATUS_IS_OK(status)) {
		copyoffload_write_fail(req, status);
		return;
	}

	/* What a write does to the destination (fileio.c write_file). */
	contend_level2_oplocks_begin(dest_fsp, LEVEL2_CONTEND_WRITE);
	contend_level2_oplocks_end(dest_fsp, LEVEL2_CONTEND_WRITE);
	mark_file_modified(dest_fsp);

	if (copyoffload_write_inline_clone(state, src_fsp)) {
		off_t length = copyoffload_write_length(state);

		DBG_DEBUG("copyoffload: cloned %jd bytes to %s at %jd inline\n",
			  (intmax_t)length, fsp_str_dbg(dest_fsp),
			  (intmax_t)dest_off);
		copyoffload_helper_count_inline_clone(
			ev, config->helper_socket, &config->share, length);
		if (state->run != NULL) {
			state->run->answered = true;
			state->run->bytes_done = length;
		}
		state->copied = state->num;
		tevent_req_done(req);
		return;
	}

	args = (struct copyoffload_copy_args) {
		.src_fd = fsp_get_io_fd(src_fsp),
		.dst_fd = fsp_get_io_fd(dest_fsp),
		.src_offset = transfer_offset,
		.dst_offset = dest_off,
		.length = copyoffload_write_length(state),
		.methods = copyoffload_config_methods(config),
		.flags = 0,
		/* The helper keeps both descriptors until either closes. */
		.src_owner = src_fsp,
		.dst_owner = dest_fsp,
	};
	if (fsctl == FSCTL_DUP_EXTENTS_TO_FILE && !config->dup_extents_fallback) {
		/* A clone must not silently become a full copy. */
		if ((args.methods &
		     COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE)) == 0) {
			DBG_INFO("copyoffload: %s: clone refused: "
				 "copyoffload:methods excludes clone\n",
				 fsp_str_dbg(dest_fsp));
			tevent_req_nterror(req, NT_STATUS_NOT_SUPPORTED);
			return;
		}
		args.methods = COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE);
		args.flags = COPYOFFLOAD_COPY_CLONE_ONLY;
	}
	/*
	 * From here on src_fsp is not touched again: the helper holds its
	 * own descriptors, so the source may be closed while the copy runs.
	 */
	subreq = copyoffload_helper_copy_send(state, ev, config->helper_socket,
					      &config->share, &args);
	if (subreq == NULL) {
		copyoffload_write_fail(req, NT_STATUS_NO_MEMORY);
		return;
	}
	tevent_req_set_callback(subreq, copyoffload_write_helper_done, req);
	if (state->run != NULL) {
		copyoffload_write_send_ahead(state, src_fsp, &args);
	}
}

static struct tevent_req *copyoffload_offload_write_send(
	struct vfs_handle_struct *handle,
	TALLOC_CTX *mem_ctx,
	struct tevent_context *ev,
	uint32_t fsctl,
	DATA_BLOB *token,
	off_t transfer_offset,
	struct files_struct *dest_fsp,
	off_t dest_off,
	off_t num)
{
	struct tevent_req *req = NULL;
	struct copyoffload_write_state *state = NULL;
	struct copyoffload_config *config = NULL;
	NTSTATUS status;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct copyoffload_config,
				return NULL);

	req = tevent_req_create(mem_ctx, &state,
				struct copyoffload_write_state);
	if (req == NULL) {
		return NULL;
	}
	*state = (struct copyoffload_write_state) {
		.handle = handle,
		.smbd_state = mem_ctx,
		.ev = ev,
		.config = config,
		.fsctl = fsctl,
		.src_off = transfer_offset,
		.dst_fsp = dest_fsp,
		.dst_off = dest_off,
		.num = num,
	};
	tevent_req_set_cleanup_fn(req, copyoffload_write_cleanup);
	state->token = &state->token_copy;
	state->smbd_token = token;
	if (token != NULL && token->length > 0) {
		state->token_copy = data_blob_talloc(state, token->data,
						     token->length);
		if (state->token_copy.data == NULL) {
			status = NT_STATUS_NO_MEMORY;
			goto fail;
		}
	}

	/* Also here: a copy may come without a RESUME_KEY (bug 15664). */
	status = vfs_offload_token_ctx_init(dest_fsp->conn->sconn->client,
					    &copyoffload_offload_ctx);
	if (!NT_STATUS_IS_OK(status)) {
		goto fail;
	}

	/* ChunkCount 0 (macOS copyfile) and other fsctls: the next module's. */
	if (!copyoffload_handles_fsctl(fsctl) || num == 0) {
		copyoffload_write_pass_to_next(req);
	} else {
		copyoffload_write_start(req);
	}
	goto done;
fail:
	/* Runs of the request sent ahead may still be with the helper. */
	copyoffload_write_fail(req, status);
done:
	if (!tevent_req_is_in_progress(req)) {
		return tevent_req_post(req, ev);
	}
	return req;
}

/*
 * The status a copy the helper failed with err gets: smbd's own mapping,
 * map_nt_error_from_unix(), as vfs_default's copy gives for the same errno,
 * and the common table only for an errno smbd's does not list. (The common
 * table alone turns EAGAIN, EINTR and ENOBUFS into STATUS_MORE_ENTRIES, a
 * success code: a client would take an unfinished copychunk for a finished
 * one.)
 */
static NTSTATUS copyoffload_status_from_errno(uint32_t fsctl, int err)
{
	NTSTATUS status;

	if (fsctl == FSCTL_DUP_EXTENTS_TO_FILE) {
		switch (err) {
		case EOPNOTSUPP:
		case EXDEV:
		case ENOTTY:
		case ENOSYS:
			/* MS-FSCC 2.3.8: this filesystem cannot clone. */
			return NT_STATUS_NOT_SUPPORTED;
		case ENODATA:
			/* MS-FSCC 2.3.8: the range is beyond the source. */
			return NT_STATUS_NOT_SUPPORTED;
		}
	}
	switch (err) {
	case ENODATA:
		/* The source shrank below the range after it was checked. */
		return NT_STATUS_INVALID_VIEW_SIZE;
	case EPROTO:
	case EBADMSG:
		return NT_STATUS_INTERNAL_ERROR;
	}
	status = map_nt_error_from_unix(err);
	if (NT_STATUS_EQUAL(status, NT_STATUS_ACCESS_DENIED) && err != EPERM &&
	    err != EACCES) {
		/*
		 * smbd's table does not list err (ACCESS_DENIED is its
		 * default): the common one knows a few more, EBUSY (a device
		 * in use) giving SHARING_VIOLATION.
		 */
		NTSTATUS common = map_nt_error_from_unix_common(err);

		if (NT_STATUS_IS_ERR(common) &&
		    !NT_STATUS_EQUAL(common, NT_STATUS_UNSUCCESSFUL)) {
			status = common;
		}
	}
	if (!NT_STATUS_IS_ERR(status)) {
		/* Only an error may end a copy. */
		return NT_STATUS_INTERNAL_ERROR;
	}
	return status;
}

static void copyoffload_write_helper_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	struct copyoffload_copy_reply reply;
	NTSTATUS status;
	off_t length;
	int err;

	err = copyoffload_helper_reply(subreq, &reply);
	if (err != 0) {
		/*
		 * Nothing was reported copied, and rewriting a chunk from an
		 * unchanged source is harmless: the next module may redo it.
		 * The run's later chunks go their own way, like any chunk.
		 */
		TALLOC_FREE(state->run);
		if (state->config->helper_down == COPYOFFLOAD_HELPER_DOWN_FAIL ||
		    (state->fsctl == FSCTL_DUP_EXTENTS_TO_FILE &&
		     !COPYOFFLOAD_NEXT_CLONES)) {
			/*
			 * vfs_default before 4.22 cannot clone (it would
			 * answer INVALID_PARAMETER): NOT_SUPPORTED makes the
			 * client copy the data itself. From 4.22 on a clone
			 * goes to vfs_default's FICLONERANGE like a chunk.
			 */
			DBG_NOTICE("copyoffload: %s: helper unavailable (%s), "
				   "failing the copy or clone\n",
				   fsp_str_dbg(state->dst_fsp), strerror(err));
			copyoffload_write_fail(req, NT_STATUS_NOT_SUPPORTED);
			return;
		}
		DBG_INFO("copyoffload: %s: helper unavailable (%s), copy goes "
			 "to the next module\n",
			 fsp_str_dbg(state->dst_fsp), strerror(err));
		copyoffload_write_pass_to_next(req);
		return;
	}

	length = copyoffload_write_length(state);
	if (state->run != NULL) {
		state->run->answered = true;
		state->run->status = reply.status;
		state->run->bytes_done = reply.bytes_done;
	}
	if (reply.status != 0) {
		status = copyoffload_status_from_errno(state->fsctl, reply.status);
		DBG_NOTICE("copyoffload: copy of %jd bytes to %s at %jd failed "
			   "after %" PRIu64 " bytes: %s (%s)\n",
			   (intmax_t)length, fsp_str_dbg(state->dst_fsp),
			   (intmax_t)state->dst_off, reply.bytes_done,
			   strerror(reply.status), nt_errstr(status));
		if (state->run == NULL ||
		    !copyoffload_chunk_run_covers(state->run, state->dst_off,
						  state->num)) {
			copyoffload_write_fail(req, status);
			return;
		}
	}

	/*
	 * The client refuses replies whose bytes_done differ from the length
	 * asked for unless they carry an error; a chunk is reported only when
	 * all of its bytes were done.
	 */
	state->copied = state->num;
	DBG_DEBUG("copyoffload: copied %jd bytes to %s at %jd "
		  "(clone %" PRIu64 ", copy_file_range %" PRIu64
		  ", read/write %" PRIu64 ")\n",
		  (intmax_t)length, fsp_str_dbg(state->dst_fsp),
		  (intmax_t)state->dst_off,
		  reply.bytes_by_method[COPYOFFLOAD_METHOD_CLONE],
		  reply.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE],
		  reply.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE]);
	tevent_req_done(req);
}

static NTSTATUS copyoffload_offload_write_recv(struct vfs_handle_struct *handle,
					       struct tevent_req *req,
					       off_t *copied)
{
	struct copyoffload_write_state *state = tevent_req_data(
		req, struct copyoffload_write_state);
	NTSTATUS status;

	if (tevent_req_is_nterror(req, &status)) {
		*copied = 0;
		tevent_req_received(req);
		return status;
	}
	*copied = state->copied;
	tevent_req_received(req);
	return NT_STATUS_OK;
}

/* The clones made inline for this share reach the helper's statistics. */
static void copyoffload_disconnect(struct vfs_handle_struct *handle)
{
	copyoffload_helper_report_clones();
	SMB_VFS_NEXT_DISCONNECT(handle);
}

static struct vfs_fn_pointers copyoffload_fns = {
	.connect_fn = copyoffload_connect,
	.disconnect_fn = copyoffload_disconnect,
	.fs_capabilities_fn = copyoffload_fs_capabilities,
	.offload_read_send_fn = copyoffload_offload_read_send,
	.offload_read_recv_fn = copyoffload_offload_read_recv,
	.offload_write_send_fn = copyoffload_offload_write_send,
	.offload_write_recv_fn = copyoffload_offload_write_recv,
};

NTSTATUS samba_init_module(TALLOC_CTX *ctx);

NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return smb_register_vfs(SMB_VFS_INTERFACE_VERSION, "copyoffload",
				&copyoffload_fns);
}
