/*
 * libFuzzer target: the module's helper client, vfs_copyoffload/
 * helper_client.c itself (compiled with module_shim/includes.h instead of
 * smbd's), against a fake helper that the fuzzer scripts.
 *
 * The target listens on a unix socket in a temporary directory, as
 * copyoffloadd does, and starts copies with copyoffload_helper_copy_send()
 * on a real tevent loop. Each input is a script for the fake helper:
 *
 *   u8 calls: 1 + (calls & 3) copies are started first, each with
 *      u64 length (at most 2^48) and u8 flags (bit 0: CLONE_ONLY; bits 1-2:
 *      no share, or one of the SHARE samples' shares)
 *   then up to MAX_ACTIONS actions, each a u8 opcode and its operands:
 *      RAW blob            send the bytes as one packet
 *      PATCHED u8 k blob   ... with the id of the k-th COPY received in
 *                          bytes 16..23 (a reply the client can match)
 *      COPY_REPLY u8 k u8 variant u8 status u64 bytes
 *                          an encoded reply to the k-th COPY received
 *      HELLO_REPLY u8 status u16 version
 *      HANG_UP             close the helper's end of the connection
 *      CANCEL u8 k         free the k-th started copy (smbd gave up)
 *      START u64 length    start one more copy
 *      PUMP                let the event loop run until nothing is left
 *      WAIT                move the client's clock past any reconnect
 *                          pause or bypass (each input also starts so)
 *
 * Oracles, beyond the sanitizers:
 *   - the client sends only valid messages, COPY with the two descriptors
 *     it was given (or none, naming a descriptor handle) and no other
 *     message with any;
 *   - a copy completes successfully only with a reply the helper really
 *     sent for that request: same id, same length requested, status 0
 *     meaning every byte; an error never comes as success;
 *   - become_root()/unbecome_root() pair up;
 *   - after each input nothing is left: no descriptor, no talloc memory.
 */
#include "includes.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/sockios.h>

#include "helper_client.h"
#include "fuzz_input.h"
#include "protocol_kinds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CALLS 8
#define MAX_SEEN 16
#define MAX_SENT_REPLIES 64
#define MAX_ACTIONS 64
/* Longer than the client's reconnect pause and its default bypass. */
#define PAST_ANY_PAUSE_SECONDS (24 * 60 * 60)

enum action {
	ACTION_RAW,
	ACTION_PATCHED,
	ACTION_COPY_REPLY,
	ACTION_HELLO_REPLY,
	ACTION_HANG_UP,
	ACTION_CANCEL,
	ACTION_START,
	ACTION_PUMP,
	ACTION_WAIT,
	ACTION_COUNT,
};

/* --- state ------------------------------------------------------------- */

struct seen_copy {
	uint64_t id;
	uint64_t length;
};

struct call {
	struct tevent_req *req; /* NULL: slot free */
	uint64_t length;
	bool done;
};

static struct {
	char dir[64];
	char socket_path[128];
	int listener;
	int server; /* the accepted connection, -1 if none */
	bool hung_up; /* server's writing side shut down, the client not gone yet */
	int source, destination;
	ino_t source_ino, destination_ino;
	struct tevent_context *ev;
	TALLOC_CTX *mem;
	size_t baseline_descriptors;

	struct call calls[MAX_CALLS];
	struct seen_copy seen[MAX_SEEN]; /* COPYs received, in order */
	size_t seen_count;
	struct copyoffload_copy_reply sent[MAX_SENT_REPLIES]; /* valid replies sent */
	size_t sent_count;
} h;

static size_t open_descriptor_count(void)
{
	size_t count = 0;
	DIR *dir = opendir("/proc/self/fd");

	FUZZ_CHECK(dir != NULL, "opendir: %s", strerror(errno));
	while (readdir(dir) != NULL) {
		count++;
	}
	closedir(dir);
	return count;
}

/* Prints what is open ("3 -> socket:[123]"), for a failure. */
static void print_descriptors(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;

	while (dir != NULL && (entry = readdir(dir)) != NULL) {
		char link[300], target[256] = "";

		snprintf(link, sizeof(link), "/proc/self/fd/%s", entry->d_name);
		if (entry->d_name[0] != '.' && readlink(link, target, sizeof(target) - 1) > 0) {
			fprintf(stderr, "%s -> %s\n", entry->d_name, target);
		}
	}
	if (dir != NULL) {
		closedir(dir);
	}
}

