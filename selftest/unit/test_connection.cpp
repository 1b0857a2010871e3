// The per-client protocol handling (handshake, decoding, descriptor
// counting and handles, error replies), the scheduler's order and limits,
// and a whole copy job with its reply and log line, all over real socket
// pairs in-process.
#include "connection.hpp"
#include "copy_job.hpp"
#include "scheduler.hpp"

#include <dirent.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <semaphore>
#include <stop_token>
#include <thread>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;
using namespace std::chrono_literals;

namespace {

std::size_t open_descriptor_count()
{
	std::size_t count = 0;
	DIR *dir = ::opendir("/proc/self/fd");
	assert_non_null(dir);
	while (::readdir(dir) != nullptr) {
		count++;
	}
	::closedir(dir);
	return count;
}

// One end for the daemon's Connection, one for the test playing smbd.
struct Pair {
	std::shared_ptr<Connection> connection;
	UniqueFd client;
};

// The daemon-wide share registry the tests' connections share.
ShareRegistry &registry()
{
	static ShareRegistry shares;
	return shares;
}

Pair connected_pair(const Logger &log, ShareRegistry &shares = registry())
{
	int ends[2];
	assert_int_equal(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends), 0);
	Pair pair;
	pair.connection = std::make_shared<Connection>(
		UniqueFd(ends[0]), PeerCredentials{::getpid(), 0, 0}, log, shares);
	pair.client = UniqueFd(ends[1]);
	return pair;
}

void send_message(int fd, const std::uint8_t *data, std::size_t size,
		  const std::vector<int> &descriptors = {})
{
	send_with_descriptors(fd, data, size, descriptors);
}

constexpr std::uint16_t version = COPYOFFLOAD_PROTOCOL_VERSION;

void send_hello(int fd, std::uint16_t min_version = version,
		std::uint16_t max_version = version, std::uint64_t id = 1)
{
	std::uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
	copyoffload_hello hello{id, min_version, max_version};
	send_message(fd, buf, copyoffload_encode_hello(buf, &hello));
}

copyoffload_copy_request copy_request(std::uint64_t id, std::uint64_t length = 10,
				      std::uint32_t methods = COPYOFFLOAD_METHODS_ALL)
{
	copyoffload_copy_request r{};
	r.request_id = id;
	r.src_offset = 1;
	r.dst_offset = 2;
	r.length = length;
	r.methods = methods;
	return r;
}

void send_copy(int fd, const copyoffload_copy_request &request,
	       const std::vector<int> &descriptors)
{
	std::uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	send_message(fd, buf, copyoffload_encode_copy_request(buf, &request), descriptors);
}

// Nothing more is waiting on the client's end.
void assert_no_reply(int fd)
{
	std::uint8_t buf[128];
	assert_int_equal(::recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

copyoffload_hello_reply receive_hello_reply(int fd)
{
	std::uint8_t buf[128];
	ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	copyoffload_hello_reply reply{};
	assert_int_equal(copyoffload_decode_hello_reply(buf, static_cast<std::size_t>(n), &reply),
			 COPYOFFLOAD_DECODE_OK);
	return reply;
}

copyoffload_copy_reply receive_copy_reply(int fd, int flags = MSG_DONTWAIT)
{
	std::uint8_t buf[128];
	ssize_t n = ::recv(fd, buf, sizeof(buf), flags);
	copyoffload_copy_reply reply{};
	assert_true(n > 0);
	assert_int_equal(copyoffload_decode_copy_reply(buf, static_cast<std::size_t>(n), &reply),
			 COPYOFFLOAD_DECODE_OK);
	return reply;
}

const Logger quiet(LogLevel::error, -1);

// A connection that has completed the handshake.
Pair ready_pair(const Logger &log = quiet)
{
	Pair pair = connected_pair(log);
	send_hello(pair.client.get());
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(receive_hello_reply(pair.client.get()).status, 0);
	return pair;
}

/* --- handshake -------------------------------------------------------- */

void test_handshake(void **)
{
	for (auto [min, max] : {std::pair<std::uint16_t, std::uint16_t>{version, version},
				std::pair<std::uint16_t, std::uint16_t>{1, version + 5}}) {
		Pair pair = connected_pair(quiet);
		send_hello(pair.client.get(), min, max, 0xabcdef);
		std::vector<CopyJob> jobs;
		assert_int_equal(pair.connection->read_messages(jobs),
				 Connection::ReadOutcome::keep_open);
		copyoffload_hello_reply reply = receive_hello_reply(pair.client.get());
		assert_int_equal(reply.status, 0);
		assert_int_equal(reply.version, COPYOFFLOAD_PROTOCOL_VERSION);
		assert_true(reply.request_id == 0xabcdef);
		assert_true(jobs.empty());
	}
}

void test_unsupported_version_refused(void **)
{
	Pair pair = connected_pair(quiet);
	send_hello(pair.client.get(), version + 1, version + 2, 5);
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);
	copyoffload_hello_reply reply = receive_hello_reply(pair.client.get());
	assert_int_equal(reply.status, EPROTONOSUPPORT);
	assert_int_equal(reply.version, COPYOFFLOAD_PROTOCOL_VERSION);
	assert_true(reply.request_id == 5);
}

void test_malformed_hello_refused(void **)
{
	Pair pair = connected_pair(quiet);
	send_hello(pair.client.get(), 0, 1); // version 0 does not exist
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);
	assert_int_equal(receive_hello_reply(pair.client.get()).status, EBADMSG);

	// A HELLO must not carry descriptors; they are closed.
	TempDir dir;
	write_file(dir.file("f"), {});
	UniqueFd file = open_file(dir.file("f"), O_RDONLY);
	Pair other = connected_pair(quiet);
	std::uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
	copyoffload_hello hello{1, 1, 1};
	send_message(other.client.get(), buf, copyoffload_encode_hello(buf, &hello),
		     {file.get()});
	std::size_t before = open_descriptor_count();
	assert_int_equal(other.connection->read_messages(jobs), Connection::ReadOutcome::close);
	assert_int_equal(open_descriptor_count(), before);
	assert_int_equal(receive_hello_reply(other.client.get()).status, EBADMSG);
}

void test_copy_before_hello_closes(void **)
{
	Pair pair = connected_pair(quiet);
	send_copy(pair.client.get(), copy_request(1), {});
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);
	assert_no_reply(pair.client.get());
	assert_true(jobs.empty());
}

/* --- malformed messages ----------------------------------------------- */

// Sends bytes after the handshake and expects the connection to be closed
// without any reply (nothing trustworthy to answer).
void expect_close_without_reply(const std::uint8_t *data, std::size_t size)
{
	Pair pair = ready_pair();
	send_message(pair.client.get(), data, size);
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);
	assert_no_reply(pair.client.get());
}

// Sends bytes after the handshake and expects an EBADMSG reply for `id`,
// the connection staying open.
void expect_ebadmsg(const std::uint8_t *data, std::size_t size, std::uint64_t id)
{
	Pair pair = ready_pair();
	TempDir dir;
	write_file(dir.file("f"), {});
	UniqueFd file = open_file(dir.file("f"), O_RDWR);
	send_message(pair.client.get(), data, size, {file.get(), file.get()});
	std::size_t before = open_descriptor_count();
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(open_descriptor_count(), before); // received ones were closed
	assert_true(jobs.empty());
	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == id);
	assert_int_equal(reply.status, EBADMSG);
	assert_true(reply.bytes_done == 0);
}

