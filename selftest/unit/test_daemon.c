/*
 * Round trips against a real copyoffloadd: starts the daemon on a socket in
 * a temporary directory, talks the wire protocol to it like the VFS module
 * does, and checks replies, copied data, log lines, hostile inputs and a
 * clean SIGTERM shutdown. Needs root (the daemon only serves uid 0) and the
 * daemon's path in $COPYOFFLOADD; exits 77 (skip) otherwise.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "copyoffload_protocol.h"

#define TIMEOUT_MS 5000
#define BIG_SIZE (3 * 1024 * 1024 + 7)

struct daemon_state {
	const char *binary;
	char dir[256];
	char socket_path[300];
	char log_path[300];
	pid_t pid;
	uint64_t next_id;
};

static struct daemon_state daemon_state;

/* --- small helpers ---------------------------------------------------- */

static void path_in_dir(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", daemon_state.dir, name);
}

static uint64_t new_id(void)
{
	return ++daemon_state.next_id;
}

static void fill_pattern(unsigned char *buf, size_t size, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
}

static void write_all(int fd, const void *data, size_t size)
{
	const unsigned char *p = data;
	while (size > 0) {
		ssize_t n = write(fd, p, size);
		assert_true(n > 0);
		p += n;
		size -= (size_t)n;
	}
}

/* Creates `name` with `size` pattern bytes; returns the bytes (malloc'ed). */
static unsigned char *make_file(const char *name, size_t size, unsigned seed)
{
	char path[512];
	unsigned char *bytes = malloc(size ? size : 1);
	assert_non_null(bytes);
	fill_pattern(bytes, size, seed);
	path_in_dir(path, sizeof(path), name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	write_all(fd, bytes, size);
	close(fd);
	return bytes;
}

static int open_in_dir(const char *name, int flags)
{
	char path[512];
	path_in_dir(path, sizeof(path), name);
	int fd = open(path, flags | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static unsigned char *read_whole(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	size_t done = 0;
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	buf[done] = 0;
	close(fd);
	*size = done;
	return buf;
}

static void assert_file_equals(const char *name, const unsigned char *expected, size_t size)
{
	char path[512];
	size_t actual_size;
	path_in_dir(path, sizeof(path), name);
	unsigned char *actual = read_whole(path, &actual_size);
	assert_int_equal(actual_size, size);
	assert_memory_equal(actual, expected, size);
	free(actual);
}

static char *read_log(void)
{
	size_t size;
	return (char *)read_whole(daemon_state.log_path, &size);
}

static void assert_log_contains(const char *needle)
{
	char *log = read_log();
	if (strstr(log, needle) == NULL) {
		fail_msg("daemon log lacks \"%s\":\n%s", needle, log);
	}
	free(log);
}

/* A log line about request `id` contains `needle`: each refusal is logged. */
static void assert_logged_for(uint64_t id, const char *needle)
{
	char *log = read_log();
	char tag[32];
	snprintf(tag, sizeof(tag), "id=%llu", (unsigned long long)id);
	for (char *line = log; line != NULL && *line != 0;) {
		char *end = strchr(line, '\n');
		if (end != NULL) {
			*end = 0;
		}
		/* The whole field "id=N", not "pid=N" nor "id=N0". */
		for (char *at = strstr(line, tag); at != NULL; at = strstr(at + 1, tag)) {
			if ((at == line || !isalnum((unsigned char)at[-1])) &&
			    !isdigit((unsigned char)at[strlen(tag)]) &&
			    strstr(line, needle) != NULL) {
				free(log);
				return;
			}
		}
		line = end != NULL ? end + 1 : NULL;
	}
	free(log);
	fail_msg("daemon log has no line with \"%s\" and \"%s\"", tag, needle);
}

static void assert_log_lacks(const char *needle)
{
	char *log = read_log();
	if (strstr(log, needle) != NULL) {
		fail_msg("daemon log contains \"%s\":\n%s", needle, log);
	}
	free(log);
}

/* --- client side of the protocol -------------------------------------- */

static struct sockaddr_un unix_address(const char *path)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	size_t length = strlen(path);
	assert_true(length < sizeof(address.sun_path));
	memcpy(address.sun_path, path, length + 1);
	return address;
}

static int try_connect(void)
{
	struct sockaddr_un address = unix_address(daemon_state.socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_with_fds(int sock, const void *data, size_t size, const int *fds, size_t nfds)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = size};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	memset(&control, 0, sizeof(control));
	if (nfds > 0) {
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)size);
}

/* Receives one packet within the timeout; returns its size, 0 at EOF. */
static ssize_t receive(int sock, uint8_t *buf, size_t size)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int ready = poll(&p, 1, TIMEOUT_MS);
	if (ready != 1) {
		fail_msg("no answer from the daemon within %d ms", TIMEOUT_MS);
	}
	ssize_t n = recv(sock, buf, size, 0);
	if (n < 0 && errno == ECONNRESET) {
		return 0;
	}
	assert_true(n >= 0);
	return n;
}

static void send_hello_versions(int sock, uint16_t min, uint16_t max, uint64_t id)
{
	uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
	struct copyoffload_hello hello = {.request_id = id, .min_version = min,
					  .max_version = max};
	send_with_fds(sock, buf, copyoffload_encode_hello(buf, &hello), NULL, 0);
}

static struct copyoffload_hello_reply receive_hello_reply(int sock)
{
	uint8_t buf[256];
	struct copyoffload_hello_reply reply;
	ssize_t n = receive(sock, buf, sizeof(buf));
	assert_int_equal(copyoffload_decode_hello_reply(buf, (size_t)n, &reply),
			 COPYOFFLOAD_DECODE_OK);
	return reply;
}

/* A connection that has completed the handshake. */
static int connect_ready(void)
{
	int sock = try_connect();
	assert_true(sock >= 0);
	uint64_t id = new_id();
	send_hello_versions(sock, COPYOFFLOAD_PROTOCOL_VERSION, COPYOFFLOAD_PROTOCOL_VERSION, id);
	struct copyoffload_hello_reply reply = receive_hello_reply(sock);
	assert_int_equal(reply.status, 0);
	assert_int_equal(reply.version, COPYOFFLOAD_PROTOCOL_VERSION);
	assert_true(reply.request_id == id);
	return sock;
}

