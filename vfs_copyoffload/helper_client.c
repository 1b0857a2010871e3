/*
 * copyoffload: asynchronous client of the copyoffloadd helper.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 *
 * One non-blocking SOCK_SEQPACKET connection per helper socket path in each
 * smbd process. Requests are queued on the connection, sent when the socket
 * takes them and matched to replies by request id; the socket is watched by
 * a tevent fd so smbd's loop never waits for the helper. Every completion is
 * deferred to the next loop turn, so no caller code runs while this file is
 * walking its own lists.
 *
 * Each share's name and policy is declared once per socket (SHARE, no
 * reply) right before the first COPY that names it; the helper handles one
 * connection's messages in order. After a reconnect every share is
 * declared again on first use.
 */

#include "includes.h"
#include <sys/socket.h>
#include <sys/un.h>
#include "lib/util/dlinklist.h"
#include "lib/util/tevent_unix.h"
#include "helper_client.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

/* After a failed connect, copies go elsewhere for this long before retrying. */
#define RECONNECT_BACKOFF_SECONDS 1

/*
 * A helper that stops answering but keeps its socket open (hung, stopped)
 * would leave smbd's requests, and the client's handles, waiting forever.
 * While copies are outstanding, a connection that brings no message for
 * this long is given up as if the helper had gone: its copies are handed
 * back with ETIMEDOUT, the socket is closed (a helper that is only slow
 * then drops them), and copies go elsewhere for as long again before the
 * helper is tried anew. Any message restarts the wait, so long copies are
 * not cut short while others complete. [global] "copyoffload:helper
 * timeout" sets the seconds; 0 waits forever.
 */
#define REPLY_TIMEOUT_SECONDS 120

struct helper_call;

/* A share as declared to the helper, under a share id of this connection. */
struct helper_share {
	struct helper_share *prev, *next;
	struct copyoffload_share declaration;
	bool declared; /* SHARE sent on the current socket */
};

struct helper_conn {
	struct helper_conn *prev, *next;
	char *socket_path;
	struct tevent_context *ev;
	int fd;
	pid_t fd_owner; /* a forked child must not read its parent's replies */
	struct tevent_fd *fde;
	bool hello_answered;
	uint64_t next_request_id;
	struct helper_call *calls; /* awaiting a reply, oldest first */
	struct helper_share *shares;
	uint32_t next_share_id;
	time_t retry_after;
	int last_error;
	bool reported_down;
	struct tevent_timer *reply_timer; /* while calls are outstanding */
};

/* Per smbd process: the connections outlive any share or request. */
static struct helper_conn *helper_conns;