void test_unanswerable_messages_close(void **)
{
	std::uint8_t buf[COPYOFFLOAD_COPY_SIZE] = {};
	copyoffload_copy_request r = copy_request(3);
	std::size_t size = copyoffload_encode_copy_request(buf, &r);

	expect_close_without_reply(buf, COPYOFFLOAD_HEADER_SIZE - 1); // no whole header
	expect_close_without_reply(buf, 1);
	copyoffload_put32(buf, 0x12345678);                            // not our magic
	expect_close_without_reply(buf, size);

	// Before the handshake every malformed message ends the session.
	copyoffload_encode_copy_request(buf, &r);
	copyoffload_put16(buf + 6, 99);
	Pair pair = connected_pair(quiet);
	send_message(pair.client.get(), buf, size);
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);
	assert_no_reply(pair.client.get());
}

void test_bad_headers_get_ebadmsg(void **)
{
	std::uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 64] = {};
	copyoffload_copy_request r = copy_request(3);
	std::size_t size = copyoffload_encode_copy_request(buf, &r);

	expect_ebadmsg(buf, COPYOFFLOAD_HEADER_SIZE, 3);  // header only
	expect_ebadmsg(buf, size - 1, 3);                 // truncated body
	expect_ebadmsg(buf, size + 1, 3);                 // longer than its type
	expect_ebadmsg(buf, sizeof(buf), 3);              // longer than any message

	copyoffload_put16(buf + 4, COPYOFFLOAD_PROTOCOL_VERSION + 1); // bad version
	expect_ebadmsg(buf, size, 3);
	copyoffload_encode_copy_request(buf, &r);
	copyoffload_put16(buf + 6, 99);                   // unknown type
	expect_ebadmsg(buf, size, 3);
	copyoffload_encode_copy_request(buf, &r);
	copyoffload_put32(buf + 8, 99);                   // length field
	expect_ebadmsg(buf, size, 3);
	copyoffload_encode_copy_request(buf, &r);
	copyoffload_put32(buf + 12, 1);                   // reserved
	expect_ebadmsg(buf, size, 3);
}

void test_bad_body_gets_ebadmsg(void **)
{
	Pair pair = ready_pair();
	TempDir dir;
	write_file(dir.file("f"), {});
	UniqueFd file = open_file(dir.file("f"), O_RDWR);

	// No methods at all; another with an offset beyond off_t.
	send_copy(pair.client.get(), copy_request(41, 10, 0), {file.get(), file.get()});
	copyoffload_copy_request huge = copy_request(42);
	huge.src_offset = UINT64_MAX;
	send_copy(pair.client.get(), huge, {file.get(), file.get()});

	std::size_t before = open_descriptor_count();
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(open_descriptor_count(), before); // received ones were closed
	assert_true(jobs.empty());
	for (std::uint64_t id : {41, 42}) {
		copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
		assert_true(reply.request_id == id);
		assert_int_equal(reply.status, EBADMSG);
		assert_true(reply.bytes_done == 0);
	}
}

void test_unexpected_types_get_ebadmsg(void **)
{
	Pair pair = ready_pair();
	std::uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	send_hello(pair.client.get(), 1, 1, 61); // a second HELLO
	copyoffload_hello_reply hello_reply{62, 0, 1};
	send_message(pair.client.get(), buf, copyoffload_encode_hello_reply(buf, &hello_reply));
	copyoffload_copy_reply copy_reply{};
	copy_reply.request_id = 63;
	send_message(pair.client.get(), buf, copyoffload_encode_copy_reply(buf, &copy_reply));

	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	for (std::uint64_t id : {61, 62, 63}) {
		copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
		assert_true(reply.request_id == id);
		assert_int_equal(reply.status, EBADMSG);
	}
}

void test_wrong_descriptor_count_gets_ebadf(void **)
{
	Pair pair = ready_pair();
	TempDir dir;
	write_file(dir.file("f"), {});
	UniqueFd file = open_file(dir.file("f"), O_RDWR);
	int f = file.get();

	send_copy(pair.client.get(), copy_request(70), {});
	send_copy(pair.client.get(), copy_request(71), {f});
	send_copy(pair.client.get(), copy_request(72), {f, f, f});
	send_copy(pair.client.get(), copy_request(73), {f, f, f, f, f, f, f}); // control truncated

	std::size_t before = open_descriptor_count();
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(open_descriptor_count(), before);
	assert_true(jobs.empty());
	for (std::uint64_t id : {70, 71, 72, 73}) {
		copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
		assert_true(reply.request_id == id);
		assert_int_equal(reply.status, EBADF);
	}
}

// Two empty files, the first open for reading, the second for writing.
struct TwoFiles {
	TempDir dir;
	UniqueFd a, b;
	TwoFiles()
	{
		write_file(dir.file("a"), {});
		write_file(dir.file("b"), {});
		a = open_file(dir.file("a"), O_RDONLY);
		b = open_file(dir.file("b"), O_WRONLY);
	}
	[[nodiscard]] std::vector<int> fds() const { return {a.get(), b.get()}; }
};

void test_valid_copy_becomes_job(void **)
{
	Pair pair = ready_pair();
	TempDir dir;
	write_file(dir.file("a"), {});
	write_file(dir.file("b"), {});
	UniqueFd a = open_file(dir.file("a"), O_RDONLY);
	UniqueFd b = open_file(dir.file("b"), O_WRONLY);
	copyoffload_copy_request request = copy_request(80, 12345);
	send_copy(pair.client.get(), request, {a.get(), b.get()});
	send_copy(pair.client.get(), copy_request(81), {b.get(), a.get()});

	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_no_reply(pair.client.get()); // workers answer, not the reader
	assert_int_equal(jobs.size(), 2);
	assert_memory_equal(&jobs[0].request, &request, sizeof(request));
	assert_true(jobs[0].connection == pair.connection);
	assert_true(jobs[1].request.request_id == 81);

	// The job's descriptors are new ones for the same files, in order.
	struct stat expected{}, actual{};
	::fstat(a.get(), &expected);
	::fstat(jobs[0].files->source(), &actual);
	assert_true(expected.st_ino == actual.st_ino);
	::fstat(b.get(), &expected);
	::fstat(jobs[0].files->destination(), &actual);
	assert_true(expected.st_ino == actual.st_ino);
	assert_int_not_equal(jobs[0].files->source(), a.get());
	// Received with MSG_CMSG_CLOEXEC.
	assert_true((::fcntl(jobs[0].files->source(), F_GETFD) & FD_CLOEXEC) != 0);
}