/* --- seeds ------------------------------------------------------------- */

static void put_start(struct fuzz_output *out, unsigned calls, uint64_t length,
		      uint8_t flags)
{
	unsigned i;

	fuzz_put_u8(out, (uint8_t)(calls - 1));
	for (i = 0; i < calls; i++) {
		fuzz_put_u64(out, length + i);
		fuzz_put_u8(out, flags);
	}
}

static void put_hello_reply(struct fuzz_output *out, uint8_t status)
{
	fuzz_put_u8(out, ACTION_HELLO_REPLY);
	fuzz_put_u8(out, status);
	fuzz_put_u16(out, COPYOFFLOAD_PROTOCOL_VERSION);
}

static void put_copy_reply(struct fuzz_output *out, uint8_t k, uint8_t variant,
			   uint8_t status, uint64_t bytes)
{
	fuzz_put_u8(out, ACTION_COPY_REPLY);
	fuzz_put_u8(out, k);
	fuzz_put_u8(out, variant);
	fuzz_put_u8(out, status);
	fuzz_put_u64(out, bytes);
}

static void write_seeds(const char *dir)
{
	static const char *const outcomes[] = { "success", "enospc", "clone-only" };
	static struct fuzz_output out;
	static uint8_t bytes[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static union fuzz_message m;
	size_t i, s;

	/* A copy that succeeds, one that fails, an all-or-nothing clone. */
	for (i = 0; i < 3; i++) {
		out.size = 0;
		put_start(&out, 1, 1 << 20, i == 2 ? COPYOFFLOAD_COPY_CLONE_ONLY : 0);
		put_hello_reply(&out, 0);
		put_copy_reply(&out, 0, i == 1 ? 1 : 2, 28 /* ENOSPC */, 100);
		fuzz_put_u8(&out, ACTION_PUMP);
		fuzz_write_seed(dir, outcomes[i], &out);
	}

	/* Four copies answered in reverse order. */
	out.size = 0;
	put_start(&out, 4, 4096, 0);
	put_hello_reply(&out, 0);
	for (i = 4; i-- > 0;) {
		put_copy_reply(&out, (uint8_t)i, 2, 0, 0);
	}
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_write_seed(dir, "reverse-order", &out);

	/* The helper goes away with copies in flight; a new copy reconnects. */
	out.size = 0;
	put_start(&out, 2, 100, 0);
	put_hello_reply(&out, 0);
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_put_u8(&out, ACTION_HANG_UP);
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_put_u8(&out, ACTION_START);
	fuzz_put_u64(&out, 300);
	fuzz_put_u8(&out, ACTION_PUMP);
	put_hello_reply(&out, 0);
	put_copy_reply(&out, 2, 2, 0, 0);
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_write_seed(dir, "hang-up", &out);

	/* smbd gives up on a copy before its reply comes. */
	out.size = 0;
	put_start(&out, 2, 100, 0);
	put_hello_reply(&out, 0);
	fuzz_put_u8(&out, ACTION_CANCEL);
	fuzz_put_u8(&out, 0);
	put_copy_reply(&out, 0, 2, 0, 0);
	put_copy_reply(&out, 1, 2, 0, 0);
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_write_seed(dir, "cancel", &out);

	/* The helper refuses the protocol version. */
	out.size = 0;
	put_start(&out, 1, 100, 0);
	put_hello_reply(&out, 93 /* EPROTONOSUPPORT */);
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_write_seed(dir, "refused", &out);

	/* ... then, once the bypass is over, a new copy dials again. */
	fuzz_put_u8(&out, ACTION_WAIT);
	fuzz_put_u8(&out, ACTION_START);
	fuzz_put_u64(&out, 200);
	fuzz_put_u8(&out, ACTION_PUMP);
	put_hello_reply(&out, 0);
	put_copy_reply(&out, 1, 2, 0, 0); /* the second COPY received */
	fuzz_put_u8(&out, ACTION_PUMP);
	fuzz_write_seed(dir, "refused-then-upgraded", &out);

	/* Every sample message of every type, aimed at the first copy. */
	for (i = 0; i < fuzz_kind_count; i++) {
		const struct fuzz_message_kind *k = &fuzz_message_kinds[i];

		for (s = 0; k->sample(s, &m); s++) {
			char name[64];
			size_t n = k->encode(bytes, sizeof(bytes), &m);

			out.size = 0;
			put_start(&out, 1, 4096, 0);
			put_hello_reply(&out, 0);
			fuzz_put_u8(&out, ACTION_PATCHED);
			fuzz_put_u8(&out, 0);
			fuzz_put_blob(&out, bytes, n);
			fuzz_put_u8(&out, ACTION_PUMP);
			snprintf(name, sizeof(name), "%s-%zu", k->name, s);
			fuzz_write_seed(dir, name, &out);
		}
	}
}

/* --- setup ------------------------------------------------------------- */

static void remove_socket_dir(void)
{
	unlink(h.socket_path);
	rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	const char *tmp = getenv("TMPDIR");
	struct stat st;

	(void)argc;
	(void)argv;
	fuzz_initialize(write_seeds);

	snprintf(h.dir, sizeof(h.dir), "%s/coff-fuzz.XXXXXX", tmp ? tmp : "/tmp");
	FUZZ_CHECK(strlen(h.dir) < 40 && mkdtemp(h.dir) != NULL, "mkdtemp %s", h.dir);
	snprintf(h.socket_path, sizeof(h.socket_path), "%s/h.sock", h.dir);
	memcpy(address.sun_path, h.socket_path, strlen(h.socket_path) + 1);
	atexit(remove_socket_dir);

	h.listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	FUZZ_CHECK(h.listener >= 0 &&
			   bind(h.listener, (struct sockaddr *)&address, sizeof(address)) == 0 &&
			   listen(h.listener, 16) == 0,
		   "listening on %s: %s", h.socket_path, strerror(errno));
	h.server = -1;
	h.source = memfd_create("fuzz-source", MFD_CLOEXEC);
	h.destination = memfd_create("fuzz-destination", MFD_CLOEXEC);
	FUZZ_CHECK(h.source >= 0 && h.destination >= 0, "memfd_create");
	FUZZ_CHECK(fstat(h.source, &st) == 0, "fstat");
	h.source_ino = st.st_ino;
	FUZZ_CHECK(fstat(h.destination, &st) == 0, "fstat");
	h.destination_ino = st.st_ino;
	h.ev = tevent_context_init(NULL);
	h.mem = talloc_size(NULL, 1); /* a payload: LSan needs an interior pointer */
	FUZZ_CHECK(h.ev != NULL && h.mem != NULL, "tevent/talloc");
	fuzz_start_symbolizer();
	h.baseline_descriptors = open_descriptor_count();
	return 0;
}

/* --- the fake helper --------------------------------------------------- */

/* How many descriptors a COPY carried: none, or the two given, in order. */
static size_t check_received_descriptors(struct msghdr *mh)
{
	ino_t expected[2] = { h.source_ino, h.destination_ino };
	struct cmsghdr *cmsg;
	size_t count = 0;

	for (cmsg = CMSG_FIRSTHDR(mh); cmsg != NULL; cmsg = CMSG_NXTHDR(mh, cmsg)) {
		size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		size_t i;

		FUZZ_CHECK(cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS,
			   "unexpected control message");
		for (i = 0; i < n; i++) {
			struct stat st;
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
			FUZZ_CHECK(count < 2 && fstat(fd, &st) == 0 &&
					   st.st_ino == expected[count],
				   "descriptor %zu of a COPY is not the one given", count);
			close(fd);
			count++;
		}
	}
	FUZZ_CHECK(count == 0 || count == 2, "COPY with %zu descriptors", count);
	return count;
}

/* Reads what the client sent; false at end of stream. */
static bool receive_from_client(void)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1];
	static union fuzz_message m;
	union {
		struct cmsghdr align;
		uint8_t bytes[CMSG_SPACE(sizeof(int) * 4)];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	for (;;) {
		const struct fuzz_message_kind *kind;
		struct copyoffload_header header;
		ssize_t n;

		mh.msg_control = control.bytes;
		mh.msg_controllen = sizeof(control.bytes);
		n = recvmsg(h.server, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return true;
		}
		if (n <= 0) {
			FUZZ_CHECK(n == 0 || errno == ECONNRESET, "recvmsg: %s", strerror(errno));
			return false;
		}
		FUZZ_CHECK(copyoffload_decode_header(buf, (size_t)n, &header) ==
				   COPYOFFLOAD_DECODE_OK,
			   "client sent a malformed packet of %zd bytes", n);
		kind = fuzz_kind_for_type(header.type);
		FUZZ_CHECK(kind->decode(buf, (size_t)n, &m) == COPYOFFLOAD_DECODE_OK,
			   "client sent a bad %s", kind->name);
		if (header.type != COPYOFFLOAD_MSG_COPY) {
			FUZZ_CHECK(mh.msg_controllen == 0, "%s with descriptors", kind->name);
			continue;
		}
		/* Without descriptors, a COPY names a handle registered before. */
		FUZZ_CHECK(check_received_descriptors(&mh) == 2 || m.copy.handle != 0,
			   "COPY without descriptors and without a handle");
		if (h.seen_count < MAX_SEEN) {
			h.seen[h.seen_count].id = m.copy.request_id;
			h.seen[h.seen_count].length = m.copy.length;
			h.seen_count++;
		}
	}
}