struct helper_call {
	struct helper_call *prev, *next;
	struct helper_conn *conn; /* NULL once answered or failed */
	struct helper_share *share; /* NULL: counts for no share */
	struct tevent_req *req;
	uint64_t request_id;
	uint64_t length;
	int src_fd;
	int dst_fd;
	bool sent;
	uint8_t msg[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_reply reply;
};

static void helper_conn_handler(struct tevent_context *ev,
				struct tevent_fd *fde,
				uint16_t flags,
				void *private_data);

static struct helper_conn *helper_conn_get(struct tevent_context *ev,
					   const char *socket_path)
{
	struct helper_conn *conn = NULL;

	for (conn = helper_conns; conn != NULL; conn = conn->next) {
		if (strcmp(conn->socket_path, socket_path) == 0) {
			return conn;
		}
	}

	conn = talloc_zero(NULL, struct helper_conn);
	if (conn == NULL) {
		return NULL;
	}
	conn->socket_path = talloc_strdup(conn, socket_path);
	if (conn->socket_path == NULL) {
		TALLOC_FREE(conn);
		return NULL;
	}
	conn->ev = ev;
	conn->fd = -1;
	conn->next_request_id = 1;
	conn->next_share_id = 1;
	DLIST_ADD(helper_conns, conn);
	return conn;
}

/* Same name and policy (ids aside). */
static bool helper_share_matches(const struct copyoffload_share *a,
				 const struct copyoffload_share *b)
{
	return memcmp(a->name, b->name, sizeof(a->name)) == 0 &&
	       memcmp(a->method_order, b->method_order,
		      sizeof(a->method_order)) == 0 &&
	       a->max_segment == b->max_segment &&
	       a->max_bytes_per_second == b->max_bytes_per_second &&
	       a->max_concurrent == b->max_concurrent;
}

/* The connection's entry for share, made on first use. */
static struct helper_share *helper_share_get(struct helper_conn *conn,
					     const struct copyoffload_share *share)
{
	struct helper_share *entry = NULL;

	for (entry = conn->shares; entry != NULL; entry = entry->next) {
		if (helper_share_matches(&entry->declaration, share)) {
			return entry;
		}
	}
	entry = talloc_zero(conn, struct helper_share);
	if (entry == NULL) {
		return NULL;
	}
	entry->declaration = *share;
	entry->declaration.share_id = conn->next_share_id++;
	if (conn->next_share_id == 0) {
		conn->next_share_id = 1; /* 0 means "no share" */
	}
	DLIST_ADD(conn->shares, entry);
	return entry;
}

/* The socket is gone: every share must be declared again on the next. */
static void helper_conn_forget_declarations(struct helper_conn *conn)
{
	struct helper_share *entry = NULL;

	for (entry = conn->shares; entry != NULL; entry = entry->next) {
		entry->declared = false;
	}
}

static void helper_call_finish(struct helper_call *call, int err)
{
	struct tevent_context *ev = call->conn->ev;

	DLIST_REMOVE(call->conn->calls, call);
	call->conn = NULL;
	tevent_req_defer_callback(call->req, ev);
	if (err != 0) {
		tevent_req_error(call->req, err);
		return;
	}
	tevent_req_done(call->req);
}

/*
 * The helper went away or broke the protocol: nothing is known about the
 * copies it had, so every one of them fails with err and the caller decides
 * (smbd's copies are idempotent per chunk and can be redone elsewhere).
 */
static void helper_conn_fail(struct helper_conn *conn, int err,
			     const char *what)
{
	unsigned in_flight = 0;
	struct helper_call *call = NULL;

	for (call = conn->calls; call != NULL; call = call->next) {
		in_flight++;
	}
	DBG_ERR("copyoffload: lost the helper at %s while %s: %s; "
		"%u copies in flight are handed back\n",
		conn->socket_path, what, strerror(err), in_flight);

	TALLOC_FREE(conn->fde);
	TALLOC_FREE(conn->reply_timer);
	close(conn->fd);
	conn->fd = -1;
	conn->hello_answered = false;
	helper_conn_forget_declarations(conn);
	while (conn->calls != NULL) {
		helper_call_finish(conn->calls, err);
	}
}

static void helper_conn_timed_out(struct tevent_context *ev,
				  struct tevent_timer *te,
				  struct timeval now,
				  void *private_data)
{
	struct helper_conn *conn = talloc_get_type_abort(
		private_data, struct helper_conn);

	conn->reply_timer = NULL; /* tevent frees it */
	conn->last_error = ETIMEDOUT;
	conn->retry_after = now.tv_sec + lp_parm_int(
		GLOBAL_SECTION_SNUM, "copyoffload", "helper timeout",
		REPLY_TIMEOUT_SECONDS);
	helper_conn_fail(conn, ETIMEDOUT, "waiting for a reply");
}

/* (Re)starts the wait for the helper's next message, or ends it. */
static void helper_conn_watch(struct helper_conn *conn)
{
	int seconds = lp_parm_int(GLOBAL_SECTION_SNUM, "copyoffload",
				  "helper timeout", REPLY_TIMEOUT_SECONDS);

	TALLOC_FREE(conn->reply_timer);
	if (conn->calls == NULL || conn->fd == -1 || seconds <= 0) {
		return;
	}
	conn->reply_timer = tevent_add_timer(
		conn->ev, conn, tevent_timeval_current_ofs(seconds, 0),
		helper_conn_timed_out, conn);
}

static int helper_conn_open(struct helper_conn *conn)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct copyoffload_hello hello = {
		.request_id = 0,
		.min_version = COPYOFFLOAD_PROTOCOL_VERSION,
		.max_version = COPYOFFLOAD_PROTOCOL_VERSION,
	};
	uint8_t msg[COPYOFFLOAD_HELLO_SIZE];
	ssize_t sent;
	int fd, ret, err;