static struct copyoffload_copy_request copy_request(uint64_t src, uint64_t dst, uint64_t length,
						    uint32_t methods)
{
	struct copyoffload_copy_request r = {
		.request_id = new_id(), .src_offset = src, .dst_offset = dst,
		.length = length, .methods = methods, .flags = 0,
	};
	return r;
}

static void send_copy(int sock, const struct copyoffload_copy_request *r, int src, int dst)
{
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	int fds[2] = {src, dst};
	send_with_fds(sock, buf, copyoffload_encode_copy_request(buf, r), fds, 2);
}

static struct copyoffload_copy_reply receive_copy_reply(int sock)
{
	uint8_t buf[256];
	struct copyoffload_copy_reply reply;
	ssize_t n = receive(sock, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(copyoffload_decode_copy_reply(buf, (size_t)n, &reply),
			 COPYOFFLOAD_DECODE_OK);
	return reply;
}

/* Sends one COPY and waits for its reply; checks the id and the accounting. */
static struct copyoffload_copy_reply copy(int sock, const struct copyoffload_copy_request *r,
					  int src, int dst)
{
	send_copy(sock, r, src, dst);
	struct copyoffload_copy_reply reply = receive_copy_reply(sock);
	assert_true(reply.request_id == r->request_id);
	assert_true(reply.status != 0 || reply.bytes_done == r->length);
	return reply;
}

static void assert_closed_by_daemon(int sock)
{
	uint8_t buf[256];
	assert_int_equal(receive(sock, buf, sizeof(buf)), 0);
	close(sock);
}

/* A plain successful copy on a fresh connection: the daemon still serves. */
static void assert_daemon_serves(void)
{
	int sock = connect_ready();
	unsigned char *bytes = make_file("alive-src", 4096, 99);
	int src = open_in_dir("alive-src", O_RDONLY);
	int dst = open_in_dir("alive-dst", O_WRONLY | O_CREAT | O_TRUNC);
	struct copyoffload_copy_request r = copy_request(0, 0, 4096, COPYOFFLOAD_METHODS_ALL);
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, 0);
	assert_file_equals("alive-dst", bytes, 4096);
	close(src);
	close(dst);
	close(sock);
	free(bytes);
}

/* --- daemon process --------------------------------------------------- */

static void sleep_ms(long ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* Runs copyoffloadd with `args` (NULL-terminated, after argv[0]) and its
 * stderr going to the log file. */
static pid_t spawn_daemon(const char *const *args)
{
	const char *argv[16] = {daemon_state.binary};
	size_t n = 1;
	for (; args[n - 1] != NULL && n < 15; n++) {
		argv[n] = args[n - 1];
	}
	argv[n] = NULL;

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int log = open(daemon_state.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (log < 0 || dup2(log, STDERR_FILENO) < 0) {
			_exit(126);
		}
		execv(daemon_state.binary, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit_status(pid_t pid)
{
	int status;
	for (int waited = 0; waited < TIMEOUT_MS; waited += 5) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		assert_true(r >= 0);
		if (r == pid) {
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fail_msg("daemon pid %d did not exit within %d ms", (int)pid, TIMEOUT_MS);
	return -1;
}

static int start_daemon(void **state)
{
	(void)state;
	const char *args[] = {"--socket", daemon_state.socket_path, "--workers", "2",
			      "--log-level", "debug", NULL};
	daemon_state.pid = spawn_daemon(args);
	/* Ready once it says so: the socket accepts a little earlier. */
	for (int waited = 0; waited < TIMEOUT_MS; waited += 5) {
		size_t size;
		char *log = access(daemon_state.log_path, R_OK) == 0
				    ? (char *)read_whole(daemon_state.log_path, &size)
				    : NULL;
		int ready = log != NULL && strstr(log, "info: listening on ") != NULL;
		free(log);
		if (ready) {
			return 0;
		}
		sleep_ms(5);
	}
	fprintf(stderr, "copyoffloadd did not start listening\n");
	return -1;
}

static int stop_daemon(void **state)
{
	(void)state;
	if (daemon_state.pid > 0) {
		kill(daemon_state.pid, SIGTERM);
		waitpid(daemon_state.pid, NULL, 0);
		daemon_state.pid = 0;
	}
	return 0;
}

static void remove_test_dir(int failures)
{
	char command[400];
	if (failures > 0) { /* the daemon's view of what went wrong */
		snprintf(command, sizeof(command), "cat '%s' >&2", daemon_state.log_path);
		if (system(command) != 0) {
			fprintf(stderr, "no daemon log at %s\n", daemon_state.log_path);
		}
	}
	snprintf(command, sizeof(command), "rm -rf '%s'", daemon_state.dir);
	if (system(command) != 0) {
		fprintf(stderr, "could not remove %s\n", daemon_state.dir);
	}
}

/* --- tests ------------------------------------------------------------ */

static void test_socket_file(void **state)
{
	struct stat st;
	(void)state;
	assert_int_equal(lstat(daemon_state.socket_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_log_contains("info: listening on ");
	assert_log_contains(" with 2 workers");
}

/* Every thread of the daemon runs without any capability, but for the
 * guard thread's CAP_SYS_NICE, permitted only (never effective but while it
 * lifts starved workers) where RLIMIT_NICE could not be raised instead. */
static void test_privileges_dropped(void **state)
{
	(void)state;
	char path[128];
	const char *fields[] = {"CapInh:\t0000000000000000", "CapEff:\t0000000000000000",
				"NoNewPrivs:\t1"};
	snprintf(path, sizeof(path), "/proc/%d/task", (int)daemon_state.pid);
	DIR *tasks = opendir(path);
	assert_non_null(tasks);
	int threads = 0;
	int unprivileged_file_ids = 0;
	for (struct dirent *task; (task = readdir(tasks)) != NULL;) {
		if (task->d_name[0] == '.') {
			continue;
		}
		char status_path[512];
		size_t size;
		snprintf(status_path, sizeof(status_path), "%s/%s/status", path, task->d_name);
		/* /proc files report size 0: read them with stdio. */
		FILE *f = fopen(status_path, "r");
		assert_non_null(f);
		char status[8192];
		size = fread(status, 1, sizeof(status) - 1, f);
		status[size] = 0;
		fclose(f);
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			if (strstr(status, fields[i]) == NULL) {
				fail_msg("thread %s lacks \"%s\":\n%s", task->d_name, fields[i],
					 status);
			}
		}
		const bool guard_thread = strncmp(status, "Name:\tguard\n", 12) == 0;
		if (strstr(status, "CapPrm:\t0000000000000000") == NULL &&
		    !(guard_thread && strstr(status, "CapPrm:\t0000000000800000") != NULL)) {
			fail_msg("thread %s keeps capabilities:\n%s", task->d_name, status);
		}
		/* ext4 reserves blocks for uid 0 whatever the capabilities: the
		 * workers write as "nobody", and so does the main thread, which
		 * starts the workers added for stalls (what it does as root for
		 * files, removing the socket and notifying the service manager,
		 * runs on a short-lived thread of its own). No groups at all. */
		const char *fs_ids = "Uid:\t0\t0\t0\t65534\n";
		const char *groups = strstr(status, "\nGroups:");
		if (strstr(status, fs_ids) == NULL || groups == NULL ||
		    strcspn(groups + 1, "\n") != strspn(groups + 1, "Groups:\t ")) {
			fail_msg("thread %s: expected \"%s\" and no groups:\n%s", task->d_name,
				 fs_ids, status);
		}
		unprivileged_file_ids += strstr(status, "Gid:\t0\t0\t0\t65534\n") != NULL;
		threads++;
	}
	closedir(tasks);
	assert_true(threads >= 4); /* main, guard and 2 workers (+ sanitizer helpers) */
	assert_true(unprivileged_file_ids == threads);
}

static void test_copy_real_file(void **state)
{
	(void)state;
	int sock = connect_ready();
	unsigned char *bytes = make_file("big-src", BIG_SIZE, 1);
	int src = open_in_dir("big-src", O_RDONLY);
	int dst = open_in_dir("big-dst", O_WRONLY | O_CREAT | O_TRUNC);

	/* Without clone: whether $TMPDIR can clone must not matter here. */
	struct copyoffload_copy_request r = copy_request(
		0, 0, BIG_SIZE,
		COPYOFFLOAD_METHODS_ALL & ~COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE));
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, 0);
	assert_int_equal(reply.bytes_done, BIG_SIZE);
	assert_int_equal(reply.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE], BIG_SIZE);
	assert_file_equals("big-dst", bytes, BIG_SIZE);

	char expected[512];
	snprintf(expected, sizeof(expected),
		 "debug: copy done id=%llu peer_pid=%d src_off=0 dst_off=0 length=%d "
		 "bytes=%d method=copy_file_range status=0 usec=",
		 (unsigned long long)r.request_id, (int)getpid(), BIG_SIZE, BIG_SIZE);
	assert_log_contains(expected);
	/* The bytes per method, appended after usec. */
	snprintf(expected, sizeof(expected),
		 " clone=0 copy_file_range=%d device=0 read_write=0 share=\"\"\n", BIG_SIZE);
	assert_log_contains(expected);

	close(src);
	close(dst);
	close(sock);
	free(bytes);
}

static void test_read_write_with_offsets(void **state)
{
	(void)state;
	int sock = connect_ready();
	unsigned char *bytes = make_file("rw-src", BIG_SIZE, 2);
	int src = open_in_dir("rw-src", O_RDONLY);
	int dst = open_in_dir("rw-dst", O_RDWR | O_CREAT | O_TRUNC);

	const uint64_t length = BIG_SIZE - 1000;
	struct copyoffload_copy_request r = copy_request(
		1000, 0, length, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE));
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, 0);
	assert_int_equal(reply.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE], length);
	assert_file_equals("rw-dst", bytes + 1000, length);

	close(src);
	close(dst);
	close(sock);
	free(bytes);
}