// A COPY with descriptors and a handle registers the pair; later COPYs
// naming the handle carry none and get the same pair; an unknown or
// released handle is answered ESTALE; a handle with the wrong count of
// descriptors EBADF.
void test_descriptor_handles(void **)
{
	Pair pair = ready_pair();
	TwoFiles files;
	const int a = files.a.get();
	const int b = files.b.get();
	const std::size_t before = open_descriptor_count();

	copyoffload_copy_request request = copy_request(1);
	request.handle = 7;
	send_copy(pair.client.get(), request, {a, b});
	request.request_id = 2;
	send_copy(pair.client.get(), request, {});
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 2);
	assert_ptr_equal(jobs[0].files.get(), jobs[1].files.get());
	jobs.clear();
	// The connection keeps the pair open after its copies are gone.
	assert_int_equal(open_descriptor_count(), before + 2);

	// Unknown handle: ESTALE, nothing copied, the client resends.
	request.request_id = 3;
	request.handle = 8;
	send_copy(pair.client.get(), request, {});
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_true(jobs.empty());
	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 3);
	assert_int_equal(reply.status, ESTALE);
	assert_true(reply.bytes_done == 0);

	// One descriptor with a handle: EBADF, and nothing is registered.
	request.request_id = 4;
	send_copy(pair.client.get(), request, {a});
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(receive_copy_reply(pair.client.get()).status, EBADF);

	// Released: the descriptors close and the handle is unknown.
	std::uint8_t buf[COPYOFFLOAD_RELEASE_SIZE];
	copyoffload_release release{.request_id = 5, .handle = 7};
	send_message(pair.client.get(), buf, copyoffload_encode_release(buf, &release));
	request.request_id = 6;
	request.handle = 7;
	send_copy(pair.client.get(), request, {});
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_true(jobs.empty());
	assert_int_equal(receive_copy_reply(pair.client.get()).status, ESTALE);
	assert_int_equal(open_descriptor_count(), before);

	// Registering again replaces the pair; the connection's end closes it.
	request.request_id = 7;
	send_copy(pair.client.get(), request, {b, a});
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 1);
	jobs.clear();
	assert_int_equal(open_descriptor_count(), before + 2);
	pair.connection.reset(); // its socket closes too
	assert_int_equal(open_descriptor_count(), before - 1);
}

// The table keeps at most its capacity, forgetting the least recently
// used pair; a pair still in use stays open until its user lets go.
void test_descriptor_table_bound(void **)
{
	TempDir dir;
	write_file(dir.file("f"), {});
	auto pair_of = [&] {
		return DescriptorPair::make(open_file(dir.file("f"), O_RDONLY),
					    open_file(dir.file("f"), O_WRONLY));
	};
	DescriptorTable table(2);
	table.add(1, pair_of());
	table.add(2, pair_of());
	assert_non_null(table.find(1).get()); // 1 is now the most recent
	std::shared_ptr<DescriptorPair> in_use = table.find(2);
	table.add(3, pair_of());               // forgets 1, the least recent
	assert_null(table.find(1).get());
	assert_non_null(table.find(3).get());
	assert_int_equal(table.size(), 2);
	table.add(4, pair_of()); // forgets 2, which stays open while in use
	assert_null(table.find(2).get());
	assert_true(::fcntl(in_use->source(), F_GETFD) >= 0);
	assert_true(table.remove(3));
	assert_false(table.remove(3));
	assert_int_equal(table.size(), 1);
}

void test_peer_close_and_cancel(void **)
{
	Pair pair = ready_pair();
	pair.client.reset();
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::close);

	Pair other = ready_pair();
	assert_false(other.connection->cancelled());
	std::stop_token token = other.connection->stop_token();
	other.connection->cancel();
	assert_true(token.stop_requested());
	copyoffload_copy_reply reply{};
	assert_false(other.connection->send_copy_reply(reply, true));
	assert_no_reply(other.client.get());

	Pair aborted = ready_pair();
	aborted.connection->abort();
	std::uint8_t buf[8];
	assert_int_equal(::recv(aborted.client.get(), buf, sizeof(buf), MSG_DONTWAIT), 0);
}

// The main thread never waits for a client that does not read; a worker
// waits (outside the send lock) until the client makes room.
void test_reply_to_slow_reader(void **)
{
	Pair pair = ready_pair();
	copyoffload_copy_reply reply{};
	int sent = 0;
	while (pair.connection->send_copy_reply(reply, false)) {
		reply.request_id = ++sent;
		assert_true(sent < 1000000);
	}
	assert_true(sent > 0);

	bool delivered = false;
	std::thread worker([&] { delivered = pair.connection->send_copy_reply(reply, true); });
	::usleep(50000);
	// Meanwhile the lock is free: a main-thread send fails at once.
	assert_false(pair.connection->send_copy_reply(reply, false));
	for (int i = 0; i < sent; i++) {
		receive_copy_reply(pair.client.get(), 0);
	}
	worker.join();
	assert_true(delivered);
	assert_true(receive_copy_reply(pair.client.get(), 0).request_id == static_cast<std::uint64_t>(sent));
}

/* --- a whole job ------------------------------------------------------ */

std::string read_log(const std::string &path)
{
	auto bytes = read_file(path);
	return std::string(bytes.begin(), bytes.end());
}

// The log line that starts with `prefix` (after the timestamp), or "".
std::string log_line(const std::string &log, const std::string &prefix)
{
	std::size_t start = log.find(prefix);
	if (start == std::string::npos) {
		return {};
	}
	return log.substr(start, log.find('\n', start) - start);
}

// True when `key` is followed by a number and then exactly `rest`.
bool number_then(const std::string &line, const std::string &key, const std::string &rest)
{
	std::size_t at = line.rfind(key);
	if (at == std::string::npos) {
		return false;
	}
	std::size_t end = line.find_first_not_of("0123456789", at + key.size());
	if (end == at + key.size()) {
		return false;
	}
	return line.substr(end == std::string::npos ? line.size() : end) == rest;
}

void test_copy_job_replies_and_logs(void **state)
{
	TempDir &dir = temp_dir(state);
	UniqueFd log_file = open_file(dir.file("log"), O_WRONLY | O_CREAT | O_APPEND);
	Logger log(LogLevel::debug, log_file.get());
	Pair pair = ready_pair(log);

	auto bytes = pattern(100000);
	write_file(dir.file("src"), bytes);
	write_file(dir.file("dst"), {});
	auto files = DescriptorPair::make(open_file(dir.file("src"), O_RDONLY),
					  open_file(dir.file("dst"), O_WRONLY));
	std::weak_ptr<DescriptorPair> watch = files;
	CopyJob job{pair.connection, copy_request(90, 99000), std::move(files)};
	run_copy_job(job, log);
	assert_true(watch.expired()); // closed before the reply went out

	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 90);
	assert_int_equal(reply.status, 0);
	assert_true(reply.bytes_done == 99000);
	assert_true(reply.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE] == 99000);
	auto copied = read_file(dir.file("dst"));
	assert_int_equal(copied.size(), 2 + 99000);
	assert_memory_equal(copied.data() + 2, bytes.data() + 1, 99000);

	std::string text = read_log(dir.file("log"));
	std::string done = log_line(text, "debug: copy done id=90 ");
	std::string expected = fmt::format(
		"debug: copy done id=90 peer_pid={} src_off=1 dst_off=2 length=99000 "
		"bytes=99000 method=copy_file_range status=0 usec=",
		::getpid());
	assert_string_equal(done.substr(0, expected.size()).c_str(), expected.c_str());
	// The bytes per method come after the fields parsers rely on, then
	// the share (none here).
	assert_true(number_then(done, " usec=",
				" clone=0 copy_file_range=99000 device=0 read_write=0 share=\"\""));

	// A refused job: EBADF reply, its own log line, a warning with the reason.
	CopyJob bad{pair.connection, copy_request(91),
		    DescriptorPair::make(open_file(dir.path(), O_RDONLY | O_DIRECTORY),
					 open_file(dir.file("dst"), O_WRONLY))};
	run_copy_job(bad, log);
	reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 91);
	assert_int_equal(reply.status, EBADF);
	text = read_log(dir.file("log"));
	done = log_line(text, "debug: copy done id=91 ");
	assert_true(done.find(" bytes=0 method=none status=EBADF usec=") != std::string::npos);
	assert_true(number_then(done, " usec=",
				" clone=0 copy_file_range=0 device=0 read_write=0 share=\"\""));
	assert_true(log_line(text, "warning: copy id=91 ").ends_with("not a regular file"));

	// A job of a cancelled connection: logged, never answered.
	pair.connection->cancel();
	CopyJob gone{pair.connection, copy_request(92),
		     DescriptorPair::make(open_file(dir.file("src"), O_RDONLY),
					  open_file(dir.file("dst"), O_WRONLY))};
	run_copy_job(gone, log);
	assert_no_reply(pair.client.get());
	text = read_log(dir.file("log"));
	assert_true(log_line(text, "copy done id=92 ").find(" status=ECANCELED ") != std::string::npos);
}