static void forget_server(void)
{
	if (h.server >= 0) {
		close(h.server);
		h.server = -1;
	}
	h.hung_up = false;
}

/* The helper goes away: the client sees the end of the stream once it has
 * read what was sent before. The end stays open until the client closes
 * its own, so that the loop knows when it has. */
static void hang_up(void)
{
	if (h.server >= 0 && !h.hung_up) {
		shutdown(h.server, SHUT_WR);
		h.hung_up = true;
	}
}

/* Hung up, and the client has not closed its end yet. */
static bool client_yet_to_notice(void)
{
	struct pollfd p = { .fd = h.server, .events = POLLIN };

	if (h.server < 0 || !h.hung_up) {
		return false;
	}
	FUZZ_CHECK(poll(&p, 1, 0) >= 0, "poll: %s", strerror(errno));
	if ((p.revents & POLLHUP) != 0) {
		receive_from_client();
		forget_server();
		return false;
	}
	return true;
}

/* Accepts the client's (re)connection and reads what it sent. */
static void serve(void)
{
	for (;;) {
		int fd = accept4(h.listener, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			FUZZ_CHECK(errno == EAGAIN, "accept: %s", strerror(errno));
			break;
		}
		/* The client only reconnects after dropping the old one. */
		if (h.server >= 0) {
			receive_from_client();
			forget_server();
		}
		h.server = fd;
	}
	if (h.server >= 0 && !receive_from_client()) {
		forget_server();
	}
}