/* A refused COPY: its status, nothing copied, and why in the log. */
static void expect_status(int sock, int src, int dst, uint64_t src_off, uint64_t dst_off,
			  uint64_t length, uint32_t methods, uint32_t flags, int status,
			  const char *logged)
{
	struct copyoffload_copy_request r = copy_request(src_off, dst_off, length, methods);
	r.flags = flags;
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, status);
	assert_int_equal(reply.bytes_done, 0);
	assert_logged_for(r.request_id, logged);
}

static void test_hostile_descriptors(void **state)
{
	(void)state;
	const uint32_t all = COPYOFFLOAD_METHODS_ALL;
	int sock = connect_ready();
	free(make_file("h-src", 8192, 3));
	int src = open_in_dir("h-src", O_RDONLY);
	int dst = open_in_dir("h-dst", O_WRONLY | O_CREAT | O_TRUNC);
	int directory = open(daemon_state.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int pipe_ends[2];
	assert_int_equal(pipe2(pipe_ends, O_CLOEXEC), 0);
	int read_only_dst = open_in_dir("h-dst", O_RDONLY);
	int append_dst = open_in_dir("h-dst", O_WRONLY | O_APPEND);
	int path_only = open_in_dir("h-src", O_PATH);
	int path_only_dst = open_in_dir("h-dst", O_PATH);
	int same_rw = open_in_dir("h-src", O_RDWR);
	int sockets[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
	int null_device = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_true(null_device >= 0);
	const char *not_regular_src = "source is not a regular file";
	const char *not_regular_dst = "destination is not a regular file";

	expect_status(sock, directory, dst, 0, 0, 100, all, 0, EBADF, not_regular_src);
	expect_status(sock, src, directory, 0, 0, 100, all, 0, EBADF, not_regular_dst);
	expect_status(sock, pipe_ends[0], dst, 0, 0, 100, all, 0, EBADF, not_regular_src);
	expect_status(sock, src, pipe_ends[1], 0, 0, 100, all, 0, EBADF, not_regular_dst);
	expect_status(sock, sockets[0], dst, 0, 0, 100, all, 0, EBADF, not_regular_src);
	expect_status(sock, src, sockets[1], 0, 0, 100, all, 0, EBADF, not_regular_dst);
	expect_status(sock, src, null_device, 0, 0, 100, all, 0, EBADF, not_regular_dst);
	expect_status(sock, src, read_only_dst, 0, 0, 100, all, 0, EBADF,
		      "destination is not open for writing");
	expect_status(sock, src, append_dst, 0, 0, 100, all, 0, EBADF,
		      "destination is open with O_APPEND");
	expect_status(sock, path_only, dst, 0, 0, 100, all, 0, EBADF,
		      "source is an O_PATH descriptor");
	expect_status(sock, src, path_only_dst, 0, 0, 100, all, 0, EBADF,
		      "destination is an O_PATH descriptor");
	expect_status(sock, dst, dst, 0, 0, 100, all, 0, EBADF, /* source write-only */
		      "source is not open for reading");
	expect_status(sock, src, same_rw, 0, 50, 100, all, 0, EINVAL,
		      "overlapping ranges in the same file");
	/* Only a method not implemented yet; an all-or-nothing clone without
	 * the clone method. */
	expect_status(sock, src, dst, 0, 0, 100,
		      COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_DEVICE), 0, EOPNOTSUPP,
		      "no allowed method is implemented");
	expect_status(sock, src, dst, 0, 0, 100,
		      all & ~COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE),
		      COPYOFFLOAD_COPY_CLONE_ONLY, EINVAL,
		      "clone-only copy without the clone method");
	/* Offsets that are negative as off_t, ends beyond it, a length over
	 * the limit: refused before any descriptor is looked at. */
	const char *bad_field = "malformed COPY";
	expect_status(sock, src, dst, UINT64_C(1) << 63, 0, 100, all, 0, EBADMSG, bad_field);
	expect_status(sock, src, dst, 0, UINT64_MAX - 99, 100, all, 0, EBADMSG, bad_field);
	expect_status(sock, src, dst, INT64_MAX - 50, 0, 100, all, 0, EBADMSG, bad_field);
	expect_status(sock, src, dst, 0, 0, COPYOFFLOAD_MAX_COPY_LENGTH + 1, all, 0, EBADMSG,
		      bad_field);

	/* Wrong descriptor counts. */
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	int three[3] = {src, dst, dst};
	for (size_t count = 0; count <= 3; count++) {
		if (count == 2) {
			continue;
		}
		struct copyoffload_copy_request r = copy_request(0, 0, 10, all);
		send_with_fds(sock, buf, copyoffload_encode_copy_request(buf, &r), three, count);
		struct copyoffload_copy_reply reply = receive_copy_reply(sock);
		assert_true(reply.request_id == r.request_id);
		assert_int_equal(reply.status, EBADF);
		char carries[64];
		snprintf(carries, sizeof(carries), "carries %zu descriptors instead of 2", count);
		assert_logged_for(r.request_id, carries);
	}

	/* The same connection still copies. */
	struct copyoffload_copy_request ok = copy_request(0, 0, 8192, all);
	assert_int_equal(copy(sock, &ok, src, dst).status, 0);
	assert_log_contains("status=EBADF");

	close(null_device);
	close(sockets[0]);
	close(sockets[1]);
	close(same_rw);
	close(path_only_dst);
	close(path_only);
	close(append_dst);
	close(read_only_dst);
	close(pipe_ends[0]);
	close(pipe_ends[1]);
	close(directory);
	close(src);
	close(dst);
	close(sock);
}