/* --- shares and statistics ------------------------------------------- */

void send_share(int fd, const copyoffload_share &share)
{
	std::uint8_t buf[COPYOFFLOAD_SHARE_SIZE];
	send_message(fd, buf, copyoffload_encode_share(buf, &share));
}


void test_share_binds_copies(void **)
{
	ShareRegistry shares;
	Pair pair = connected_pair(quiet, shares);
	send_hello(pair.client.get());
	TwoFiles files;
	send_share(pair.client.get(), share_declaration(3, "projects", {.rate = 1 << 20, .limit = 2}));
	copyoffload_copy_request request = copy_request(60);
	request.share_id = 3;
	send_copy(pair.client.get(), request, files.fds());
	request = copy_request(61); // no share
	send_copy(pair.client.get(), request, files.fds());

	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(receive_hello_reply(pair.client.get()).status, 0);
	assert_no_reply(pair.client.get()); // a SHARE is not answered
	assert_int_equal(jobs.size(), 2);

	const ShareBinding &bound = jobs[0].share;
	assert_string_equal(bound.share->name().c_str(), "projects");
	assert_int_equal(bound.order.size(), 2);
	assert_int_equal(bound.order[0], COPYOFFLOAD_METHOD_COPY_FILE_RANGE);
	assert_int_equal(bound.max_segment, 256 << 10);
	assert_int_equal(bound.share->rate_limiter().rate(), 1 << 20);
	assert_int_equal(bound.share->concurrency().limit(), 2);
	assert_int_equal(bound.share->snapshot().in_flight, 1);
	assert_true(jobs[1].share.share->unattributed());

	// Another smbd process declaring the same share name under its own id
	// shares the state (and limits) with the first.
	Pair other = connected_pair(quiet, shares);
	send_hello(other.client.get());
	send_share(other.client.get(), share_declaration(9, "projects", {.rate = 1 << 20, .limit = 2}));
	request = copy_request(62);
	request.share_id = 9;
	send_copy(other.client.get(), request, files.fds());
	std::vector<CopyJob> more;
	assert_int_equal(other.connection->read_messages(more), Connection::ReadOutcome::keep_open);
	assert_int_equal(more.size(), 1);
	assert_ptr_equal(more[0].share.share.get(), bound.share.get());
	assert_int_equal(bound.share->snapshot().in_flight, 2);
	jobs.clear();
	more.clear();
	assert_int_equal(bound.share->snapshot().in_flight, 0);
}

void test_undeclared_or_malformed_share_refused(void **)
{
	TempDir dir;
	UniqueFd log_file = open_file(dir.file("log"), O_WRONLY | O_CREAT | O_APPEND);
	Logger log(LogLevel::debug, log_file.get());
	Pair pair = ready_pair(log);
	TwoFiles files;

	// Never declared: EINVAL.
	copyoffload_copy_request request = copy_request(70);
	request.share_id = 4;
	send_copy(pair.client.get(), request, files.fds());
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_true(jobs.empty());
	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 70);
	assert_int_equal(reply.status, EINVAL);

	// Declared, then declared again badly: the binding is gone, not kept.
	send_share(pair.client.get(), share_declaration(4, "data"));
	copyoffload_share bad = share_declaration(4, "data");
	bad.max_segment = 4096; // below the smallest segment
	send_share(pair.client.get(), bad);
	request.request_id = 71;
	send_copy(pair.client.get(), request, files.fds());
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_true(jobs.empty());
	reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 71);
	assert_int_equal(reply.status, EINVAL);
	std::string text = read_log(dir.file("log"));
	assert_true(text.find("malformed SHARE id=504 for share id 4 (invalid field value)") !=
		    std::string::npos);
	assert_true(text.find("COPY id=70 names share id 4, which this connection has not "
			      "declared") != std::string::npos);
	assert_true(text.find("share id 4 is \"data\": methods=copy_file_range,read_write "
			      "max_segment=262144") != std::string::npos);
}

void test_stats_request_answered(void **)
{
	ShareRegistry shares;
	Pair pair = connected_pair(quiet, shares);
	send_hello(pair.client.get());
	send_share(pair.client.get(), share_declaration(1, "zeta"));
	send_share(pair.client.get(), share_declaration(2, "alpha"));
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(receive_hello_reply(pair.client.get()).status, 0);

	std::uint8_t buf[COPYOFFLOAD_STATS_SIZE];
	copyoffload_stats_request request{33, 0};
	send_message(pair.client.get(), buf, copyoffload_encode_stats_request(buf, &request));
	request = {34, 2};
	send_message(pair.client.get(), buf, copyoffload_encode_stats_request(buf, &request));
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);

	std::vector<std::uint8_t> answer(COPYOFFLOAD_MAX_MESSAGE_SIZE);
	auto reply = std::make_unique<copyoffload_stats_reply>();
	ssize_t n = ::recv(pair.client.get(), answer.data(), answer.size(), MSG_DONTWAIT);
	assert_int_equal(copyoffload_decode_stats_reply(answer.data(), static_cast<std::size_t>(n),
							reply.get()),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(reply->request_id == 33);
	assert_int_equal(reply->count, 3); // "", alpha, zeta
	assert_int_equal(reply->next_cursor, 0);
	assert_string_equal(reply->records[0].name, "");
	assert_string_equal(reply->records[1].name, "alpha");
	assert_string_equal(reply->records[2].name, "zeta");
	n = ::recv(pair.client.get(), answer.data(), answer.size(), MSG_DONTWAIT);
	assert_int_equal(copyoffload_decode_stats_reply(answer.data(), static_cast<std::size_t>(n),
							reply.get()),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(reply->request_id == 34);
	assert_int_equal(reply->count, 1);
	assert_string_equal(reply->records[0].name, "zeta");

	// A malformed STATS gets an error reply.
	copyoffload_encode_stats_request(buf, &request);
	buf[30] = 1; // reserved
	send_message(pair.client.get(), buf, sizeof(buf));
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	n = ::recv(pair.client.get(), answer.data(), answer.size(), MSG_DONTWAIT);
	assert_int_equal(copyoffload_decode_stats_reply(answer.data(), static_cast<std::size_t>(n),
							reply.get()),
			 COPYOFFLOAD_DECODE_OK);
	assert_int_equal(reply->status, EBADMSG);
}

void send_cloned(int fd, std::uint32_t share_id, std::uint32_t copies, std::uint64_t bytes)
{
	std::uint8_t buf[COPYOFFLOAD_CLONED_SIZE];
	copyoffload_cloned cloned{.request_id = 40,
				  .share_id = share_id,
				  .copies = copies,
				  .bytes = bytes};
	send_message(fd, buf, copyoffload_encode_cloned(buf, &cloned));
}

// With every share name the daemon keeps in use by some connection, a new
// one is refused: its copies are answered EUSERS (the module lets smbd copy
// them), and its inline clones are not counted anywhere.
void test_share_refused_when_all_in_use(void **)
{
	ShareRegistry shares;
	std::vector<ShareBinding> held; // as by other connections
	bool changed;
	for (std::size_t i = 0; i < ShareRegistry::max_shares; i++) {
		held.push_back(shares.declare(
			share_declaration(1, fmt::format("home{}", i).c_str()), changed));
	}
	Pair pair = connected_pair(quiet, shares);
	send_hello(pair.client.get());
	TwoFiles files;
	send_share(pair.client.get(), share_declaration(5, "newcomer"));
	send_cloned(pair.client.get(), 5, 1, 4096);
	copyoffload_copy_request request = copy_request(80);
	request.share_id = 5;
	send_copy(pair.client.get(), request, files.fds());
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(receive_hello_reply(pair.client.get()).status, 0);
	assert_true(jobs.empty());
	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 80);
	assert_int_equal(reply.status, EUSERS);
	assert_true(reply.bytes_done == 0);
}

