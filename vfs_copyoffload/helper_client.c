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
 *
 * smbd copies a file one chunk at a time, each chunk a round trip. The
 * first copy between two files passes their descriptors (SCM_RIGHTS) and a
 * handle; the helper keeps its duplicates under that handle, and the later
 * chunks name the handle instead: no descriptor passing, and none of the
 * helper's per-descriptor checks. When either file closes, a talloc child
 * of its files_struct releases the handle (RELEASE). The helper keeps a
 * bounded number of pairs and answers a handle it has let go of with
 * ESTALE: the copy is then sent again with the descriptors.
 *
 * While a pair's chunk is the only copy outstanding, smbd wakes up shortly
 * before its reply is due and polls for it (reply_poll.c), expecting what
 * the pair's earlier chunks took, unless the helper's last reply said it
 * was busy with other copies.
 */

#include "includes.h"
#include <sys/socket.h>
#include <sys/un.h>
#include "lib/util/dlinklist.h"
#include "lib/util/tevent_unix.h"
#include "helper_client.h"
#include "copyoffload_config_parse.h"
#include "reply_poll.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

/* After a failed connect, copies go elsewhere for this long before retrying. */
#define RECONNECT_BACKOFF_SECONDS 1

/*
 * Clones smbd makes inline are reported to the helper's statistics (CLONED)
 * at most this long after the first of a batch, with the next message sent
 * anyway, or when a tree disconnects: one message per batch, not per chunk.
 */
#define CLONE_REPORT_SECONDS 1

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
#define MAX_REPLY_TIMEOUT_SECONDS 86400 /* a day */

/* Messages read from a helper found closed by a send, at most. */
#define LAST_WORDS_MAX 1024

struct helper_call;
struct helper_pair_watch;

/* A share as declared to the helper, under a share id of this connection. */
struct helper_share {
	struct helper_share *prev, *next;
	struct copyoffload_share declaration;
	bool declared; /* SHARE sent on the current socket */
	uint32_t inline_copies; /* cloned inline, not reported yet */
	uint64_t inline_bytes;
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
	/*
	 * The reply timeout: the timer is armed once and only looks at when
	 * the helper last spoke when it fires, so a chunk costs no timer
	 * allocation and no option lookup.
	 */
	struct tevent_timer *reply_timer;
	int timeout_seconds; /* read at connect; 0: wait forever */
	struct timeval last_heard; /* a message came, or the wait began */
	bool probe_sent; /* asked whether it is alive since it last spoke */
	bool draining; /* reading a closed helper's last messages: no sends */
	struct helper_pair *pairs;
	uint32_t next_handle;
	struct helper_release *releases; /* RELEASEs not sent yet */
	struct tevent_timer *report_timer; /* inline clones to report */
	struct copyoffload_reply_poll *reply_poll; /* NULL: not polling */
	bool helper_busy; /* COPYOFFLOAD_REPLY_BUSY in the last reply */
};

/*
 * A source and destination whose descriptors the helper keeps under a
 * handle of this connection, from the first copy between them until
 * either file closes.
 */
struct helper_pair {
	struct helper_pair *prev, *next;
	struct helper_conn *conn;
	const void *src_owner;
	const void *dst_owner;
	int src_fd;
	int dst_fd;
	uint32_t handle;
	bool registered; /* the helper got the descriptors on this socket */
	uint64_t reply_usec; /* what its chunks took, send to reply; 0: unknown */
	struct helper_pair_watch *watches[2]; /* on src_owner, dst_owner */
};

/* A talloc child of a pair's owner: its destructor ends the pair. */
struct helper_pair_watch {
	struct helper_pair *pair; /* NULL once the pair ended otherwise */
};

/* A handle whose RELEASE waits for room on the socket. */
struct helper_release {
	struct helper_release *prev, *next;
	uint32_t handle;
};

/* Per smbd process: the connections outlive any share or request. */
static struct helper_conn *helper_conns;

struct helper_call {
	struct helper_call *prev, *next;
	struct helper_conn *conn; /* NULL once answered or failed */
	struct helper_share *share; /* NULL: counts for no share */
	struct helper_pair *pair; /* NULL: descriptors go with every copy */
	struct tevent_req *req;
	struct copyoffload_copy_request request;
	int src_fd;
	int dst_fd;
	bool sent;
	bool sent_descriptors; /* with SCM_RIGHTS, not only the handle */
	uint64_t sent_usec; /* when sent, if polling */
	struct copyoffload_copy_reply reply;
};

