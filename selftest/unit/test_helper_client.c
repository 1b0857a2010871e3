/*
 * The module's helper client (vfs_copyoffload/helper_client.c, built with
 * selftest/module_shim/ instead of smbd) against a fake helper the test
 * drives step by step on a real unix socket: how a connection that ends
 * early is taken, which decides whether the next chunk dials the helper
 * again. The orders of events here are races in smbd; each test makes one
 * of them happen every time.
 */
#include "includes.h"

#include <setjmp.h>
#include <stdarg.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include "helper_client.h"

static struct {
	char dir[64];
	struct tevent_context *ev;
	int source;
	int destination;
	unsigned sockets;
} t;

/* The helper's side: its listening socket and the connection it took. */
struct fake_helper {
	char path[108];
	int listener;
	int server;
};

static void fake_helper_listen(struct fake_helper *helper)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };

	/* A new path per test: the client keeps one connection per path. */
	snprintf(helper->path, sizeof(helper->path), "%s/helper-%u.sock", t.dir,
		 t.sockets++);
	memcpy(address.sun_path, helper->path, strlen(helper->path) + 1);
	helper->listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(helper->listener >= 0);
	assert_int_equal(bind(helper->listener, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_int_equal(listen(helper->listener, 16), 0);
	helper->server = -1;
}

/* Closes the connection taken at once, with whatever the client sent
 * unread: the client's next recv() or send() gets ECONNRESET. */
static void fake_helper_drop(struct fake_helper *helper)
{
	if (helper->server >= 0) {
		close(helper->server);
		helper->server = -1;
	}
}

/* Ends the connection taken in order, and lets the client's loop run
 * until it has closed its end too: nothing of it is left for later. */
static void fake_helper_hang_up(struct fake_helper *helper)
{
	struct pollfd p = { .events = POLLIN };

	if (helper->server < 0) {
		return;
	}
	assert_int_equal(shutdown(helper->server, SHUT_WR), 0);
	p.fd = helper->server;
	for (;;) {
		assert_true(poll(&p, 1, 0) >= 0);
		if ((p.revents & POLLHUP) != 0) {
			break;
		}
		assert_int_equal(tevent_loop_once(t.ev), 0);
	}
	fake_helper_drop(helper);
}

static void fake_helper_close(struct fake_helper *helper)
{
	fake_helper_hang_up(helper);
	close(helper->listener);
	unlink(helper->path);
}

/* Whether the client has dialled since the last accept. */
static bool fake_helper_dialled(struct fake_helper *helper)
{
	int fd = accept4(helper->listener, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		assert_int_equal(errno, EAGAIN);
		return false;
	}
	if (helper->server >= 0) {
		close(helper->server);
	}
	helper->server = fd;
	return true;
}

/* Reads the next message; returns its type (descriptors are dropped). */
static uint8_t fake_helper_receive(struct fake_helper *helper, uint8_t *buf, size_t size)
{
	struct copyoffload_header header;
	ssize_t n = recv(helper->server, buf, size, MSG_DONTWAIT);

	assert_true(n > 0);
	assert_int_equal(copyoffload_decode_header(buf, (size_t)n, &header),
			 COPYOFFLOAD_DECODE_OK);
	return header.type;
}

static void fake_helper_send(struct fake_helper *helper, const uint8_t *buf, size_t size)
{
	assert_int_equal(send(helper->server, buf, size, MSG_NOSIGNAL), (ssize_t)size);
}

/* Reads the HELLO and answers it with status (0 or a refusal). */
static void fake_helper_answer_hello(struct fake_helper *helper, int32_t status)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_hello_reply reply = {
		.status = status,
		.version = COPYOFFLOAD_PROTOCOL_VERSION,
	};

	assert_int_equal(fake_helper_receive(helper, buf, sizeof(buf)), COPYOFFLOAD_MSG_HELLO);
	fake_helper_send(helper, buf, copyoffload_encode_hello_reply(buf, &reply));
}