static void send_to_client(const uint8_t *bytes, size_t size)
{
	struct copyoffload_copy_reply reply;

	if (h.server < 0 || h.hung_up ||
	    send(h.server, bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)size) {
		return;
	}
	if (copyoffload_decode_copy_reply(bytes, size, &reply) == COPYOFFLOAD_DECODE_OK &&
	    h.sent_count < MAX_SENT_REPLIES) {
		h.sent[h.sent_count++] = reply;
	}
}

/* --- the event loop ---------------------------------------------------- */

static void sentinel_handler(struct tevent_context *ev, struct tevent_immediate *im,
			     void *private_data)
{
	(void)ev;
	(void)im;
	*(bool *)private_data = true;
}

/* Runs every immediate event (deferred completions) queued so far. */
static void run_immediates(void)
{
	struct tevent_immediate *im = tevent_create_immediate(h.mem);
	bool fired = false;

	FUZZ_CHECK(im != NULL, "tevent_create_immediate");
	tevent_schedule_immediate(im, h.ev, sentinel_handler, &fired);
	while (!fired) {
		FUZZ_CHECK(tevent_loop_once(h.ev) == 0, "tevent_loop_once");
	}
	talloc_free(im);
}

/* Bytes the client has not read yet: while there are (or an end of stream
 * it has not seen), a loop turn cannot block: its socket is readable. */
static int unread_by_client(void)
{
	int queued = 0;

	if (h.server < 0 || ioctl(h.server, SIOCOUTQ, &queued) != 0) {
		return 0;
	}
	return queued;
}