// smbd reports its inline clones at tree disconnect and exits at once: the
// report counts whether the client left before the HELLO reply (the reply
// fails with EPIPE) or with it unread (the next receive fails with
// ECONNRESET, once). A COPY from a client that left is not started.
void test_clones_reported_by_a_client_that_left(void **)
{
	for (bool left_before_reply : {true, false}) {
		ShareRegistry shares;
		Pair pair = connected_pair(quiet, shares);
		TwoFiles files;
		send_hello(pair.client.get());
		send_share(pair.client.get(), share_declaration(5, "reported"));
		send_cloned(pair.client.get(), 5, 8, 8 << 20);
		send_copy(pair.client.get(), copy_request(41), files.fds());
		std::vector<CopyJob> jobs;
		if (!left_before_reply) {
			assert_int_equal(pair.connection->read_messages(jobs, 1),
					 Connection::ReadOutcome::keep_open);
		}
		pair.client = UniqueFd();
		assert_int_equal(pair.connection->read_messages(jobs),
				 Connection::ReadOutcome::close);
		copyoffload_method_stats clone =
			share_record(shares, "reported").slots[COPYOFFLOAD_METHOD_CLONE];
		assert_int_equal(clone.requests, 8);
		assert_int_equal(clone.bytes, 8 << 20);
		assert_true(jobs.empty());
	}
}

void test_copies_refused_while_shutting_down(void **)
{
	Pair pair = ready_pair();
	TwoFiles files;
	send_copy(pair.client.get(), copy_request(90), files.fds());
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 1);

	pair.connection->refuse_new_copies();
	send_copy(pair.client.get(), copy_request(91), files.fds());
	assert_int_equal(pair.connection->read_messages(jobs), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 1);
	copyoffload_copy_reply reply = receive_copy_reply(pair.client.get());
	assert_true(reply.request_id == 91);
	assert_int_equal(reply.status, ESHUTDOWN);
	assert_true(reply.bytes_done == 0);
}

void test_read_limit(void **)
{
	Pair pair = ready_pair();
	TwoFiles files;
	for (std::uint64_t id = 1; id <= 5; id++) {
		send_copy(pair.client.get(), copy_request(id), files.fds());
	}
	std::vector<CopyJob> jobs;
	assert_int_equal(pair.connection->read_messages(jobs, 2), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 2);
	assert_int_equal(pair.connection->read_messages(jobs, 100), Connection::ReadOutcome::keep_open);
	assert_int_equal(jobs.size(), 5);
}

/* --- scheduler and parallel pieces ----------------------------------- */

// A task copying `length` bytes of a fresh source to a fresh destination
// in `dir` with copy_file_range or read/write, in pieces of `piece`. Not
// preallocated (on ext4 its pieces would wait for the first one's
// reservation) unless `preallocate`: test_scheduler_waits_for_a_reservation.
// A copy of `length` bytes between two new files in `dir`, as received.
CopyJob file_job(const Pair &pair, const TempDir &dir, std::uint64_t id, std::uint64_t length,
		 ShareBinding share = {})
{
	const std::string name = std::to_string(id);
	write_file(dir.file("src" + name), pattern(length, static_cast<unsigned>(id)));
	write_file(dir.file("dst" + name), {});
	copyoffload_copy_request request = copy_request(id, length, bit(CFR) | bit(RW));
	request.src_offset = 0;
	request.dst_offset = 0;
	return CopyJob{pair.connection, request,
		       DescriptorPair::make(open_file(dir.file("src" + name), O_RDONLY),
					    open_file(dir.file("dst" + name), O_WRONLY)),
		       std::move(share)};
}

std::shared_ptr<CopyTask> file_task(const Pair &pair, const TempDir &dir, std::uint64_t id,
				    std::uint64_t length, std::uint64_t piece,
				    ShareBinding share = {}, bool preallocate = false)
{
	share.preallocate = preallocate;
	return std::make_shared<CopyTask>(file_job(pair, dir, id, length, std::move(share)),
					  quiet, piece);
}

// What a piece would report had it copied everything.
PieceResult whole(const CopyPiece &piece)
{
	PieceResult result;
	result.credit(CFR, piece.length);
	return result;
}

// Worker `self`'s next assignment, which must be a piece of copy `request_id`.
Scheduler::Assignment next_piece_of(Scheduler &scheduler, std::size_t self,
				    std::uint64_t request_id)
{
	auto assignment = scheduler.next(self);
	assert_true(assignment.has_value());
	assert_true(assignment->piece.has_value());
	assert_true(assignment->task->job().request.request_id == request_id);
	return std::move(*assignment);
}

// Takes every assignment for worker 0 and completes it at once; returns
// the request ids in the order their pieces were handed out.
std::vector<std::uint64_t> run_in_turns(Scheduler &scheduler)
{
	std::vector<std::uint64_t> order;
	while (auto assignment = scheduler.next(0)) {
		assert_true(assignment->piece.has_value());
		order.push_back(assignment->task->job().request.request_id);
		if (scheduler.done(*assignment, whole(*assignment->piece))) {
			assignment->task->finish();
		}
	}
	return order;
}