static void test_source_eof_and_zero_length(void **state)
{
	(void)state;
	int sock = connect_ready();
	free(make_file("eof-src", 1000, 4));
	int src = open_in_dir("eof-src", O_RDONLY);
	int dst = open_in_dir("eof-dst", O_WRONLY | O_CREAT | O_TRUNC);

	struct copyoffload_copy_request r = copy_request(400, 0, 5000, COPYOFFLOAD_METHODS_ALL);
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, ENODATA);
	assert_int_equal(reply.bytes_done, 600);

	r = copy_request(0, 0, 0, COPYOFFLOAD_METHODS_ALL);
	reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, 0);
	assert_int_equal(reply.bytes_done, 0);

	close(src);
	close(dst);
	close(sock);
}

static void test_malformed_body_gets_ebadmsg(void **state)
{
	(void)state;
	int sock = connect_ready();
	int src = open_in_dir("h-src", O_RDONLY);
	int dst = open_in_dir("h-dst", O_WRONLY);

	/* Zero methods, unknown flags: the header is fine, so an answer comes. */
	struct copyoffload_copy_request r = copy_request(0, 0, 10, 0);
	struct copyoffload_copy_reply reply = copy(sock, &r, src, dst);
	assert_int_equal(reply.status, EBADMSG);
	r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	r.flags = 0x100;
	assert_int_equal(copy(sock, &r, src, dst).status, EBADMSG);
	r = copy_request(INT64_MAX, 0, 10, COPYOFFLOAD_METHODS_ALL);
	assert_int_equal(copy(sock, &r, src, dst).status, EBADMSG);

	/* A COPY_REPLY sent to the daemon is answered with EBADMSG too. */
	uint8_t buf[COPYOFFLOAD_COPY_REPLY_SIZE];
	struct copyoffload_copy_reply bogus = {.request_id = new_id()};
	send_with_fds(sock, buf, copyoffload_encode_copy_reply(buf, &bogus), NULL, 0);
	reply = receive_copy_reply(sock);
	assert_true(reply.request_id == bogus.request_id);
	assert_int_equal(reply.status, EBADMSG);

	r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	assert_int_equal(copy(sock, &r, src, dst).status, 0);
	close(src);
	close(dst);
	close(sock);
}

static void test_truncated_message_closes(void **state)
{
	(void)state;
	int sock = connect_ready();
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	copyoffload_encode_copy_request(buf, &r);
	send_with_fds(sock, buf, 20, NULL, 0);
	assert_closed_by_daemon(sock);
	assert_log_contains("truncated message");
	assert_daemon_serves();
}

static void test_bad_magic_closes(void **state)
{
	(void)state;
	int sock = connect_ready();
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	copyoffload_encode_copy_request(buf, &r);
	memcpy(buf, "SMB2", 4);
	send_with_fds(sock, buf, sizeof(buf), NULL, 0);
	assert_closed_by_daemon(sock);
	assert_log_contains("(bad magic), closing connection");
	assert_daemon_serves();
}

/* Our magic and a whole header, but otherwise wrong: that request fails
 * with EBADMSG and the connection keeps serving. */