static void helper_conn_handler(struct tevent_context *ev,
				struct tevent_fd *fde,
				uint16_t flags,
				void *private_data);

/* The connection to the helper at socket_path, if there is one yet. */
static struct helper_conn *helper_conn_lookup(const char *socket_path)
{
	struct helper_conn *conn = NULL;

	for (conn = helper_conns; conn != NULL; conn = conn->next) {
		if (strcmp(conn->socket_path, socket_path) == 0) {
			return conn;
		}
	}
	return NULL;
}

static struct helper_conn *helper_conn_get(struct tevent_context *ev,
					   const char *socket_path)
{
	struct helper_conn *conn = helper_conn_lookup(socket_path);

	if (conn != NULL) {
		return conn;
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
	conn->next_handle = 1;
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
	       a->max_concurrent == b->max_concurrent && a->flags == b->flags;
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

/*
 * The socket is gone: every share must be declared again on the next, and
 * every pair's descriptors passed again; the old helper let go of all.
 */
static void helper_conn_forget_declarations(struct helper_conn *conn)
{
	struct helper_share *entry = NULL;
	struct helper_pair *pair = NULL;

	for (entry = conn->shares; entry != NULL; entry = entry->next) {
		entry->declared = false;
	}
	for (pair = conn->pairs; pair != NULL; pair = pair->next) {
		pair->registered = false;
	}
	while (conn->releases != NULL) {
		struct helper_release *release = conn->releases;
		DLIST_REMOVE(conn->releases, release);
		TALLOC_FREE(release);
	}
}

/*
 * Closes the socket and what hangs off it; the calls stay listed for the
 * caller to fail or drop, and every share must be declared again on the
 * next socket.
 */
static void helper_conn_close_socket(struct helper_conn *conn)
{
	TALLOC_FREE(conn->reply_poll);
	TALLOC_FREE(conn->fde);
	TALLOC_FREE(conn->reply_timer);
	close(conn->fd);
	conn->fd = -1;
	conn->hello_answered = false;
	conn->helper_busy = false;
	conn->probe_sent = false;
	helper_conn_forget_declarations(conn);
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

/* Connecting fails with err, without trying, for the next seconds. */
static void helper_conn_pause(struct helper_conn *conn, int err, int seconds)
{
	conn->last_error = err;
	conn->retry_after = time(NULL) + seconds;
}

/*
 * Copies skip a helper that hung or broke the protocol, and would again,
 * for the reply timeout (at least the reconnect pause). Returns the seconds.
 */
static int helper_conn_bypass(struct helper_conn *conn, int err)
{
	int seconds = conn->timeout_seconds > RECONNECT_BACKOFF_SECONDS
			      ? conn->timeout_seconds
			      : RECONNECT_BACKOFF_SECONDS;

	helper_conn_pause(conn, err, seconds);
	return seconds;
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

	if (err == EPROTO || err == EPROTONOSUPPORT) {
		/*
		 * A helper that breaks the protocol (another version, say)
		 * will do it again: bypass it as a hung one is, rather than
		 * shake hands again, and log again, for every copy.
		 */
		DBG_ERR("copyoffload: copies go to the next module or fail, "
			"as 'copyoffload:helper down' says, for %d s before "
			"the helper at %s is tried again\n",
			helper_conn_bypass(conn, err), conn->socket_path);
	} else if (!conn->hello_answered && conn->retry_after <= time(NULL)) {
		/*
		 * Gone before it answered the handshake: a helper that does
		 * that again (failing at start, say) is left alone for the
		 * reconnect pause instead of being dialled for every chunk.
		 */
		helper_conn_pause(conn, err, RECONNECT_BACKOFF_SECONDS);
	}
	helper_conn_close_socket(conn);
	while (conn->calls != NULL) {
		helper_call_finish(conn->calls, err);
	}
}

static void helper_conn_watch(struct helper_conn *conn);
static int helper_send_message(int fd, const uint8_t *msg, size_t size);
static bool helper_send_would_block(int err);
static void helper_conn_send_failed(struct helper_conn *conn, int err,
				    const char *what);

/* Halfway through the timeout, when a quiet helper is asked (below). */
static struct timeval helper_conn_probe_time(const struct helper_conn *conn)
{
	return tevent_timeval_add(&conn->last_heard, conn->timeout_seconds / 2,
				  (conn->timeout_seconds % 2) * 500000);
}

/*
 * Copies can wait long without a word from a helper that is well: behind a
 * share's bandwidth or concurrency limit, or behind other copies. An empty
 * page of statistics is answered between two pieces of any copy, so a live
 * helper answers within the timeout's second half and a hung one does not.
 */
static void helper_conn_probe(struct helper_conn *conn)
{
	struct copyoffload_stats_request request = {
		.request_id = conn->next_request_id++,
		.cursor = UINT32_MAX, /* past any share: no records */
	};
	uint8_t msg[COPYOFFLOAD_STATS_SIZE];
	int err;

	copyoffload_encode_stats_request(msg, &request);
	err = helper_send_message(conn->fd, msg, sizeof(msg));
	if (err == 0) {
		conn->probe_sent = true;
		DBG_DEBUG("copyoffload: no message from the helper at %s for "
			  "%d s: asking whether it is alive\n",
			  conn->socket_path, conn->timeout_seconds / 2);
		return;
	}
	if (!helper_send_would_block(err)) {
		helper_conn_send_failed(conn, err, "asking whether it is alive");
	}
	/* A full socket: the helper reads nothing, the deadline decides. */
}

static void helper_conn_timed_out(struct tevent_context *ev,
				  struct tevent_timer *te,
				  struct timeval now,
				  void *private_data)
{
	struct helper_conn *conn = talloc_get_type_abort(
		private_data, struct helper_conn);
	struct timeval deadline = tevent_timeval_add(&conn->last_heard,
						     conn->timeout_seconds, 0);
	struct timeval probe_at = helper_conn_probe_time(conn);

	conn->reply_timer = NULL; /* tevent frees it */
	if (conn->calls == NULL || conn->fd == -1) {
		return; /* nothing is waiting: armed again by the next copy */
	}
	if (tevent_timeval_compare(&now, &deadline) < 0) {
		if (!conn->probe_sent &&
		    tevent_timeval_compare(&now, &probe_at) >= 0) {
			helper_conn_probe(conn);
		}
		helper_conn_watch(conn); /* the helper spoke since, or was asked */
		return;
	}
	helper_conn_bypass(conn, ETIMEDOUT);
	helper_conn_fail(conn, ETIMEDOUT, "waiting for a reply");
}

/*
 * Makes sure the wait for the helper's next message is timed while copies
 * are outstanding: a timer at halfway through the timeout since the helper
 * last spoke (to ask it), then at the timeout, armed only if none is.
 */
static void helper_conn_watch(struct helper_conn *conn)
{
	if (conn->reply_timer != NULL || conn->calls == NULL || conn->fd == -1 ||
	    conn->timeout_seconds <= 0) {
		return;
	}
	conn->reply_timer = tevent_add_timer(
		conn->ev, conn,
		conn->probe_sent
			? tevent_timeval_add(&conn->last_heard,
					     conn->timeout_seconds, 0)
			: helper_conn_probe_time(conn),
		helper_conn_timed_out, conn);
}

static void helper_conn_read(struct helper_conn *conn);

/*
 * The socket is readable: seen by smbd's loop, or by reply_poll.c while
 * polling. Any message shows the helper alive.
 */
static void helper_conn_readable(void *private_data)
{
	struct helper_conn *conn = talloc_get_type_abort(
		private_data, struct helper_conn);

	conn->last_heard = tevent_timeval_current(); /* alive */
	conn->probe_sent = false;
	helper_conn_read(conn);
}

/*
 * A [global] option that is a number from 0 to max. Anything else (text,
 * a sign, a number too large) is logged and gives default_value: lp_parm_int
 * would read text as 0, which turns these options off.
 */
static int global_count(const char *option, int max, int default_value)
{
	const char *value = lp_parm_const_string(GLOBAL_SECTION_SNUM,
						 "copyoffload", option, NULL);
	uint64_t count;

	if (value == NULL) {
		return default_value;
	}
	if (copyoffload_parse_count(value, (uint64_t)max, &count)) {
		return (int)count;
	}
	DBG_ERR("copyoffload: \"copyoffload:%s = %s\" is not a number from 0 "
		"to %d; using %d\n", option, value, max, default_value);
	return default_value;
}

/* [global] "copyoffload:reply poll": microseconds of lead, 0 for none. */
static void helper_conn_start_polling(struct helper_conn *conn)
{
	int lead = global_count("reply poll", COPYOFFLOAD_REPLY_POLL_MAX_USEC,
				COPYOFFLOAD_REPLY_POLL_DEFAULT_USEC);

	if (lead == 0) {
		return;
	}
	conn->reply_poll = copyoffload_reply_poll_create(
		conn, conn->ev, conn->fd, (unsigned)lead, helper_conn_readable,
		conn);
	if (conn->reply_poll == NULL) {
		DBG_WARNING("copyoffload: cannot poll for the replies of %s "
			    "(%s): smbd sleeps until each comes\n",
			    conn->socket_path, strerror(errno));
	}
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
	conn->fd_owner = tevent_cached_getpid();
	/* Read once per connection, not once per chunk. */
	conn->timeout_seconds = global_count("helper timeout",
					     MAX_REPLY_TIMEOUT_SECONDS,
					     REPLY_TIMEOUT_SECONDS);
	helper_conn_start_polling(conn);
	return 0;
}

/* Connects if needed. Returns 0 when the connection is usable. */
static int helper_conn_ensure(struct helper_conn *conn)
{
	time_t now = time(NULL);
	int err;

	/* tevent caches the pid (and renews it at fork): no syscall per chunk. */
	if (conn->fd != -1 && conn->fd_owner != tevent_cached_getpid()) {
		/* Forked: the socket and its replies stay with the parent. */
		helper_conn_close_socket(conn);
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
		helper_conn_pause(conn, err, RECONNECT_BACKOFF_SECONDS);
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

/*
 * Sends the COPY: with its descriptors unless the helper holds its pair's
 * already, then only with the pair's handle.
 */
static int helper_send_copy(int fd, struct helper_call *call)
{
	int fds[2] = { call->src_fd, call->dst_fd };
	union {
		struct cmsghdr hdr;
		uint8_t buf[CMSG_SPACE(sizeof(fds))];
	} control = { .buf = { 0 } };
	uint8_t msg[COPYOFFLOAD_COPY_SIZE];
	struct iovec iov = {
		.iov_base = msg,
		.iov_len = sizeof(msg),
	};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	bool descriptors = call->pair == NULL || !call->pair->registered;
	ssize_t sent;

	call->request.handle = call->pair != NULL ? call->pair->handle : 0;
	copyoffload_encode_copy_request(msg, &call->request);
	if (descriptors) {
		struct cmsghdr *cmsg = NULL;

		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof(control.buf);
		cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
	}

	do {
		sent = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (sent == -1 && errno == EINTR);
	if (sent == -1) {
		return errno;
	}
	/* SOCK_SEQPACKET sends whole records or nothing. */
	if (sent != (ssize_t)sizeof(msg)) {
		return EPROTO;
	}
	call->sent_descriptors = descriptors;
	if (descriptors && call->pair != NULL) {
		/* The helper reads in order: later copies may name the handle. */
		call->pair->registered = true;
	}
	return 0;
}

/* A message without descriptors: 0, or why it was not sent. */
static int helper_send_message(int fd, const uint8_t *msg, size_t size)
{
	ssize_t sent;

	do {
		sent = send(fd, msg, size, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (sent == -1 && errno == EINTR);
	if (sent == -1) {
		return errno;
	}
	/* SOCK_SEQPACKET sends whole records or nothing. */
	return sent == (ssize_t)size ? 0 : EPROTO;
}

static int helper_send_release(int fd, struct helper_conn *conn,
			       const struct helper_release *release)
{
	struct copyoffload_release message = {
		.request_id = conn->next_request_id++,
		.handle = release->handle,
	};
	uint8_t msg[COPYOFFLOAD_RELEASE_SIZE];

	copyoffload_encode_release(msg, &message);
	return helper_send_message(fd, msg, sizeof(msg));
}

static int helper_send_share(int fd, struct helper_share *share)
{
	uint8_t msg[COPYOFFLOAD_SHARE_SIZE];

	copyoffload_encode_share(msg, &share->declaration);
	return helper_send_message(fd, msg, sizeof(msg));
}

static int helper_send_cloned(int fd, struct helper_conn *conn,
			      const struct helper_share *share)
{
	struct copyoffload_cloned message = {
		.request_id = conn->next_request_id++,
		.share_id = share->declaration.share_id,
		.copies = share->inline_copies,
		.bytes = share->inline_bytes,
	};
	uint8_t msg[COPYOFFLOAD_CLONED_SIZE];

	copyoffload_encode_cloned(msg, &message);
	return helper_send_message(fd, msg, sizeof(msg));
}

static bool helper_send_would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS;
}

/* Sends share's SHARE unless the helper has it on this socket already. */
static int helper_declare(struct helper_conn *conn, struct helper_share *share)
{
	int err;

	if (share == NULL || share->declared) {
		return 0;
	}
	share->declaration.request_id = conn->next_request_id++;
	err = helper_send_share(conn->fd, share);
	if (err == 0) {
		share->declared = true;
	}
	return err;
}

/*
 * After a send: true to go on. False when the flush stops there: the send
 * would block (it resumes once the socket is writable), or it failed and
 * the connection is gone.
 */
static bool helper_conn_sent(struct helper_conn *conn, int err,
			     const char *what)
{
	if (helper_send_would_block(err)) {
		TEVENT_FD_WRITEABLE(conn->fde);
		return false;
	}
	if (err != 0) {
		helper_conn_send_failed(conn, err, what);
		return false;
	}
	return true;
}

static void helper_conn_flush(struct helper_conn *conn)
{
	struct helper_call *call = NULL;
	struct helper_share *entry = NULL;
	int err;

	while (conn->releases != NULL) {
		struct helper_release *release = conn->releases;

		err = helper_send_release(conn->fd, conn, release);
		if (!helper_conn_sent(conn, err, "sending a release")) {
			return;
		}
		DLIST_REMOVE(conn->releases, release);
		TALLOC_FREE(release);
	}
	for (call = conn->calls; call != NULL; call = call->next) {
		if (call->sent) {
			continue;
		}
		err = helper_declare(conn, call->share);
		if (err == 0) {
			err = helper_send_copy(conn->fd, call);
		}
		if (!helper_conn_sent(conn, err, "sending a request")) {
			return;
		}
		call->sent = true;
		if (conn->reply_poll != NULL) {
			call->sent_usec = copyoffload_monotonic_usec();
		}
	}
	for (entry = conn->shares; entry != NULL; entry = entry->next) {
		if (entry->inline_copies == 0) {
			continue;
		}
		err = helper_declare(conn, entry);
		if (err == 0) {
			err = helper_send_cloned(conn->fd, conn, entry);
		}
		if (!helper_conn_sent(conn, err, "reporting inline clones")) {
			return;
		}
		entry->inline_copies = 0;
		entry->inline_bytes = 0;
	}
	TEVENT_FD_NOT_WRITEABLE(conn->fde);
}

/*
 * Sends what inline clones were counted. With the helper down they are
 * dropped: its statistics are those of the daemon that runs.
 */
static void helper_conn_report_clones(struct helper_conn *conn)
{
	struct helper_share *entry = NULL;
	bool pending = false;

	TALLOC_FREE(conn->report_timer);
	for (entry = conn->shares; entry != NULL; entry = entry->next) {
		pending = pending || entry->inline_copies != 0;
	}
	if (!pending) {
		return;
	}
	if (helper_conn_ensure(conn) != 0) {
		DBG_DEBUG("copyoffload: helper at %s unavailable: inline clones "
			  "not reported\n", conn->socket_path);
		for (entry = conn->shares; entry != NULL; entry = entry->next) {
			entry->inline_copies = 0;
			entry->inline_bytes = 0;
		}
		return;
	}
	helper_conn_flush(conn);
}

static void helper_conn_report_due(struct tevent_context *ev,
				   struct tevent_timer *te,
				   struct timeval now,
				   void *private_data)
{
	struct helper_conn *conn = talloc_get_type_abort(
		private_data, struct helper_conn);

	conn->report_timer = NULL; /* tevent frees it */
	helper_conn_report_clones(conn);
}

static struct helper_call *helper_conn_find(struct helper_conn *conn,
					    uint64_t request_id)
{
	struct helper_call *call = NULL;

	for (call = conn->calls; call != NULL; call = call->next) {
		if (call->sent && call->request.request_id == request_id) {
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

/*
 * The helper no longer holds the pair a copy named (it keeps a bounded
 * number): the copy goes again, with the descriptors. If the pair ended
 * meanwhile, its descriptor numbers may belong to other files by now, and
 * the copy is handed back instead.
 */
static void helper_call_resend(struct helper_conn *conn,
			       struct helper_call *call)
{
	if (call->pair == NULL) {
		helper_call_finish(call, ESTALE);
		return;
	}
	DBG_DEBUG("copyoffload: helper at %s forgot handle %" PRIu32
		  ", sending the descriptors again\n",
		  conn->socket_path, call->pair->handle);
	call->pair->registered = false;
	call->sent = false;
	call->request.request_id = conn->next_request_id++;
	/*
	 * Not while a closed helper's last messages are read: the
	 * connection then fails this copy with the rest.
	 */
	if (!conn->draining) {
		helper_conn_flush(conn);
	}
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

	/* Whoever it is for, it came: no wake-up for it. */
	conn->helper_busy = (reply.flags & COPYOFFLOAD_REPLY_BUSY) != 0;
	if (conn->reply_poll != NULL) {
		copyoffload_reply_poll_disarm(conn->reply_poll);
	}

	call = helper_conn_find(conn, reply.request_id);
	if (call == NULL) {
		/* Its smbd request was freed (client gone): nobody waits. */
		DBG_DEBUG("copyoffload: reply %" PRIu64 " has no caller\n",
			  reply.request_id);
		return;
	}
	if (reply.bytes_done > call->request.length ||
	    (reply.status == 0 && reply.bytes_done != call->request.length)) {
		DBG_ERR("copyoffload: helper at %s reported %" PRIu64
			" bytes for a %" PRIu64 "-byte copy with status %d\n",
			conn->socket_path, reply.bytes_done, call->request.length,
			(int)reply.status);
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
	if (reply.status == ESTALE && reply.bytes_done == 0 &&
	    !call->sent_descriptors) {
		helper_call_resend(conn, call);
		return;
	}
	if (conn->reply_poll != NULL && call->pair != NULL) {
		call->pair->reply_usec = copyoffload_reply_expectation(
			call->pair->reply_usec,
			copyoffload_monotonic_usec() - call->sent_usec);
	}
	call->reply = reply;
	helper_call_finish(call, 0);
}

/* One message from the helper, len bytes of buf as received. */
static void helper_conn_take_message(struct helper_conn *conn,
				     const uint8_t *buf, size_t len)
{
	struct copyoffload_header hdr;
	enum copyoffload_decode_result r;

	r = copyoffload_decode_header(buf, len, &hdr);
	if (r != COPYOFFLOAD_DECODE_OK) {
		DBG_ERR("copyoffload: bad message from %s: %s\n",
			conn->socket_path, copyoffload_decode_result_string(r));
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
	switch (hdr.type) {
	case COPYOFFLOAD_MSG_HELLO_REPLY:
		helper_conn_take_hello_reply(conn, buf, len);
		return;
	case COPYOFFLOAD_MSG_COPY_REPLY:
		helper_conn_take_copy_reply(conn, buf, len);
		return;
	case COPYOFFLOAD_MSG_STATS_REPLY:
		/* The answer to helper_conn_probe(): it is alive, no more. */
		return;
	default:
		DBG_ERR("copyoffload: unexpected message type %u from %s\n",
			(unsigned)hdr.type, conn->socket_path);
		helper_conn_fail(conn, EPROTO, "reading a reply");
		return;
	}
}

/*
 * One message from the socket into buf (one byte more than any message,
 * so an oversized one shows): its length, 0 at the end of the stream, or
 * -1 with errno.
 */
static ssize_t helper_conn_receive(struct helper_conn *conn,
				   uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1])
{
	ssize_t n;

	/* recv() without a control buffer: any passed descriptor is dropped. */
	n = recv(conn->fd, buf, COPYOFFLOAD_MAX_MESSAGE_SIZE + 1, MSG_DONTWAIT);
	if (n == -1 && errno == ECONNRESET) {
		/*
		 * A helper that closed with our messages unread (it refuses
		 * a handshake and closes, while the COPY sent behind the HELLO
		 * waits) is reported once, before what it sent last: read
		 * that too, so that its refusal counts as one.
		 */
		n = recv(conn->fd, buf, COPYOFFLOAD_MAX_MESSAGE_SIZE + 1,
			 MSG_DONTWAIT);
		if (n <= 0) {
			errno = ECONNRESET;
			return -1;
		}
	}
	return n;
}

static void helper_conn_read(struct helper_conn *conn)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1];
	ssize_t n = helper_conn_receive(conn, buf);

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
	helper_conn_take_message(conn, buf, n);
}

/*
 * A send failed. When it found the helper gone (EPIPE, or ECONNRESET when
 * it left messages of ours unread), what the helper sent before it closed
 * is still queued and may say why: a refusal of the handshake, which
 * bypasses the helper instead of shaking hands again for the next chunk,
 * or replies to copies it finished. Those are taken first, without
 * sending anything more (a copy it asks to resend fails with the rest). A
 * closed peer's queue ends (recv() returns 0): the bound is only a guard.
 */
static void helper_conn_send_failed(struct helper_conn *conn, int err,
				    const char *what)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1];
	unsigned i;

	conn->draining = true;
	for (i = 0; (err == EPIPE || err == ECONNRESET) &&
		    i < LAST_WORDS_MAX && conn->fd != -1;
	     i++) {
		ssize_t n = helper_conn_receive(conn, buf);

		if (n <= 0) {
			break;
		}
		helper_conn_take_message(conn, buf, n);
	}
	conn->draining = false;
	if (conn->fd != -1) {
		helper_conn_fail(conn, err, what);
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
		helper_conn_readable(conn);
	}
}

static int helper_call_destructor(struct helper_call *call)
{
	/*
	 * A late reply for it is then dropped by request id. The reply
	 * timer stays: it finds nothing waiting when it fires.
	 */
	if (call->conn != NULL) {
		DLIST_REMOVE(call->conn->calls, call);
		call->conn = NULL;
	}
	return 0;
}

/*
 * One of the pair's files is closing: smbd may reuse its descriptor number
 * at once, so a copy of the pair not sent yet must not be sent, and the
 * helper lets go of its duplicates.
 */
static void helper_pair_end(struct helper_pair *pair)
{
	struct helper_conn *conn = pair->conn;
	struct helper_call *call = NULL;
	struct helper_call *next = NULL;
	unsigned i;

	for (call = conn->calls; call != NULL; call = next) {
		next = call->next;
		if (call->pair != pair) {
			continue;
		}
		call->pair = NULL;
		if (!call->sent) {
			helper_call_finish(call, EBADF);
		}
	}
	for (i = 0; i < ARRAY_SIZE(pair->watches); i++) {
		if (pair->watches[i] != NULL) {
			pair->watches[i]->pair = NULL;
			TALLOC_FREE(pair->watches[i]);
		}
	}
	if (pair->registered && conn->fd != -1) {
		struct helper_release *release = talloc_zero(conn, struct helper_release);

		/* Without memory the helper keeps it until the connection ends. */
		if (release != NULL) {
			release->handle = pair->handle;
			DLIST_ADD_END(conn->releases, release);
			helper_conn_flush(conn);
		}
	}
	DLIST_REMOVE(conn->pairs, pair);
	TALLOC_FREE(pair);
}

static int helper_pair_watch_destructor(struct helper_pair_watch *watch)
{
	struct helper_pair *pair = watch->pair;
	unsigned i;

	if (pair == NULL) {
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(pair->watches); i++) {
		if (pair->watches[i] == watch) {
			pair->watches[i] = NULL; /* being freed already */
		}
	}
	helper_pair_end(pair);
	return 0;
}

/*
 * The connection's pair for these two files, made on first use; NULL when
 * the caller gave no owners (or without memory): the descriptors then go
 * with every copy.
 */
static struct helper_pair *helper_pair_get(struct helper_conn *conn,
					   const struct copyoffload_copy_args *args)
{
	const void *owners[2] = { args->src_owner, args->dst_owner };
	struct helper_pair *pair = NULL;
	unsigned i;

	if (args->src_owner == NULL || args->dst_owner == NULL) {
		return NULL;
	}
	for (pair = conn->pairs; pair != NULL; pair = pair->next) {
		/* The descriptors too: smbd may reopen a file under one fsp. */
		if (pair->src_owner == args->src_owner &&
		    pair->dst_owner == args->dst_owner &&
		    pair->src_fd == args->src_fd && pair->dst_fd == args->dst_fd) {
			return pair;
		}
	}
	pair = talloc_zero(conn, struct helper_pair);
	if (pair == NULL) {
		return NULL;
	}
	*pair = (struct helper_pair) {
		.conn = conn,
		.src_owner = args->src_owner,
		.dst_owner = args->dst_owner,
		.src_fd = args->src_fd,
		.dst_fd = args->dst_fd,
		.handle = conn->next_handle++,
	};
	if (conn->next_handle == 0) {
		conn->next_handle = 1; /* 0 means "no handle" */
	}
	DLIST_ADD(conn->pairs, pair);
	/* One watch per distinct owner: a copy within one file has one. */
	for (i = 0; i < ARRAY_SIZE(owners); i++) {
		struct helper_pair_watch *watch = NULL;

		if (i == 1 && owners[1] == owners[0]) {
			break;
		}
		watch = talloc_zero(owners[i], struct helper_pair_watch);
		if (watch == NULL) {
			helper_pair_end(pair);
			return NULL;
		}
		watch->pair = pair;
		talloc_set_destructor(watch, helper_pair_watch_destructor);
		pair->watches[i] = watch;
	}
	return pair;
}

/*
 * The only copy outstanding, of a pair whose chunks took a known time, to
 * a helper that was not busy when it last replied: smbd wakes up shortly
 * before the reply is due instead of when it comes.
 */
static void helper_conn_poll_for_reply(struct helper_conn *conn)
{
	struct helper_call *call = conn->calls;

	if (conn->reply_poll == NULL || conn->helper_busy || call == NULL ||
	    call->next != NULL || !call->sent || call->pair == NULL ||
	    call->pair->reply_usec == 0) {
		return;
	}
	copyoffload_reply_poll_arm(conn->reply_poll, call->pair->reply_usec);
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

	call->pair = helper_pair_get(conn, args);
	if (call->pair == NULL && args->src_owner != NULL &&
	    args->dst_owner != NULL) {
		/*
		 * No memory for its pair: a copy queued behind a full socket
		 * could then not be withdrawn when a file closes, and smbd may
		 * reuse the descriptor numbers at once.
		 */
		tevent_req_error(req, ENOMEM);
		return tevent_req_post(req, ev);
	}
	call->request = (struct copyoffload_copy_request) {
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
	call->src_fd = args->src_fd;
	call->dst_fd = args->dst_fd;
	call->conn = conn;
	if (conn->calls == NULL) {
		/* The wait for the helper starts now, not when it last spoke. */
		conn->last_heard = tevent_timeval_current();
		conn->probe_sent = false;
	}
	DLIST_ADD_END(conn->calls, call);
	talloc_set_destructor(call, helper_call_destructor);

	/* If sending fails, helper_conn_fail() finishes req (deferred). */
	helper_conn_flush(conn);
	helper_conn_watch(conn);
	helper_conn_poll_for_reply(conn);
	return req;
}

bool copyoffload_helper_copying(const char *socket_path, int fd_a, int fd_b)
{
	struct helper_conn *conn = helper_conn_lookup(socket_path);
	struct helper_call *call = NULL;

	if (conn == NULL) {
		return false;
	}
	for (call = conn->calls; call != NULL; call = call->next) {
		if (call->src_fd == fd_a || call->src_fd == fd_b ||
		    call->dst_fd == fd_a || call->dst_fd == fd_b) {
			return true;
		}
	}
	return false;
}

void copyoffload_helper_count_inline_clone(struct tevent_context *ev,
					  const char *socket_path,
					  const struct copyoffload_share *share,
					  uint64_t bytes)
{
	struct helper_conn *conn = helper_conn_get(ev, socket_path);
	struct helper_share *entry = NULL;

	if (conn == NULL || bytes == 0) {
		return;
	}
	entry = helper_share_get(conn, share);
	if (entry == NULL || entry->inline_copies == UINT32_MAX) {
		return; /* statistics only: not worth failing anything for */
	}
	entry->inline_copies++;
	entry->inline_bytes += bytes;
	if (conn->report_timer == NULL) {
		conn->report_timer = tevent_add_timer(
			conn->ev, conn,
			tevent_timeval_current_ofs(CLONE_REPORT_SECONDS, 0),
			helper_conn_report_due, conn);
	}
}

void copyoffload_helper_report_clones(void)
{
	struct helper_conn *conn = NULL;

	for (conn = helper_conns; conn != NULL; conn = conn->next) {
		helper_conn_report_clones(conn);
	}
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