static void pump(void)
{
	serve();
	run_immediates();
	while (unread_by_client() > 0 || client_yet_to_notice()) {
		FUZZ_CHECK(tevent_loop_once(h.ev) == 0, "tevent_loop_once");
		run_immediates();
		serve();
	}
	serve();
}

/* --- copies ------------------------------------------------------------ */

static void call_done(struct tevent_req *req)
{
	struct call *c = tevent_req_callback_data_void(req);

	c->done = true;
}

static void start_call(uint64_t length, uint8_t flags)
{
	bool clone_only = (flags & COPYOFFLOAD_COPY_CLONE_ONLY) != 0;
	struct copyoffload_copy_args args = {
		.src_fd = h.source,
		.dst_fd = h.destination,
		.length = length % (COPYOFFLOAD_MAX_COPY_LENGTH + 1),
		.methods = clone_only ? COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE)
				      : COPYOFFLOAD_METHODS_ALL,
		.flags = clone_only ? COPYOFFLOAD_COPY_CLONE_ONLY : 0,
	};
	static union fuzz_message shares[3];
	const struct copyoffload_share *share = NULL;
	unsigned which = (flags >> 1) % 3;
	size_t i;

	if (which > 0 &&
	    fuzz_kind_for_type(COPYOFFLOAD_MSG_SHARE)->sample(which - 1, &shares[which])) {
		share = &shares[which].share;
	}
	for (i = 0; i < MAX_CALLS; i++) {
		struct call *c = &h.calls[i];

		if (c->req != NULL) {
			continue;
		}
		c->req = copyoffload_helper_copy_send(h.mem, h.ev, h.socket_path, share, &args);
		FUZZ_CHECK(c->req != NULL, "copyoffload_helper_copy_send returned NULL");
		c->length = args.length;
		c->done = false;
		tevent_req_set_callback(c->req, call_done, c);
		return;
	}
}

/* Whether the helper sent exactly this reply (it may have sent several
 * with one id; the client takes the first that finds its copy sent). */
static bool was_sent(const struct copyoffload_copy_reply *reply)
{
	size_t i;

	for (i = 0; i < h.sent_count; i++) {
		const struct copyoffload_copy_reply *s = &h.sent[i];

		/* Field by field: the structs have padding. */
		if (s->request_id == reply->request_id && s->status == reply->status &&
		    s->bytes_done == reply->bytes_done &&
		    memcmp(s->bytes_by_method, reply->bytes_by_method,
			   sizeof(s->bytes_by_method)) == 0) {
			return true;
		}
	}
	return false;
}

static const struct seen_copy *seen_copy(uint64_t id)
{
	size_t i;

	for (i = 0; i < h.seen_count; i++) {
		if (h.seen[i].id == id) {
			return &h.seen[i];
		}
	}
	return NULL;
}

static void finish_call(struct call *c)
{
	struct copyoffload_copy_reply reply;
	int err = copyoffload_helper_copy_recv(c->req, &reply);

	if (err != 0) {
		FUZZ_CHECK(err > 0, "error %d", err);
	} else {
		const struct seen_copy *copy = seen_copy(reply.request_id);

		FUZZ_CHECK(was_sent(&reply),
			   "copy completed with a reply the helper did not send (id %" PRIu64 ")",
			   reply.request_id);
		FUZZ_CHECK(copy != NULL && copy->length == c->length,
			   "reply %" PRIu64 " went to a copy of another length", reply.request_id);
		FUZZ_CHECK(reply.bytes_done <= c->length &&
				   (reply.status != 0 || reply.bytes_done == c->length),
			   "status %d with %" PRIu64 " of %" PRIu64 " bytes accepted",
			   (int)reply.status, reply.bytes_done, c->length);
	}
	TALLOC_FREE(c->req);
}

static void finish_done_calls(void)
{
	size_t i;

	for (i = 0; i < MAX_CALLS; i++) {
		if (h.calls[i].req != NULL && h.calls[i].done) {
			finish_call(&h.calls[i]);
		}
	}
}

static struct call *nth_call(uint8_t k)
{
	struct call *c = &h.calls[k % MAX_CALLS];

	return c->req != NULL ? c : NULL;
}

static const struct seen_copy *nth_seen(uint8_t k)
{
	return h.seen_count > 0 ? &h.seen[k % h.seen_count] : NULL;
}

/* --- one input --------------------------------------------------------- */