static void test_bad_header_gets_ebadmsg(void **state)
{
	(void)state;
	int sock = connect_ready();
	int src = open_in_dir("h-src", O_RDONLY);
	int dst = open_in_dir("h-dst", O_WRONLY);
	uint8_t buf[4096] = {0};
	int fds[2] = {src, dst};
	struct {
		size_t offset, width, size;
		uint32_t value;
	} corruptions[] = {
		{4, 2, COPYOFFLOAD_COPY_SIZE, 1},      /* version 1 after a v2 handshake */
		{6, 2, COPYOFFLOAD_COPY_SIZE, 77},     /* unknown type */
		{8, 4, COPYOFFLOAD_COPY_SIZE, 57},     /* length field */
		{12, 4, COPYOFFLOAD_COPY_SIZE, 1},     /* reserved */
		{0, 0, COPYOFFLOAD_COPY_SIZE - 8, 0},  /* truncated body */
		{0, 0, sizeof(buf), 0},                /* oversized */
	};
	for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
		struct copyoffload_copy_request r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
		copyoffload_encode_copy_request(buf, &r);
		if (corruptions[i].width == 2) {
			copyoffload_put16(buf + corruptions[i].offset, (uint16_t)corruptions[i].value);
		} else if (corruptions[i].width == 4) {
			copyoffload_put32(buf + corruptions[i].offset, corruptions[i].value);
		}
		send_with_fds(sock, buf, corruptions[i].size, fds, 2);
		struct copyoffload_copy_reply reply = receive_copy_reply(sock);
		assert_true(reply.request_id == r.request_id);
		assert_int_equal(reply.status, EBADMSG);
	}
	assert_log_contains("oversized message (more than 184 bytes) id=");
	assert_log_contains("(unknown message type) id=");
	assert_log_contains("(unsupported protocol version) id=");
	assert_log_contains("(truncated message) id=");

	struct copyoffload_copy_request ok = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	assert_int_equal(copy(sock, &ok, src, dst).status, 0);
	close(src);
	close(dst);
	close(sock);
}

static void test_wrong_version(void **state)
{
	(void)state;
	/* A client that only speaks version 1 (without descriptor handles)
	 * is told no, then dropped: its module hands copies to smbd. */
	int sock = try_connect();
	assert_true(sock >= 0);
	send_hello_versions(sock, 1, 1, 5);
	struct copyoffload_hello_reply reply = receive_hello_reply(sock);
	assert_int_equal(reply.status, EPROTONOSUPPORT);
	assert_int_equal(reply.version, COPYOFFLOAD_PROTOCOL_VERSION);
	assert_true(reply.request_id == 5);
	assert_closed_by_daemon(sock);
	assert_log_contains("speaks protocol versions 1..1");
	assert_daemon_serves();
}

static void test_copy_before_hello_closes(void **state)
{
	(void)state;
	int sock = try_connect();
	assert_true(sock >= 0);
	int src = open_in_dir("h-src", O_RDONLY);
	int dst = open_in_dir("h-dst", O_WRONLY);
	struct copyoffload_copy_request r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	send_copy(sock, &r, src, dst);
	assert_closed_by_daemon(sock);
	assert_log_contains("instead of HELLO");
	close(src);
	close(dst);
	assert_daemon_serves();
}

#define PARALLEL 16

static void test_many_requests_in_flight(void **state)
{
	(void)state;
	int sock = connect_ready();
	unsigned char *bytes[PARALLEL];
	uint64_t ids[PARALLEL];
	int seen[PARALLEL] = {0};

	for (int i = 0; i < PARALLEL; i++) {
		char src_name[32], dst_name[32];
		snprintf(src_name, sizeof(src_name), "par-src-%d", i);
		snprintf(dst_name, sizeof(dst_name), "par-dst-%d", i);
		size_t size = 100000 + (size_t)i * 4099;
		bytes[i] = make_file(src_name, size, 10 + (unsigned)i);
		int src = open_in_dir(src_name, O_RDONLY);
		int dst = open_in_dir(dst_name, O_WRONLY | O_CREAT | O_TRUNC);
		uint32_t methods = i % 2 ? COPYOFFLOAD_METHODS_ALL
					 : COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE);
		struct copyoffload_copy_request r = copy_request(0, 0, size, methods);
		ids[i] = r.request_id;
		send_copy(sock, &r, src, dst);
		close(src); /* the daemon holds its own references */
		close(dst);
	}
	for (int n = 0; n < PARALLEL; n++) {
		struct copyoffload_copy_reply reply = receive_copy_reply(sock);
		int i = 0;
		while (i < PARALLEL && ids[i] != reply.request_id) {
			i++;
		}
		assert_true(i < PARALLEL);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		assert_int_equal(reply.status, 0);
		assert_int_equal(reply.bytes_done, 100000 + (size_t)i * 4099);
	}
	for (int i = 0; i < PARALLEL; i++) {
		char dst_name[32];
		snprintf(dst_name, sizeof(dst_name), "par-dst-%d", i);
		assert_file_equals(dst_name, bytes[i], 100000 + (size_t)i * 4099);
		free(bytes[i]);
	}
	close(sock);
}

/* --- shares, limits, statistics ---------------------------------------- */

static void send_share(int sock, uint32_t share_id, const char *name, uint64_t max_segment,
		       uint64_t bytes_per_second, uint32_t max_concurrent)
{
	uint8_t buf[COPYOFFLOAD_SHARE_SIZE];
	struct copyoffload_share share = {
		.request_id = new_id(),
		.share_id = share_id,
		.method_order = {COPYOFFLOAD_METHOD_CLONE, COPYOFFLOAD_METHOD_COPY_FILE_RANGE,
				 COPYOFFLOAD_METHOD_READ_WRITE, COPYOFFLOAD_METHOD_NONE},
		.max_segment = max_segment,
		.max_bytes_per_second = bytes_per_second,
		.max_concurrent = max_concurrent,
	};
	assert_true(copyoffload_share_name_set(share.name, name));
	send_with_fds(sock, buf, copyoffload_encode_share(buf, &share), NULL, 0);
}

/* The record of share `name` from a STATS exchange on sock. */
static struct copyoffload_share_stats fetch_share_stats(int sock, const char *name)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static struct copyoffload_stats_reply reply;
	uint32_t cursor = 0;
	do {
		uint8_t request_buf[COPYOFFLOAD_STATS_SIZE];
		struct copyoffload_stats_request request = {.request_id = new_id(),
							    .cursor = cursor};
		send_with_fds(sock, request_buf,
			      copyoffload_encode_stats_request(request_buf, &request), NULL, 0);
		ssize_t n = receive(sock, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(copyoffload_decode_stats_reply(buf, (size_t)n, &reply),
				 COPYOFFLOAD_DECODE_OK);
		assert_true(reply.request_id == request.request_id);
		assert_int_equal(reply.status, 0);
		for (uint32_t i = 0; i < reply.count; i++) {
			if (strcmp(reply.records[i].name, name) == 0) {
				return reply.records[i];
			}
		}
		cursor = reply.next_cursor;
	} while (cursor != 0);
	fail_msg("no statistics for share \"%s\"", name);
	return reply.records[0];
}