void test_scheduler_takes_turns(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	Pair b = ready_pair();
	Scheduler scheduler(1, [](std::size_t) {});
	// Connection a has two copies of three pieces, b one: a connection
	// gets a turn, not a copy; a connection's copies take turns too.
	scheduler.add(file_task(a, dir, 1, 3 * 4096, 4096), 0);
	scheduler.add(file_task(a, dir, 2, 3 * 4096, 4096), 0);
	scheduler.add(file_task(b, dir, 3, 3 * 4096, 4096), 0);
	assert_int_equal(scheduler.tasks(), 3);
	auto order = run_in_turns(scheduler);
	assert_true(order == (std::vector<std::uint64_t>{1, 3, 2, 3, 1, 3, 2, 1, 2}));
	assert_int_equal(scheduler.tasks(), 0);
	// Each copy was answered once, in full (the results were made up:
	// nothing was really copied).
	for (std::uint64_t id : {1u, 2u}) {
		copyoffload_copy_reply reply = receive_copy_reply(a.client.get());
		assert_int_equal(reply.status, 0);
		assert_true(reply.bytes_done == 3 * 4096);
		assert_true(reply.request_id == id || reply.request_id == 3 - id);
	}
	assert_int_equal(receive_copy_reply(b.client.get()).status, 0);
	assert_no_reply(a.client.get());
}

void test_scheduler_wakes_for_extra_pieces(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	std::vector<std::size_t> woken;
	Scheduler scheduler(3, [&](std::size_t worker) { woken.push_back(worker); });
	// Workers 1 and 2 look for work, find none and idle.
	assert_false(scheduler.next(1).has_value());
	assert_false(scheduler.next(2).has_value());

	// A copy of one piece runs on the worker that read it: nobody woken.
	scheduler.add(file_task(a, dir, 1, 4096, 4096), 0);
	assert_true(woken.empty());
	run_in_turns(scheduler);

	// Three pieces: the adder takes one, two idle workers are woken,
	// each once.
	assert_false(scheduler.next(1).has_value());
	assert_false(scheduler.next(2).has_value());
	scheduler.add(file_task(a, dir, 2, 3 * 4096, 4096), 0);
	assert_true(woken == (std::vector<std::size_t>{1, 2}));
	scheduler.add(file_task(a, dir, 3, 3 * 4096, 4096), 0);
	assert_int_equal(woken.size(), 2); // they were woken and have not idled since
	run_in_turns(scheduler);

	// A copy of one piece behind a queued one (another smbd process's
	// chunk, read by the same worker): the adder runs the queued piece
	// first, so an idle worker is woken for the new one.
	Pair b = ready_pair();
	woken.clear();
	assert_false(scheduler.next(1).has_value());
	assert_false(scheduler.next(2).has_value());
	scheduler.add(file_task(a, dir, 4, 4096, 4096), 0);
	assert_true(woken.empty());
	scheduler.add(file_task(b, dir, 5, 4096, 4096), 0);
	assert_true(woken == (std::vector<std::size_t>{1}));
	run_in_turns(scheduler);
}

void test_scheduler_keeps_to_its_busy_limit(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	std::vector<std::size_t> woken;
	// Three workers, at most two busy through wake-ups (three CPUs).
	Scheduler scheduler(3, [&](std::size_t worker) { woken.push_back(worker); }, 2);
	assert_false(scheduler.next(1).has_value());
	assert_false(scheduler.next(2).has_value());

	// Three pieces: the adder takes one and one idle worker is woken; the
	// third piece waits for one of the two.
	scheduler.add(file_task(a, dir, 1, 3 * 4096, 4096), 0);
	assert_true(woken == (std::vector<std::size_t>{1}));
	assert_int_equal(run_in_turns(scheduler).size(), 3);

	// With a limit of one, nobody is woken: the adder runs every piece.
	Scheduler alone(3, [&](std::size_t worker) { woken.push_back(worker); }, 1);
	woken.clear();
	assert_false(alone.next(1).has_value());
	assert_false(alone.next(2).has_value());
	alone.add(file_task(a, dir, 2, 3 * 4096, 4096), 0);
	assert_true(woken.empty());
	// Another connection's copy (another smbd process) does wake one: the
	// limit keeps a CPU for one smbd process, not from several.
	Pair b = ready_pair();
	alone.add(file_task(b, dir, 3, 2 * 4096, 4096), 0);
	assert_true(woken == (std::vector<std::size_t>{1}));
	assert_int_equal(run_in_turns(alone).size(), 5);
}

// A worker looking for work takes a piece of a copy that has none running
// before a second piece of one that has (two writers of one destination
// wait for each other's inode lock), whatever the turns say; with only
// running copies left it takes the next in turn.
void test_scheduler_prefers_a_copy_with_no_piece_running(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	Pair b = ready_pair();
	Scheduler scheduler(2, [](std::size_t) {});
	scheduler.add(file_task(a, dir, 1, 3 * 4096, 4096), 0);
	scheduler.add(file_task(b, dir, 2, 2 * 4096, 4096), 0);
	auto first = next_piece_of(scheduler, 0, 1);
	auto second = next_piece_of(scheduler, 1, 2);
	assert_false(scheduler.done(second, whole(*second.piece)));

	// Copy 1's turn, but a piece of it runs: copy 2's second piece goes.
	auto third = next_piece_of(scheduler, 1, 2);
	assert_true(scheduler.done(third, whole(*third.piece)));
	third.task->finish();

	// Only copy 1 is left, with a piece running: worker 1 joins it.
	auto fourth = next_piece_of(scheduler, 1, 1);
	assert_false(scheduler.done(first, whole(*first.piece)));
	assert_false(scheduler.done(fourth, whole(*fourth.piece)));
	assert_int_equal(run_in_turns(scheduler).size(), 1);
	assert_int_equal(receive_copy_reply(a.client.get()).status, 0);
	assert_int_equal(receive_copy_reply(b.client.get()).status, 0);
}

void test_scheduler_drops_a_gone_connection(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	Scheduler scheduler(2, [](std::size_t) {});
	scheduler.add(file_task(a, dir, 1, 2 * 4096, 4096), 0);
	scheduler.add(file_task(a, dir, 2, 4096, 4096), 0);
	auto running = scheduler.next(0); // copy 1 starts
	assert_true(running.has_value());
	assert_true(running->task->job().request.request_id == 1);

	a.connection->cancel();
	Scheduler::Dropped dropped = scheduler.drop(*a.connection);
	assert_int_equal(dropped.unstarted.size(), 1); // copy 2
	assert_true(dropped.unstarted[0]->job().request.request_id == 2);
	assert_true(dropped.finish.empty()); // copy 1 still has a piece running
	assert_false(scheduler.next(1).has_value());
	// Its running piece ends it: complete, cut short, not answered.
	assert_true(scheduler.done(*running, whole(*running->piece)));
	running->task->finish();
	assert_int_equal(scheduler.tasks(), 0);
	assert_no_reply(a.client.get());
}