static void copy_reply_action(struct fuzz_input *in)
{
	const struct seen_copy *copy = nth_seen(fuzz_u8(in));
	uint8_t variant = fuzz_u8(in);
	uint8_t status = fuzz_u8(in);
	uint64_t bytes = fuzz_u64(in);
	struct copyoffload_copy_reply reply = { 0 };
	uint8_t buf[COPYOFFLOAD_COPY_REPLY_SIZE];

	if (copy == NULL) {
		return;
	}
	reply.request_id = copy->id;
	reply.status = (variant & 1) ? status : 0;
	reply.bytes_done = (variant & 2) ? copy->length
					 : bytes % (COPYOFFLOAD_MAX_COPY_LENGTH + 1);
	reply.bytes_by_method[(variant >> 2) % COPYOFFLOAD_METHOD_COUNT] = reply.bytes_done;
	send_to_client(buf, copyoffload_encode_copy_reply(buf, &reply));
}

static void run_action(struct fuzz_input *in)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 16];
	const uint8_t *bytes;
	size_t size;

	switch (fuzz_u8(in) % ACTION_COUNT) {
	case ACTION_RAW:
		bytes = fuzz_blob(in, sizeof(buf), &size);
		send_to_client(bytes, size);
		break;
	case ACTION_PATCHED: {
		const struct seen_copy *copy = nth_seen(fuzz_u8(in));

		bytes = fuzz_blob(in, sizeof(buf), &size);
		memcpy(buf, bytes, size);
		if (copy != NULL && size >= COPYOFFLOAD_HEADER_SIZE) {
			copyoffload_put64(buf + 16, copy->id);
		}
		send_to_client(buf, size);
		break;
	}
	case ACTION_COPY_REPLY:
		copy_reply_action(in);
		break;
	case ACTION_HELLO_REPLY: {
		struct copyoffload_hello_reply hello = { 0 };

		hello.status = fuzz_u8(in) & 0x7f;
		hello.version = fuzz_u16(in);
		send_to_client(buf, copyoffload_encode_hello_reply(buf, &hello));
		break;
	}
	case ACTION_HANG_UP:
		hang_up();
		break;
	case ACTION_CANCEL: {
		struct call *c = nth_call(fuzz_u8(in));

		if (c != NULL) {
			TALLOC_FREE(c->req);
		}
		break;
	}
	case ACTION_START:
		start_call(fuzz_u64(in), 0);
		break;
	case ACTION_PUMP:
		pump();
		finish_done_calls();
		break;
	case ACTION_WAIT:
		copyoffload_shim_advance_clock(PAST_ANY_PAUSE_SECONDS);
		break;
	}
}

/* Leaves the client with no connection, as at the start of the input. */
static void disconnect_client(void)
{
	serve();
	hang_up();
	pump();
	FUZZ_CHECK(h.server < 0, "the client kept or reopened its connection");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	unsigned calls = 1 + (fuzz_u8(&in) & 3);
	unsigned i;

	h.seen_count = 0;
	h.sent_count = 0;
	/* Past any reconnect pause or bypass the last input caused. */
	copyoffload_shim_advance_clock(PAST_ANY_PAUSE_SECONDS);
	for (i = 0; i < calls; i++) {
		uint64_t length = fuzz_u64(&in);

		start_call(length, fuzz_u8(&in));
	}
	pump();
	for (i = 0; i < MAX_ACTIONS && !fuzz_input_empty(&in); i++) {
		run_action(&in);
	}
	pump();
	finish_done_calls();

	/* smbd gives up on whatever is still pending. */
	for (i = 0; i < MAX_CALLS; i++) {
		TALLOC_FREE(h.calls[i].req);
	}
	disconnect_client();
	FUZZ_CHECK(copyoffload_shim_root_depth() == 0, "become_root() depth %d after the input",
		   copyoffload_shim_root_depth());
	FUZZ_CHECK(talloc_total_blocks(h.mem) == 1, "%zu talloc blocks left",
		   talloc_total_blocks(h.mem));
	size = open_descriptor_count();
	if (size != h.baseline_descriptors) {
		print_descriptors();
	}
	FUZZ_CHECK(size == h.baseline_descriptors, "%zu descriptors open, %zu before the input",
		   size, h.baseline_descriptors);
	return 0;
}