static uint64_t monotonic_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* The daemon's counters for a share match the copies made through it. */
static void test_stats_match_copies(void **state)
{
	(void)state;
	const uint32_t no_clone =
		COPYOFFLOAD_METHODS_ALL & ~COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE);
	int sock = connect_ready();
	send_share(sock, 1, "stats-share", 0, 0, 0);
	free(make_file("st-src", 100000, 21));
	free(make_file("st-short", 1000, 22));
	int src = open_in_dir("st-src", O_RDONLY);
	int short_src = open_in_dir("st-short", O_RDONLY);
	int dst = open_in_dir("st-dst", O_RDWR | O_CREAT | O_TRUNC);
	int directory = open(daemon_state.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	struct copyoffload_copy_request r = copy_request(0, 0, 100000, no_clone);
	r.share_id = 1;
	assert_int_equal(copy(sock, &r, src, dst).status, 0);
	r = copy_request(0, 0, 50000, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE));
	r.share_id = 1;
	assert_int_equal(copy(sock, &r, src, dst).status, 0);
	/* The source ends 600 bytes in: ENODATA after 600 by copy_file_range. */
	r = copy_request(400, 0, 5000, no_clone);
	r.share_id = 1;
	assert_int_equal(copy(sock, &r, short_src, dst).status, ENODATA);
	/* Refused before any I/O. */
	r = copy_request(0, 0, 10, no_clone);
	r.share_id = 1;
	assert_int_equal(copy(sock, &r, directory, dst).status, EBADF);

	struct copyoffload_share_stats s = fetch_share_stats(sock, "stats-share");
	const struct copyoffload_method_stats *total = &s.slots[COPYOFFLOAD_STATS_TOTAL];
	const struct copyoffload_method_stats *cfr = &s.slots[COPYOFFLOAD_METHOD_COPY_FILE_RANGE];
	const struct copyoffload_method_stats *rw = &s.slots[COPYOFFLOAD_METHOD_READ_WRITE];
	assert_int_equal(total->requests, 4);
	assert_int_equal(total->errors, 2);
	assert_int_equal(total->bytes, 100000 + 50000 + 600);
	assert_int_equal(cfr->requests, 2);
	assert_int_equal(cfr->errors, 1);
	assert_int_equal(cfr->bytes, 100600);
	assert_int_equal(rw->requests, 1);
	assert_int_equal(rw->errors, 0);
	assert_int_equal(rw->bytes, 50000);
	assert_int_equal(s.slots[COPYOFFLOAD_METHOD_CLONE].requests, 0);
	assert_int_equal(s.slots[COPYOFFLOAD_METHOD_DEVICE].requests, 0);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.running, 0);
	assert_true(total->latency_max_us > 0);
	assert_true(total->latency_p50_us <= total->latency_max_us);
	/* The copies log the share they belong to. */
	assert_log_contains("bytes=50000 method=read_write status=0 usec=");
	assert_log_contains(" read_write=50000 share=\"stats-share\"\n");

	close(directory);
	close(dst);
	close(short_src);
	close(src);
	close(sock);
}

/* A share's bandwidth limit paces its copies. */
static void test_share_bandwidth_limit(void **state)
{
	(void)state;
	const uint64_t size = 3 << 20;
	int sock = connect_ready();
	/* 4 MiB/s in 1 MiB steps: the first goes at once, each later one
	 * waits 250 ms, so 3 MiB take at least 500 ms. */
	send_share(sock, 1, "slow-share", 1 << 20, 4 << 20, 0);
	unsigned char *bytes = make_file("bw-src", size, 23);
	int src = open_in_dir("bw-src", O_RDONLY);
	int dst = open_in_dir("bw-dst", O_WRONLY | O_CREAT | O_TRUNC);
	struct copyoffload_copy_request r = copy_request(
		0, 0, size, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_COPY_FILE_RANGE));
	r.share_id = 1;
	uint64_t started = monotonic_ms();
	assert_int_equal(copy(sock, &r, src, dst).status, 0);
	uint64_t elapsed = monotonic_ms() - started;
	if (elapsed < 480 || elapsed > 3000) {
		fail_msg("3 MiB at 4 MiB/s took %llu ms", (unsigned long long)elapsed);
	}
	assert_file_equals("bw-dst", bytes, size);
	assert_log_contains("info: share \"slow-share\": limits set by peer pid=");
	assert_log_contains("max_bytes_per_second=4194304 max_concurrent=0");
	free(bytes);
	close(src);
	close(dst);
	close(sock);
}

/* A share's concurrency limit: extra copies wait, none fails. */
static void test_share_concurrency_limit(void **state)
{
	(void)state;
	enum { COPIES = 3 };
	const uint64_t size = 1 << 20;
	int sock = connect_ready();
	int observer = connect_ready();
	/* One copy at a time, each paced to ~120 ms (1 MiB at 8 MiB/s in
	 * 256 KiB steps). */
	send_share(sock, 7, "one-at-a-time", 256 << 10, 8 << 20, 1);
	/* Messages of one connection are handled in order: once this is
	 * answered, the share is known to the observer's connection too. */
	assert_int_equal(fetch_share_stats(sock, "one-at-a-time").in_flight, 0);
	unsigned char *bytes = make_file("cc-src", size, 24);
	int src = open_in_dir("cc-src", O_RDONLY);
	int dst[COPIES];
	for (int i = 0; i < COPIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "cc-dst-%d", i);
		dst[i] = open_in_dir(name, O_WRONLY | O_CREAT | O_TRUNC);
		struct copyoffload_copy_request r = copy_request(
			0, 0, size, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE));
		r.share_id = 7;
		send_copy(sock, &r, src, dst[i]);
	}
	uint32_t most_running = 0, most_in_flight = 0;
	int answered = 0;
	while (answered < COPIES) {
		struct copyoffload_share_stats s = fetch_share_stats(observer, "one-at-a-time");
		most_running = s.running > most_running ? s.running : most_running;
		most_in_flight = s.in_flight > most_in_flight ? s.in_flight : most_in_flight;
		struct pollfd p = {.fd = sock, .events = POLLIN};
		while (answered < COPIES && poll(&p, 1, 10) == 1) {
			struct copyoffload_copy_reply reply = receive_copy_reply(sock);
			assert_int_equal(reply.status, 0);
			assert_true(reply.bytes_done == size);
			answered++;
		}
	}
	assert_int_equal(most_running, 1);
	assert_true(most_in_flight >= 2);
	for (int i = 0; i < COPIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "cc-dst-%d", i);
		assert_file_equals(name, bytes, size);
		close(dst[i]);
	}
	struct copyoffload_share_stats s = fetch_share_stats(observer, "one-at-a-time");
	assert_int_equal(s.slots[COPYOFFLOAD_STATS_TOTAL].requests, COPIES);
	assert_int_equal(s.slots[COPYOFFLOAD_STATS_TOTAL].errors, 0);
	assert_int_equal(s.in_flight, 0);
	free(bytes);
	close(src);
	close(observer);
	close(sock);
}