/* Reads a COPY and reports it done in full. */
static void fake_helper_answer_copy(struct fake_helper *helper)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_copy_request request = { .request_id = 0 };
	struct copyoffload_copy_reply reply = { .status = 0 };

	assert_int_equal(fake_helper_receive(helper, buf, sizeof(buf)), COPYOFFLOAD_MSG_COPY);
	assert_int_equal(copyoffload_decode_copy_request(buf, COPYOFFLOAD_COPY_SIZE, &request),
			 COPYOFFLOAD_DECODE_OK);
	reply.request_id = request.request_id;
	reply.bytes_done = request.length;
	reply.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE] = request.length;
	fake_helper_send(helper, buf, copyoffload_encode_copy_reply(buf, &reply));
}

/* smbd's side: a copy of 4 KiB. */
static struct tevent_req *start_copy(struct fake_helper *helper)
{
	struct copyoffload_copy_args args = {
		.src_fd = t.source,
		.dst_fd = t.destination,
		.length = 4096,
		.methods = COPYOFFLOAD_METHODS_ALL,
	};
	struct tevent_req *req =
		copyoffload_helper_copy_send(NULL, t.ev, helper->path, NULL, &args);

	assert_non_null(req);
	return req;
}

/* A new helper, and a copy that dials it (HELLO, then the COPY behind). */
static struct tevent_req *start_first_copy(struct fake_helper *helper)
{
	struct tevent_req *req;

	fake_helper_listen(helper);
	req = start_copy(helper);
	assert_true(fake_helper_dialled(helper));
	return req;
}

/* The copy's outcome once the loop settled it (0 or an errno). */
static int finish_copy(struct tevent_req *req)
{
	struct copyoffload_copy_reply reply;
	int err;

	while (tevent_req_is_in_progress(req)) {
		assert_int_equal(tevent_loop_once(t.ev), 0);
	}
	err = copyoffload_helper_copy_recv(req, &reply);
	talloc_free(req);
	return err;
}

/* A new copy fails at once with err, the helper left alone (not dialled). */
static void assert_copy_bypasses(struct fake_helper *helper, int err)
{
	struct tevent_req *req = start_copy(helper);

	assert_false(fake_helper_dialled(helper));
	assert_int_equal(finish_copy(req), err);
}

/*
 * An older helper refuses the handshake and closes before the client sent
 * its next copy: the send fails (ECONNRESET with the first copy unread,
 * EPIPE with it read) before anything was read. The refusal queued behind
 * must still count: both copies are handed back as refused, and the next
 * copy bypasses the helper instead of shaking hands again (CI saw 18
 * handshakes for 2 copies of 41 chunks).
 */
static void refusal_taken_after_a_failed_send(bool helper_reads_the_copy)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct fake_helper helper;
	struct tevent_req *first, *second;

	first = start_first_copy(&helper);
	fake_helper_answer_hello(&helper, EPROTONOSUPPORT);
	if (helper_reads_the_copy) {
		assert_int_equal(fake_helper_receive(&helper, buf, sizeof(buf)),
				 COPYOFFLOAD_MSG_COPY);
	}
	fake_helper_drop(&helper);

	second = start_copy(&helper); /* sent before the client read anything */
	assert_int_equal(finish_copy(first), EPROTONOSUPPORT);
	assert_int_equal(finish_copy(second), EPROTONOSUPPORT);

	assert_copy_bypasses(&helper, EPROTONOSUPPORT);
	fake_helper_close(&helper);
}

static void test_refusal_taken_after_a_reset_send(void **state)
{
	(void)state;
	refusal_taken_after_a_failed_send(false);
}

static void test_refusal_taken_after_a_broken_pipe(void **state)
{
	(void)state;
	refusal_taken_after_a_failed_send(true);
}

/*
 * The same refusal, found by a read: the client's first recv() after the
 * close reports ECONNRESET (its COPY lay unread), the refusal only after.
 */
static void test_refusal_taken_after_a_reset_read(void **state)
{
	struct fake_helper helper;
	struct tevent_req *req;

	(void)state;
	req = start_first_copy(&helper);
	fake_helper_answer_hello(&helper, EPROTONOSUPPORT);
	fake_helper_drop(&helper);
	assert_int_equal(finish_copy(req), EPROTONOSUPPORT);

	assert_copy_bypasses(&helper, EPROTONOSUPPORT);
	fake_helper_close(&helper);
}