// On ext4 a copy's first piece reserves its destination's blocks before
// any other piece goes; then idle workers are woken for the rest.
void test_scheduler_waits_for_a_reservation(void **)
{
	skip_unless_preallocated(temp_base());
	TempDir dir;
	Pair a = ready_pair();
	std::vector<std::size_t> woken;
	Scheduler scheduler(3, [&](std::size_t worker) { woken.push_back(worker); });
	assert_false(scheduler.next(1).has_value());
	assert_false(scheduler.next(2).has_value());
	scheduler.add(file_task(a, dir, 1, 3 * 4096, 4096, {}, /*preallocate=*/true), 0);
	assert_true(woken.empty()); // one piece to give until the reservation
	auto first = next_piece_of(scheduler, 0, 1);
	assert_true(first.piece->offset == 0 && first.task->reserving());
	assert_false(scheduler.next(1).has_value());

	first.task->reserve();
	scheduler.reserved(*first.task, 0);
	assert_false(first.task->reserving());
	assert_true(woken == (std::vector<std::size_t>{1, 2}));
	auto second = next_piece_of(scheduler, 1, 1);
	auto third = next_piece_of(scheduler, 2, 1);
	assert_true(second.piece->offset == 4096 && third.piece->offset == 2 * 4096);
	assert_false(scheduler.done(first, whole(*first.piece)));
	assert_false(scheduler.done(second, whole(*second.piece)));
	assert_true(scheduler.done(third, whole(*third.piece)));
	third.task->finish();
	assert_int_equal(receive_copy_reply(a.client.get()).status, 0);
}

// Pieces of one copy finish in any order; the reply counts the contiguous
// prefix only, and no piece is handed out once one has failed.
void test_parallel_pieces_report_the_prefix(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	Scheduler scheduler(4, [](std::size_t) {});
	scheduler.add(file_task(a, dir, 1, 5 * 4096, 4096), 0);
	std::vector<Scheduler::Assignment> taken;
	for (std::size_t worker = 0; worker < 4; worker++) {
		taken.push_back(*scheduler.next(worker));
		assert_true(taken.back().piece->offset == worker * 4096);
	}
	PieceResult half;
	half.credit(RW, 2048);
	half.error = ENOSPC;
	half.failed_method = RW;
	assert_false(scheduler.done(taken[3], whole(*taken[3].piece)));
	assert_false(scheduler.done(taken[1], half));
	// The fifth piece is not handed out after the failure.
	assert_false(scheduler.next(0).has_value());
	assert_false(scheduler.done(taken[0], whole(*taken[0].piece)));
	assert_true(scheduler.done(taken[2], whole(*taken[2].piece)));
	taken[2].task->finish();

	copyoffload_copy_reply reply = receive_copy_reply(a.client.get());
	assert_int_equal(reply.status, ENOSPC);
	assert_true(reply.bytes_done == 4096 + 2048);
	assert_true(reply.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE] == 4096);
	assert_true(reply.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE] == 2048);
}

// A share over its bandwidth is passed over, not waited for: no worker
// sleeps for it, copies of other shares go ahead, and the worker is told
// when the share may go on.
void test_scheduler_paces_without_sleeping(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	ShareRegistry shares;
	bool changed;
	ShareBinding slow = shares.declare(share_declaration(1, "slow", {.rate = 1 << 20}), changed);
	ShareBinding free = shares.declare(share_declaration(2, "free"), changed);
	Scheduler scheduler(2, [](std::size_t) {});
	scheduler.add(file_task(a, dir, 1, 2 * 65536, 65536, slow), 0);
	scheduler.add(file_task(a, dir, 2, 65536, 65536, free), 0);

	using Clock = Scheduler::Clock;
	Clock::time_point retry;
	const auto before = Clock::now();
	auto first = scheduler.next(0, retry); // an idle share starts at once
	assert_true(first->task->job().request.request_id == 1);
	// Its next 64 KiB may start 62.5 ms after this one.
	auto second = scheduler.next(1, retry);
	assert_true(second->task->job().request.request_id == 2);
	assert_true(scheduler.done(*second, whole(*second->piece)));
	second->task->finish();
	assert_false(scheduler.done(*first, whole(*first->piece)));
	assert_false(scheduler.next(1, retry).has_value());
	assert_true(retry > before + 50ms && retry <= Clock::now() + 63ms);
	assert_true(Clock::now() - before < 60ms); // nothing slept 62.5 ms

	std::this_thread::sleep_until(retry);
	auto third = scheduler.next(1, retry);
	assert_true(third.has_value());
	assert_true(third->task->job().request.request_id == 1);
	assert_true(scheduler.done(*third, whole(*third->piece)));
	third->task->finish();
}

// A share at its concurrency limit holds its further copies back (they
// wait, they do not fail) while copies of other shares go ahead.
void test_scheduler_share_concurrency_limit(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	ShareRegistry shares;
	bool changed;
	ShareBinding limited = shares.declare(share_declaration(1, "limited", {.limit = 1}), changed);
	ShareBinding free = shares.declare(share_declaration(2, "free"), changed);
	Scheduler scheduler(2, [](std::size_t) {});
	scheduler.add(file_task(a, dir, 1, 2 * 4096, 4096, limited), 0);
	scheduler.add(file_task(a, dir, 2, 2 * 4096, 4096, limited), 0);
	scheduler.add(file_task(a, dir, 3, 4096, 4096, free), 0);

	auto first = next_piece_of(scheduler, 0, 1);
	assert_int_equal(limited.share->concurrency().running(), 1);
	// Copy 2 may not start: copy 3 of the other share goes ahead.
	auto second = next_piece_of(scheduler, 1, 3);
	assert_true(scheduler.done(second, whole(*second.piece)));
	second.task->finish();
	// Copy 1 may go on (it started); copy 2 still waits.
	auto third = next_piece_of(scheduler, 1, 1);
	assert_false(scheduler.done(first, whole(*first.piece)));
	assert_false(scheduler.next(0).has_value()); // copy 2 waits, not fails
	assert_true(scheduler.done(third, whole(*third.piece)));
	third.task->finish();
	assert_int_equal(limited.share->concurrency().running(), 0);
	auto order = run_in_turns(scheduler);
	assert_true(order == (std::vector<std::uint64_t>{2, 2}));
	assert_int_equal(limited.share->concurrency().running(), 0);
}