/* A COPY naming a share id the connection never declared is refused. */
static void test_undeclared_share_refused(void **state)
{
	(void)state;
	int sock = connect_ready();
	int src = open_in_dir("h-src", O_RDONLY);
	int dst = open_in_dir("h-dst", O_WRONLY);
	struct copyoffload_copy_request r = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	r.share_id = 99;
	assert_int_equal(copy(sock, &r, src, dst).status, EINVAL);
	assert_log_contains("names share id 99, which this connection has not declared");
	close(src);
	close(dst);
	close(sock);
}

static void test_non_root_peer_refused(void **state)
{
	(void)state;
	/* Let an unprivileged process reach the socket, then check the
	 * daemon itself turns it away. */
	assert_int_equal(chmod(daemon_state.dir, 0711), 0);
	assert_int_equal(chmod(daemon_state.socket_path, 0666), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0) {
			_exit(2);
		}
		int sock = try_connect();
		if (sock < 0) {
			_exit(3);
		}
		uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
		struct copyoffload_hello hello = {.request_id = 1,
						  .min_version = COPYOFFLOAD_PROTOCOL_VERSION,
						  .max_version = COPYOFFLOAD_PROTOCOL_VERSION};
		copyoffload_encode_hello(buf, &hello);
		send(sock, buf, sizeof(buf), MSG_NOSIGNAL);
		struct pollfd p = {.fd = sock, .events = POLLIN};
		if (poll(&p, 1, TIMEOUT_MS) != 1) {
			_exit(4);
		}
		ssize_t n = recv(sock, buf, sizeof(buf), 0);
		_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 5);
	}
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(chmod(daemon_state.socket_path, 0600), 0);
	assert_int_equal(chmod(daemon_state.dir, 0700), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	char expected[128];
	snprintf(expected, sizeof(expected),
		 "warning: refusing connection from peer pid=%d uid=65534", (int)child);
	assert_log_contains(expected);
	assert_daemon_serves();
}

/* A large sparse source: quick to create, some work to copy. */
static int daemon_descriptor_count(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)daemon_state.pid);
	DIR *dir = opendir(path);
	assert_non_null(dir);
	int count = 0;
	while (readdir(dir) != NULL) {
		count++;
	}
	closedir(dir);
	return count;
}

/* The copies of a client that hangs up are stopped (running ones at their
 * next slice, queued ones dropped) and their descriptors closed. */
static void test_client_vanishes_mid_copy(void **state)
{
	(void)state;
	const int before = daemon_descriptor_count();
	int sock = connect_ready();
	/* Real data (holes would be copied at once), paced to 1 MiB/s in
	 * 256 KiB steps, two copies at a time: the copies are still running
	 * or queued when the client hangs up. */
	send_share(sock, 3, "vanishing", 256 << 10, 1 << 20, 2);
	free(make_file("vanish-src", 8 << 20, 9));
	int src = open_in_dir("vanish-src", O_RDONLY);
	int dst = open_in_dir("vanish-dst", O_WRONLY | O_CREAT | O_TRUNC);
	struct copyoffload_copy_request r = copy_request(
		0, 0, 8 << 20, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE));
	r.share_id = 3;
	for (int i = 0; i < 4; i++) { /* two run, others queue */
		r.request_id = new_id();
		send_copy(sock, &r, src, dst);
	}
	/* Hang up once the daemon holds the copies' descriptors: were it
	 * sooner, it could see the hangup before reading any request. */
	int now = daemon_descriptor_count();
	for (int waited = 0; waited < TIMEOUT_MS && now < before + 1 + 2 * 2; waited++) {
		sleep_ms(1);
		now = daemon_descriptor_count();
	}
	close(sock);
	close(src);
	close(dst);
	/* Not more than before: a connection of an earlier test that the
	 * daemon had yet to notice closing may have counted in `before`. */
	for (int waited = 0; waited < TIMEOUT_MS && now > before; waited += 5) {
		sleep_ms(5);
		now = daemon_descriptor_count();
	}
	assert_true(now <= before);
	/* A worker lets go of the descriptors before it logs. */
	for (int waited = 0; waited < TIMEOUT_MS; waited += 5) {
		char *log = read_log();
		int logged = strstr(log, " abandoned after ") != NULL;
		free(log);
		if (logged) {
			break;
		}
		sleep_ms(5);
	}
	assert_log_contains(" abandoned after ");
	assert_daemon_serves();
}

/* Last: SIGTERM with copies in flight. The daemon answers every copy it
 * had received, refuses later ones with ESHUTDOWN, exits 0 and removes its
 * socket. */