	if (strlen(conn->socket_path) >= sizeof(sun.sun_path)) {
		return ENAMETOOLONG;
	}
	memcpy(sun.sun_path, conn->socket_path, strlen(conn->socket_path));

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		return errno;
	}

	/* The socket is root's alone (mode 0600); smbd runs as the user. */
	become_root();
	ret = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	err = errno;
	unbecome_root();
	if (ret == -1) {
		close(fd);
		return err;
	}

	/* HELLO goes first; COPY requests may follow before it is answered. */
	copyoffload_encode_hello(msg, &hello);
	sent = send(fd, msg, sizeof(msg), MSG_NOSIGNAL);
	if (sent != (ssize_t)sizeof(msg)) {
		err = (sent == -1) ? errno : EPROTO;
		close(fd);
		return err;
	}

	conn->fde = tevent_add_fd(conn->ev, conn, fd, TEVENT_FD_READ,
				  helper_conn_handler, conn);
	if (conn->fde == NULL) {
		close(fd);
		return ENOMEM;
	}
	conn->fd = fd;
	conn->fd_owner = getpid();
	return 0;
}

/* Connects if needed. Returns 0 when the connection is usable. */
static int helper_conn_ensure(struct helper_conn *conn)
{
	time_t now = time(NULL);
	int err;

	if (conn->fd != -1 && conn->fd_owner != getpid()) {
		/* Forked: the socket and its replies stay with the parent. */
		TALLOC_FREE(conn->fde);
		TALLOC_FREE(conn->reply_timer);
		close(conn->fd);
		conn->fd = -1;
		conn->hello_answered = false;
		helper_conn_forget_declarations(conn);
		while (conn->calls != NULL) {
			struct helper_call *call = conn->calls;
			DLIST_REMOVE(conn->calls, call);
			call->conn = NULL;
		}
	}
	if (conn->fd != -1) {
		return 0;
	}
	if (now < conn->retry_after) {
		return conn->last_error;
	}

	err = helper_conn_open(conn);
	if (err != 0) {
		conn->last_error = err;
		conn->retry_after = now + RECONNECT_BACKOFF_SECONDS;
		if (!conn->reported_down) {
			DBG_ERR("copyoffload: helper at %s unavailable: %s; "
				"copies go to the next module or fail, as "
				"'copyoffload:helper down' says, and the "
				"helper is tried again every %d s\n",
				conn->socket_path, strerror(err),
				RECONNECT_BACKOFF_SECONDS);
			conn->reported_down = true;
		}
		return err;
	}
	if (conn->reported_down) {
		DBG_ERR("copyoffload: helper at %s reachable again\n",
			conn->socket_path);
		conn->reported_down = false;
	}
	DBG_INFO("copyoffload: connected to helper at %s\n",
		 conn->socket_path);
	return 0;
}

static int helper_send_copy(int fd, struct helper_call *call)
{
	int fds[2] = { call->src_fd, call->dst_fd };
	union {
		struct cmsghdr hdr;
		uint8_t buf[CMSG_SPACE(sizeof(fds))];
	} control = { .buf = { 0 } };
	struct iovec iov = {
		.iov_base = call->msg,
		.iov_len = sizeof(call->msg),
	};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh);
	ssize_t sent;

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));

	do {
		sent = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (sent == -1 && errno == EINTR);
	if (sent == -1) {
		return errno;
	}
	/* SOCK_SEQPACKET sends whole records or nothing. */
	return sent == (ssize_t)sizeof(call->msg) ? 0 : EPROTO;
}