/*
 * A helper that closes before it answers the handshake (failing at start,
 * say) is not dialled again for every copy: the next copy fails at once,
 * and the one after the reconnect pause dials again.
 */
static void test_unanswered_handshake_pauses_redialling(void **state)
{
	struct fake_helper helper;
	struct tevent_req *req;

	(void)state;
	req = start_first_copy(&helper);
	fake_helper_drop(&helper);
	assert_int_equal(finish_copy(req), ECONNRESET);

	assert_copy_bypasses(&helper, ECONNRESET);

	copyoffload_shim_advance_clock(2);
	req = start_copy(&helper);
	assert_true(fake_helper_dialled(&helper));
	talloc_free(req);
	fake_helper_close(&helper);
}

/*
 * A helper that answered and then went away (restarted) is dialled again
 * by the next copy at once: the pause is for helpers that never answer.
 */
static void test_answered_helper_redialled_at_once(void **state)
{
	struct fake_helper helper;
	struct tevent_req *req;

	(void)state;
	req = start_first_copy(&helper);
	fake_helper_answer_hello(&helper, 0);
	fake_helper_answer_copy(&helper);
	assert_int_equal(finish_copy(req), 0);

	fake_helper_hang_up(&helper);
	req = start_copy(&helper);
	assert_true(fake_helper_dialled(&helper));
	fake_helper_answer_hello(&helper, 0);
	fake_helper_answer_copy(&helper);
	assert_int_equal(finish_copy(req), 0);
	fake_helper_close(&helper);
}

/*
 * A copy the helper has not answered makes its two files busy for inline
 * clones (which would wait for the helper's clone of them), and only those,
 * until its reply.
 */
static void test_pending_copy_names_its_files(void **state)
{
	struct fake_helper helper;
	struct tevent_req *req;
	int other = memfd_create("other", MFD_CLOEXEC);

	(void)state;
	assert_true(other >= 0);
	req = start_first_copy(&helper);
	assert_true(copyoffload_helper_copying(helper.path, t.source, other));
	assert_true(copyoffload_helper_copying(helper.path, other, t.source));
	assert_true(copyoffload_helper_copying(helper.path, other, t.destination));
	assert_false(copyoffload_helper_copying(helper.path, other, other));
	assert_false(copyoffload_helper_copying("/nowhere.sock", t.source, t.destination));

	fake_helper_answer_hello(&helper, 0);
	fake_helper_answer_copy(&helper);
	assert_int_equal(finish_copy(req), 0);
	assert_false(copyoffload_helper_copying(helper.path, t.source, t.destination));
	fake_helper_close(&helper);
	close(other);
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	snprintf(t.dir, sizeof(t.dir), "%s/coff-client.XXXXXX", tmp != NULL ? tmp : "/tmp");
	assert_true(strlen(t.dir) < 48);
	assert_non_null(mkdtemp(t.dir));
	t.ev = tevent_context_init(NULL);
	assert_non_null(t.ev);
	t.source = memfd_create("source", MFD_CLOEXEC);
	t.destination = memfd_create("destination", MFD_CLOEXEC);
	assert_true(t.source >= 0 && t.destination >= 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(t.source);
	close(t.destination);
	rmdir(t.dir);
	assert_int_equal(copyoffload_shim_root_depth(), 0);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusal_taken_after_a_reset_send),
		cmocka_unit_test(test_refusal_taken_after_a_broken_pipe),
		cmocka_unit_test(test_refusal_taken_after_a_reset_read),
		cmocka_unit_test(test_unanswered_handshake_pauses_redialling),
		cmocka_unit_test(test_answered_helper_redialled_at_once),
		cmocka_unit_test(test_pending_copy_names_its_files),
	};

	alarm(60); /* a client that never settles a copy fails, not hangs */
	return cmocka_run_group_tests(tests, setup, teardown);
}