static void test_sigterm_finishes_copies_in_flight(void **state)
{
	(void)state;
	int sock = connect_ready();
	const uint64_t big = 4 << 20;
	/* Paced to 8 MiB/s in 512 KiB steps: about half a second. */
	send_share(sock, 1, "draining", 512 << 10, 8 << 20, 0);
	unsigned char *bytes = make_file("term-src", big, 25);
	free(make_file("term-small", 10, 5));
	int src = open_in_dir("term-src", O_RDONLY);
	int dst = open_in_dir("term-dst", O_WRONLY | O_CREAT | O_TRUNC);
	int small_src = open_in_dir("term-small", O_RDONLY);
	int small_dst = open_in_dir("term-small-dst", O_WRONLY | O_CREAT | O_TRUNC);

	struct copyoffload_copy_request slow = copy_request(
		0, 0, big, COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE));
	slow.share_id = 1;
	struct copyoffload_copy_request quick = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	send_copy(sock, &slow, src, dst);
	send_copy(sock, &quick, small_src, small_dst);
	/* The daemon reads in order: once `quick` is answered, `slow` has
	 * been accepted too and is still being paced. */
	struct copyoffload_copy_reply reply = receive_copy_reply(sock);
	assert_true(reply.request_id == quick.request_id);
	assert_int_equal(kill(daemon_state.pid, SIGTERM), 0);
	for (int waited = 0; waited < TIMEOUT_MS; waited += 5) {
		char *log = read_log();
		int seen = strstr(log, "info: received SIGTERM") != NULL;
		free(log);
		if (seen) {
			break;
		}
		sleep_ms(5);
	}
	/* A copy sent after the signal is refused at once, not dropped. */
	struct copyoffload_copy_request late = copy_request(0, 0, 10, COPYOFFLOAD_METHODS_ALL);
	send_copy(sock, &late, small_src, small_dst);
	reply = receive_copy_reply(sock);
	assert_true(reply.request_id == late.request_id);
	assert_int_equal(reply.status, ESHUTDOWN);
	assert_int_equal(reply.bytes_done, 0);

	reply = receive_copy_reply(sock);
	assert_true(reply.request_id == slow.request_id);
	assert_int_equal(reply.status, 0);
	assert_int_equal(reply.bytes_done, big);
	assert_file_equals("term-dst", bytes, big);

	assert_int_equal(wait_exit_status(daemon_state.pid), 0);
	daemon_state.pid = 0;
	assert_closed_by_daemon(sock);

	struct stat st;
	assert_int_equal(lstat(daemon_state.socket_path, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_log_contains("info: received SIGTERM");
	assert_log_contains("refused with ESHUTDOWN: the daemon is shutting down");
	assert_log_contains("info: shut down");
	/* Sanitizer builds report into the same log. */
	assert_log_lacks("runtime error");
	assert_log_lacks("Sanitizer");
	free(bytes);
	close(src);
	close(dst);
	close(small_src);
	close(small_dst);
}

/* Command-line and startup errors, each with its own short-lived daemon. */
static void test_startup_errors(void **state)
{
	(void)state;
	const char *no_socket[] = {"--workers", "2", NULL};
	assert_int_equal(wait_exit_status(spawn_daemon(no_socket)), 2);
	const char *bad_level[] = {"--socket", "/nonexistent/x", "--log-level", "loud", NULL};
	assert_int_equal(wait_exit_status(spawn_daemon(bad_level)), 2);
	const char *bad_option[] = {"--frobnicate", NULL};
	assert_int_equal(wait_exit_status(spawn_daemon(bad_option)), 2);
	assert_log_contains("copyoffloadd: unknown option '--frobnicate'");

	/* A regular file at the socket path is never replaced. */
	char path[512];
	free(make_file("not-a-socket", 5, 6));
	path_in_dir(path, sizeof(path), "not-a-socket");
	const char *on_file[] = {"--socket", path, NULL};
	assert_int_equal(wait_exit_status(spawn_daemon(on_file)), 1);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_log_contains("exists and is not a socket");

	/* The running daemon's socket is not stolen. */
	const char *on_live[] = {"--socket", daemon_state.socket_path, NULL};
	assert_int_equal(wait_exit_status(spawn_daemon(on_live)), 1);
	assert_log_contains("another daemon is listening");
	assert_daemon_serves();

	/* A stale socket file (nobody listening) is replaced. */
	path_in_dir(path, sizeof(path), "stale.sock");
	struct sockaddr_un address = unix_address(path);
	int stale = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(stale, (struct sockaddr *)&address, sizeof(address)), 0);
	close(stale);
	const char *on_stale[] = {"--socket", path, NULL};
	pid_t pid = spawn_daemon(on_stale);
	int connected = -1;
	for (int waited = 0; waited < TIMEOUT_MS && connected < 0; waited += 5) {
		connected = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (connect(connected, (struct sockaddr *)&address, sizeof(address)) != 0) {
			close(connected);
			connected = -1;
			sleep_ms(5);
		}
	}
	assert_true(connected >= 0);
	close(connected);
	assert_int_equal(kill(pid, SIGINT), 0);
	assert_int_equal(wait_exit_status(pid), 0);
}

int main(void)
{
	daemon_state.binary = getenv("COPYOFFLOADD");
	if (daemon_state.binary == NULL || access(daemon_state.binary, X_OK) != 0) {
		fprintf(stderr, "skipped: set COPYOFFLOADD to the daemon binary\n");
		return 77;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "skipped: copyoffloadd only serves root peers\n");
		return 77;
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(daemon_state.dir, sizeof(daemon_state.dir), "%s/copyoffloadd-test.XXXXXX",
		 tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(daemon_state.dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	path_in_dir(daemon_state.socket_path, sizeof(daemon_state.socket_path), "copyoffload.sock");
	path_in_dir(daemon_state.log_path, sizeof(daemon_state.log_path), "daemon.log");
	signal(SIGPIPE, SIG_IGN);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socket_file),
		cmocka_unit_test(test_privileges_dropped),
		cmocka_unit_test(test_copy_real_file),
		cmocka_unit_test(test_read_write_with_offsets),
		cmocka_unit_test(test_hostile_descriptors),
		cmocka_unit_test(test_source_eof_and_zero_length),
		cmocka_unit_test(test_malformed_body_gets_ebadmsg),
		cmocka_unit_test(test_truncated_message_closes),
		cmocka_unit_test(test_bad_magic_closes),
		cmocka_unit_test(test_bad_header_gets_ebadmsg),
		cmocka_unit_test(test_wrong_version),
		cmocka_unit_test(test_copy_before_hello_closes),
		cmocka_unit_test(test_many_requests_in_flight),
		cmocka_unit_test(test_non_root_peer_refused),
		cmocka_unit_test(test_client_vanishes_mid_copy),
		cmocka_unit_test(test_stats_match_copies),
		cmocka_unit_test(test_share_bandwidth_limit),
		cmocka_unit_test(test_share_concurrency_limit),
		cmocka_unit_test(test_undeclared_share_refused),
		cmocka_unit_test(test_startup_errors),
		cmocka_unit_test(test_sigterm_finishes_copies_in_flight),
	};
	int failures = cmocka_run_group_tests_name("copyoffloadd_daemon", tests, start_daemon,
						   stop_daemon);
	remove_test_dir(failures);
	return failures;
}