static int helper_send_share(int fd, struct helper_share *share)
{
	uint8_t msg[COPYOFFLOAD_SHARE_SIZE];
	ssize_t sent;

	copyoffload_encode_share(msg, &share->declaration);
	do {
		sent = send(fd, msg, sizeof(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (sent == -1 && errno == EINTR);
	if (sent == -1) {
		return errno;
	}
	return sent == (ssize_t)sizeof(msg) ? 0 : EPROTO;
}

static void helper_conn_flush(struct helper_conn *conn)
{
	struct helper_call *call = NULL;
	int err;

	for (call = conn->calls; call != NULL; call = call->next) {
		if (call->sent) {
			continue;
		}
		err = 0;
		if (call->share != NULL && !call->share->declared) {
			call->share->declaration.request_id = conn->next_request_id++;
			err = helper_send_share(conn->fd, call->share);
			if (err == 0) {
				call->share->declared = true;
			}
		}
		if (err == 0) {
			err = helper_send_copy(conn->fd, call);
		}
		if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
			TEVENT_FD_WRITEABLE(conn->fde);
			return;
		}
		if (err != 0) {
			helper_conn_fail(conn, err, "sending a request");
			return;
		}
		call->sent = true;
	}
	TEVENT_FD_NOT_WRITEABLE(conn->fde);
}

static struct helper_call *helper_conn_find(struct helper_conn *conn,
					    uint64_t request_id)
{
	struct helper_call *call = NULL;

	for (call = conn->calls; call != NULL; call = call->next) {
		if (call->sent && call->request_id == request_id) {
			return call;
		}
	}
	return NULL;
}

static void helper_conn_take_hello_reply(struct helper_conn *conn,
					 const uint8_t *buf, size_t len)
{
	struct copyoffload_hello_reply reply;
	enum copyoffload_decode_result r;

	r = copyoffload_decode_hello_reply(buf, len, &reply);
	if (r != COPYOFFLOAD_DECODE_OK) {
		DBG_ERR("copyoffload: bad handshake reply from %s: %s\n",
			conn->socket_path, copyoffload_decode_result_string(r));
		helper_conn_fail(conn, EPROTO, "shaking hands");
		return;
	}
	if (reply.status != 0 ||
	    reply.version != COPYOFFLOAD_PROTOCOL_VERSION) {
		DBG_ERR("copyoffload: helper at %s refused protocol version "
			"%d (status %d, offers %u)\n",
			conn->socket_path, COPYOFFLOAD_PROTOCOL_VERSION,
			(int)reply.status, (unsigned)reply.version);
		helper_conn_fail(conn, EPROTONOSUPPORT, "shaking hands");
		return;
	}
	conn->hello_answered = true;
}

static void helper_conn_take_copy_reply(struct helper_conn *conn,
					const uint8_t *buf, size_t len)
{
	struct copyoffload_copy_reply reply;
	struct helper_call *call = NULL;
	enum copyoffload_decode_result r;

	r = copyoffload_decode_copy_reply(buf, len, &reply);
	if (r != COPYOFFLOAD_DECODE_OK || !conn->hello_answered) {
		DBG_ERR("copyoffload: bad copy reply from %s: %s\n",
			conn->socket_path,
			conn->hello_answered ?
				copyoffload_decode_result_string(r) :
				"reply before handshake");
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}

	call = helper_conn_find(conn, reply.request_id);
	if (call == NULL) {
		/* Its smbd request was freed (client gone): nobody waits. */
		DBG_DEBUG("copyoffload: reply %" PRIu64 " has no caller\n",
			  reply.request_id);
		return;
	}
	if (reply.bytes_done > call->length ||
	    (reply.status == 0 && reply.bytes_done != call->length)) {
		DBG_ERR("copyoffload: helper at %s reported %" PRIu64
			" bytes for a %" PRIu64 "-byte copy with status %d\n",
			conn->socket_path, reply.bytes_done, call->length,
			(int)reply.status);
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
	call->reply = reply;
	helper_call_finish(call, 0);
}

static void helper_conn_read(struct helper_conn *conn)
{
	/* One byte more than any message, so an oversized one shows. */
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1];
	struct copyoffload_header hdr;
	enum copyoffload_decode_result r;
	ssize_t n;

	/* recv() without a control buffer: any passed descriptor is dropped. */
	n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			return;
		}
		helper_conn_fail(conn, errno, "reading");
		return;
	}
	if (n == 0) {
		helper_conn_fail(conn, ECONNRESET, "waiting for replies");
		return;
	}

	r = copyoffload_decode_header(buf, n, &hdr);
	if (r != COPYOFFLOAD_DECODE_OK) {
		DBG_ERR("copyoffload: bad message from %s: %s\n",
			conn->socket_path, copyoffload_decode_result_string(r));
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
	switch (hdr.type) {
	case COPYOFFLOAD_MSG_HELLO_REPLY:
		helper_conn_take_hello_reply(conn, buf, n);
		return;
	case COPYOFFLOAD_MSG_COPY_REPLY:
		helper_conn_take_copy_reply(conn, buf, n);
		return;
	default:
		DBG_ERR("copyoffload: unexpected message type %u from %s\n",
			(unsigned)hdr.type, conn->socket_path);
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
}

static void helper_conn_handler(struct tevent_context *ev,
				struct tevent_fd *fde,
				uint16_t flags,
				void *private_data)
{
	struct helper_conn *conn = talloc_get_type_abort(
		private_data, struct helper_conn);

	if (flags & TEVENT_FD_WRITE) {
		helper_conn_flush(conn);
		if (conn->fd == -1) {
			return;
		}
	}
	if (flags & TEVENT_FD_READ) {
		helper_conn_read(conn);
		helper_conn_watch(conn); /* the helper is alive */
	}
}

static int helper_call_destructor(struct helper_call *call)
{
	/* A late reply for it is then dropped by request id. */
	if (call->conn != NULL) {
		DLIST_REMOVE(call->conn->calls, call);
		if (call->conn->calls == NULL) {
			TALLOC_FREE(call->conn->reply_timer);
		}
		call->conn = NULL;
	}
	return 0;
}

struct tevent_req *copyoffload_helper_copy_send(
	TALLOC_CTX *mem_ctx,
	struct tevent_context *ev,
	const char *socket_path,
	const struct copyoffload_share *share,
	const struct copyoffload_copy_args *args)
{
	struct tevent_req *req = NULL;
	struct helper_call *call = NULL;
	struct helper_conn *conn = NULL;
	struct copyoffload_copy_request request;
	int err;

	req = tevent_req_create(mem_ctx, &call, struct helper_call);
	if (req == NULL) {
		return NULL;
	}
	call->req = req;

	conn = helper_conn_get(ev, socket_path);
	if (conn == NULL) {
		tevent_req_error(req, ENOMEM);
		return tevent_req_post(req, ev);
	}
	err = helper_conn_ensure(conn);
	if (err != 0) {
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	if (share != NULL) {
		call->share = helper_share_get(conn, share);
		if (call->share == NULL) {
			tevent_req_error(req, ENOMEM);
			return tevent_req_post(req, ev);
		}
	}

	request = (struct copyoffload_copy_request) {
		.request_id = conn->next_request_id++,
		.src_offset = args->src_offset,
		.dst_offset = args->dst_offset,
		.length = args->length,
		.methods = args->methods,
		.flags = args->flags,
		.share_id = call->share != NULL
				    ? call->share->declaration.share_id
				    : 0,
	};
	copyoffload_encode_copy_request(call->msg, &request);
	call->request_id = request.request_id;
	call->length = args->length;
	call->src_fd = args->src_fd;
	call->dst_fd = args->dst_fd;
	call->conn = conn;
	DLIST_ADD_END(conn->calls, call);
	talloc_set_destructor(call, helper_call_destructor);

	/* If sending fails, helper_conn_fail() finishes req (deferred). */
	helper_conn_flush(conn);
	if (conn->reply_timer == NULL) {
		helper_conn_watch(conn);
	}
	return req;
}

int copyoffload_helper_copy_recv(struct tevent_req *req,
				 struct copyoffload_copy_reply *reply)
{
	struct helper_call *call = tevent_req_data(req, struct helper_call);
	int err;

	if (tevent_req_is_unix_error(req, &err)) {
		tevent_req_received(req);
		return err;
	}
	*reply = call->reply;
	tevent_req_received(req);
	return 0;
}