// A piece that stalls holds its files' filesystem: no copy touching it
// gets a piece until the piece returns, while copies elsewhere go on, and
// the stuck workers do not count as busy when idle ones are woken.
void test_scheduler_holds_a_stalled_filesystem(void **)
{
	TempDir on_a;
	TempDir on_b("/dev/shm"); // tmpfs: another filesystem
	struct stat a_dir {}, b_dir {};
	assert_int_equal(::stat(on_a.path().c_str(), &a_dir), 0);
	assert_int_equal(::stat(on_b.path().c_str(), &b_dir), 0);
	assert_true(a_dir.st_dev != b_dir.st_dev);
	Pair a = ready_pair();
	Pair b = ready_pair();
	Pair c = ready_pair();
	std::vector<std::size_t> woken;
	// Four workers, at most two busy through wake-ups.
	Scheduler scheduler(4, [&](std::size_t worker) { woken.push_back(worker); }, 2);
	for (std::size_t idle : {1, 2, 3}) {
		assert_false(scheduler.next(idle).has_value());
	}

	// Copy 1 on A, two pieces: workers 0 and 1 take them, and both stall.
	auto stuck = file_task(a, on_a, 1, 2 * 4096, 4096);
	scheduler.add(stuck, 0);
	assert_true(woken == (std::vector<std::size_t>{1}));
	auto first = next_piece_of(scheduler, 0, 1);
	auto second = next_piece_of(scheduler, 1, 1);
	const auto held = stall_keys(*stuck);
	scheduler.hold(0, held);
	scheduler.hold(1, held);

	// Copy 2 on A (another smbd) waits; copy 3 on B wakes worker 3, as
	// the two stalled workers use no CPU, and runs.
	scheduler.add(file_task(b, on_a, 2, 4096, 4096), 2);
	scheduler.add(file_task(c, on_b, 3, 3 * 4096, 4096), 2);
	assert_true(woken == (std::vector<std::size_t>{1, 3}));
	for (std::size_t worker : {2, 3, 2}) {
		auto piece = next_piece_of(scheduler, worker, 3);
		if (scheduler.done(piece, whole(*piece.piece))) {
			piece.task->finish();
		}
	}
	assert_false(scheduler.next(2).has_value());
	assert_int_equal(receive_copy_reply(c.client.get()).status, 0);

	// One of the two pieces returns: A stays held by the other.
	assert_false(scheduler.done(first, whole(*first.piece)));
	scheduler.release(held);
	assert_false(scheduler.next(2).has_value());
	// Both did: copy 2 goes on, and the idle workers are woken for it.
	assert_true(scheduler.done(second, whole(*second.piece)));
	assert_false(scheduler.next(3).has_value());
	woken.clear();
	scheduler.release(held);
	assert_true(std::find(woken.begin(), woken.end(), 3) != woken.end());
	second.task->finish();
	auto late = next_piece_of(scheduler, 2, 2);
	assert_true(scheduler.done(late, whole(*late.piece)));
	late.task->finish();
	assert_int_equal(receive_copy_reply(a.client.get()).status, 0);
	assert_int_equal(receive_copy_reply(b.client.get()).status, 0);
}

// A worker stuck outside a copy right after it found no work is still
// marked idle: the hold takes it out of the idle workers, so a copy's
// further pieces wake the others.
void test_scheduler_wakes_no_stalled_worker(void **)
{
	TempDir dir;
	Pair a = ready_pair();
	std::vector<std::size_t> woken;
	Scheduler scheduler(4, [&](std::size_t worker) { woken.push_back(worker); }, 8);
	for (std::size_t idle : {0, 1, 3}) {
		assert_false(scheduler.next(idle).has_value());
	}
	scheduler.hold(0, {});
	scheduler.add(file_task(a, dir, 1, 3 * 4096, 4096), 2);
	assert_true(woken == (std::vector<std::size_t>{1, 3}));
	scheduler.release({});
	assert_int_equal(run_in_turns(scheduler).size(), 3);
}

// A new copy whose files are on a held filesystem waits before its checks
// (they would hang there too), keyed as the kernel has its files cached,
// or as its pair's checks found them; copies elsewhere do not. Releasing
// the holds hands it back, once no stall holds its filesystem.
void test_scheduler_parks_new_copies_on_a_held_filesystem(void **)
{
	TempDir on_a;
	TempDir on_b("/dev/shm"); // tmpfs: another filesystem
	Pair a = ready_pair();
	Scheduler scheduler(2, [](std::size_t) {});
	auto stuck = file_task(a, on_a, 1, 4096, 4096);
	const auto held = stall_keys(*stuck);
	CopyJob first = file_job(a, on_a, 2, 4096);
	// What the cached attributes say is what the checks find, and a
	// checked pair gives the same without a syscall.
	assert_true(new_copy_stall_keys(first) == held);
	assert_true(new_copy_stall_keys(stuck->job()) == held);
	assert_false(scheduler.holding());
	scheduler.hold(0, held);
	scheduler.hold(1, held); // two stalls on A
	assert_true(scheduler.holding());

	assert_true(scheduler.park_if_held(new_copy_stall_keys(first), first));
	assert_null(first.files.get()); // the scheduler's now
	CopyJob elsewhere = file_job(a, on_b, 3, 4096);
	assert_false(scheduler.park_if_held(new_copy_stall_keys(elsewhere), elsewhere));
	assert_non_null(elsewhere.files.get()); // still the caller's
	// A job with no descriptors has no keys: never parked.
	CopyJob empty{a.connection, copy_request(5, 4096, bit(CFR)), nullptr, {}};
	assert_false(scheduler.park_if_held(new_copy_stall_keys(empty), empty));
	// A stall with unknown files holds nothing.
	scheduler.hold(1, std::array<StallKey, 2>{});

	// One stall on A goes: A is still held by the other.
	scheduler.release(held);
	assert_false(scheduler.take_unparked().has_value());
	scheduler.release({});
	scheduler.release(held);
	assert_false(scheduler.holding());
	auto unparked = scheduler.take_unparked();
	assert_true(unparked.has_value());
	assert_int_equal(unparked->request.request_id, 2);
	assert_non_null(unparked->files.get());
	assert_false(scheduler.take_unparked().has_value());
	assert_false(scheduler.park_if_held(new_copy_stall_keys(*unparked), *unparked));
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, make_temp_dir, remove_temp_dir)

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_unsupported_version_refused),
		cmocka_unit_test(test_malformed_hello_refused),
		cmocka_unit_test(test_copy_before_hello_closes),
		cmocka_unit_test(test_unanswerable_messages_close),
		cmocka_unit_test(test_bad_headers_get_ebadmsg),
		cmocka_unit_test(test_bad_body_gets_ebadmsg),
		cmocka_unit_test(test_unexpected_types_get_ebadmsg),
		cmocka_unit_test(test_wrong_descriptor_count_gets_ebadf),
		cmocka_unit_test(test_valid_copy_becomes_job),
		cmocka_unit_test(test_peer_close_and_cancel),
		cmocka_unit_test(test_reply_to_slow_reader),
		WITH_DIR(test_copy_job_replies_and_logs),
		cmocka_unit_test(test_descriptor_handles),
		cmocka_unit_test(test_descriptor_table_bound),
		cmocka_unit_test(test_scheduler_takes_turns),
		cmocka_unit_test(test_scheduler_wakes_for_extra_pieces),
		cmocka_unit_test(test_scheduler_keeps_to_its_busy_limit),
		cmocka_unit_test(test_scheduler_prefers_a_copy_with_no_piece_running),
		cmocka_unit_test(test_scheduler_drops_a_gone_connection),
		cmocka_unit_test(test_scheduler_holds_a_stalled_filesystem),
		cmocka_unit_test(test_scheduler_wakes_no_stalled_worker),
		cmocka_unit_test(test_scheduler_parks_new_copies_on_a_held_filesystem),
		cmocka_unit_test(test_scheduler_waits_for_a_reservation),
		cmocka_unit_test(test_parallel_pieces_report_the_prefix),
		cmocka_unit_test(test_share_binds_copies),
		cmocka_unit_test(test_undeclared_or_malformed_share_refused),
		cmocka_unit_test(test_share_refused_when_all_in_use),
		cmocka_unit_test(test_stats_request_answered),
		cmocka_unit_test(test_copies_refused_while_shutting_down),
		cmocka_unit_test(test_clones_reported_by_a_client_that_left),
		cmocka_unit_test(test_read_limit),
		cmocka_unit_test(test_scheduler_share_concurrency_limit),
		cmocka_unit_test(test_scheduler_paces_without_sleeping),
	};
	return cmocka_run_group_tests_name("copyoffloadd_connection", tests, nullptr, nullptr);
}
