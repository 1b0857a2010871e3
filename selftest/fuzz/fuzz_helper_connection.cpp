// libFuzzer target: copyoffloadd's handling of what a client sends, from
// packet to reply, without the daemon's sockets and threads. A Connection
// gets one end of a socket pair, as Server::admit gives it an accepted one;
// the target plays the client on the other end, sends the fuzzed packets
// with fuzzed descriptors attached, runs read_messages() as the main thread
// does, then each resulting job through run_copy_job() as a worker does.
//
// Input (fuzz_input.h):
//   u8 flags: bit 0: complete a valid handshake first; bit 1: then refuse
//      new copies, as while the daemon shuts down
//   then up to max_packets packets, each:
//     u8 descriptor count (low 2 bits), then one u8 per descriptor choosing
//        a fake descriptor (kinds below)
//     blob: the packet's bytes
//
// Oracles, beyond the sanitizers:
//   - every packet the daemon sends is a valid message of its type (a
//     HELLO_REPLY only with a status the handshake allows);
//   - a COPY_REPLY answers a request: success means bytes_done == length,
//     never more than requested; a request that did not decode gets an
//     error with bytes_done 0;
//   - the first bytes_done bytes of the destination range equal the source
//     range as it was before the copy;
//   - afterwards the process has exactly the descriptors it had before:
//     every received descriptor was closed, whatever the packet.
// Each input gets a fresh ShareRegistry, so SHARE declarations (and their
// limits) do not carry over. A job that a share's bandwidth limit holds up
// for long is cancelled through its connection, as a hangup would.
#include "connection.hpp"
#include "copy_job.hpp"

#include "fuzz_input.h"
#include "protocol_kinds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace copyoffload;

namespace {

constexpr std::size_t source_size = 64 * 1024;
constexpr std::size_t max_packets = 48;
// Longest a job may run before its connection is cancelled.
constexpr std::chrono::milliseconds job_deadline{200};

// The descriptors a client may attach. Files are memfds: regular files with
// no disk behind them, reset after every job.
enum Kind : unsigned {
	source_rw,   // the source file, read-write (also a valid destination)
	source_ro,   // the source file, read-only
	dest_rw,     // the destination file, read-write
	dest_wo,     // the destination file, write-only
	dest_append, // the destination file, O_APPEND
	path_only,   // the source file, O_PATH
	directory,   // "/"
	pipe_read,
	pipe_write,
	socket_end,
	char_device, // /dev/null
	kind_count,
};

enum class Inode { none, source, destination };

Inode inode_of(unsigned kind)
{
	switch (kind) {
	case source_rw:
	case source_ro:
	case path_only:
		return Inode::source;
	case dest_rw:
	case dest_wo:
	case dest_append:
		return Inode::destination;
	}
	return Inode::none;
}

std::size_t open_descriptor_count()
{
	std::size_t count = 0;
	DIR *dir = ::opendir("/proc/self/fd");
	FUZZ_CHECK(dir != nullptr, "opendir /proc/self/fd: %s", std::strerror(errno));
	while (::readdir(dir) != nullptr) {
		count++;
	}
	::closedir(dir);
	return count;
}

// "3 -> /dev/null, 4 -> socket:[123], ...": what is open, for a failure.
std::string describe_descriptors()
{
	std::string out;
	DIR *dir = ::opendir("/proc/self/fd");
	for (dirent *entry; dir != nullptr && (entry = ::readdir(dir)) != nullptr;) {
		char target[256] = {};
		std::string link = std::string("/proc/self/fd/") + entry->d_name;
		if (entry->d_name[0] != '.' &&
		    ::readlink(link.c_str(), target, sizeof(target) - 1) > 0) {
			out += fmt::format("{} -> {}, ", entry->d_name, target);
		}
	}
	if (dir != nullptr) {
		::closedir(dir);
	}
	return out;
}

UniqueFd checked(int fd, const char *what)
{
	FUZZ_CHECK(fd >= 0, "%s: %s", what, std::strerror(errno));
	return UniqueFd(fd);
}

UniqueFd reopen(const UniqueFd &file, int flags)
{
	std::string path = "/proc/self/fd/" + std::to_string(file.get());
	return checked(::open(path.c_str(), flags | O_CLOEXEC), "reopen memfd");
}

struct Fixture {
	std::vector<std::uint8_t> pattern;
	std::array<UniqueFd, kind_count> fds;
	UniqueFd log_sink;
	std::unique_ptr<Logger> log;
	std::size_t baseline_descriptors = 0;

	Fixture() : pattern(source_size)
	{
		std::uint32_t x = 12345;
		for (auto &byte : pattern) {
			x = x * 1103515245u + 12345u;
			byte = static_cast<std::uint8_t>(x >> 16);
		}
		fds[source_rw] = checked(::memfd_create("fuzz-source", MFD_CLOEXEC), "memfd");
		fds[dest_rw] = checked(::memfd_create("fuzz-destination", MFD_CLOEXEC), "memfd");
		fds[source_ro] = reopen(fds[source_rw], O_RDONLY);
		fds[path_only] = reopen(fds[source_rw], O_PATH);
		fds[dest_wo] = reopen(fds[dest_rw], O_WRONLY);
		fds[dest_append] = reopen(fds[dest_rw], O_WRONLY | O_APPEND);
		fds[directory] = checked(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open /");
		int ends[2];
		FUZZ_CHECK(::pipe2(ends, O_CLOEXEC) == 0, "pipe2");
		fds[pipe_read] = UniqueFd(ends[0]);
		fds[pipe_write] = UniqueFd(ends[1]);
		FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) == 0,
			   "socketpair");
		fds[socket_end] = UniqueFd(ends[0]);
		::close(ends[1]);
		fds[char_device] = checked(::open("/dev/null", O_RDWR | O_CLOEXEC), "/dev/null");
		// Debug level: every log line the daemon can write gets formatted.
		log_sink = checked(::open("/dev/null", O_WRONLY | O_CLOEXEC), "/dev/null");
		log = std::make_unique<Logger>(LogLevel::debug, log_sink.get());
		reset_files();
		fuzz_start_symbolizer();
		baseline_descriptors = open_descriptor_count();
	}

	// A copy may grow either file (a destination offset near 2^62 makes a
	// huge sparse file); the next copy must start from small files again.
	void reset_files() const
	{
		FUZZ_CHECK(::ftruncate(fds[source_rw].get(), 0) == 0, "ftruncate");
		FUZZ_CHECK(::pwrite(fds[source_rw].get(), pattern.data(), pattern.size(), 0) ==
				   static_cast<ssize_t>(pattern.size()),
			   "pwrite");
		FUZZ_CHECK(::ftruncate(fds[dest_rw].get(), 0) == 0, "ftruncate");
	}

	[[nodiscard]] int file_of(Inode inode) const
	{
		return inode == Inode::source ? fds[source_rw].get() : fds[dest_rw].get();
	}
};

Fixture &fixture()
{
	static Fixture instance;
	return instance;
}

// What the target sent in a COPY that decodes: what its reply must match.
struct SentCopy {
	copyoffload_copy_request request{};
	std::vector<unsigned> kinds;
	unsigned times_sent = 0; // ids may repeat; only unique ones are checked
};

bool send_packet(int fd, const std::uint8_t *data, std::size_t size,
		 const std::vector<unsigned> &kinds)
{
	iovec iov{const_cast<std::uint8_t *>(data), size};
	msghdr header{};
	header.msg_iov = &iov;
	header.msg_iovlen = 1;
	alignas(cmsghdr) std::array<unsigned char, CMSG_SPACE(sizeof(int) * 3)> control{};
	if (!kinds.empty()) {
		header.msg_control = control.data();
		header.msg_controllen = CMSG_SPACE(sizeof(int) * kinds.size());
		cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * kinds.size());
		for (std::size_t i = 0; i < kinds.size(); i++) {
			int fd = fixture().fds[kinds[i]].get();
			std::memcpy(CMSG_DATA(cmsg) + i * sizeof(int), &fd, sizeof(int));
		}
	}
	return ::sendmsg(fd, &header, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(size);
}

class Client {
public:
	explicit Client(int fd) : fd_(fd) {}

	// Reads and checks every reply waiting on the client's end.
	void drain()
	{
		for (;;) {
			static std::uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 1];
			ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
			if (n <= 0) {
				FUZZ_CHECK(n == 0 || errno == EAGAIN || errno == ECONNRESET,
					   "recv: %s", std::strerror(errno));
				return;
			}
			check_reply(buf, static_cast<std::size_t>(n));
		}
	}

	std::map<std::uint64_t, SentCopy> sent;
	std::map<std::uint64_t, copyoffload_copy_reply> replies;

private:
	void check_reply(const std::uint8_t *buf, std::size_t size)
	{
		static fuzz_message decoded;
		copyoffload_header header{};
		auto result = copyoffload_decode_header(buf, size, &header);
		FUZZ_CHECK(result == COPYOFFLOAD_DECODE_OK, "daemon sent a bad packet: %s",
			   copyoffload_decode_result_string(result));
		const fuzz_message_kind *kind = fuzz_kind_for_type(header.type);
		result = kind->decode(buf, size, &decoded);
		FUZZ_CHECK(result == COPYOFFLOAD_DECODE_OK, "daemon sent a bad %s: %s", kind->name,
			   copyoffload_decode_result_string(result));
		if (header.type == COPYOFFLOAD_MSG_HELLO_REPLY) {
			int status = decoded.hello_reply.status;
			FUZZ_CHECK(status == 0 || status == EBADMSG || status == EPROTONOSUPPORT,
				   "HELLO_REPLY status %d", status);
			return;
		}
		if (header.type != COPYOFFLOAD_MSG_COPY_REPLY) {
			return;
		}
		const copyoffload_copy_reply reply = decoded.copy_reply;
		auto found = sent.find(reply.request_id);
		if (found == sent.end()) {
			// Answer to a packet that was not a valid COPY.
			FUZZ_CHECK(reply.status != 0 && reply.bytes_done == 0,
				   "id %llu: status %d, %llu bytes for a request never made",
				   static_cast<unsigned long long>(reply.request_id), reply.status,
				   static_cast<unsigned long long>(reply.bytes_done));
			return;
		}
		if (found->second.times_sent == 1) {
			const copyoffload_copy_request &request = found->second.request;
			FUZZ_CHECK(reply.bytes_done <= request.length &&
					   (reply.status != 0 || reply.bytes_done == request.length),
				   "id %llu: status %d, %llu of %llu bytes",
				   static_cast<unsigned long long>(reply.request_id), reply.status,
				   static_cast<unsigned long long>(reply.bytes_done),
				   static_cast<unsigned long long>(request.length));
			replies[reply.request_id] = reply;
		}
	}

	int fd_;
};

// Runs one job as a worker would, and checks the bytes it reports copied.
void run_job(CopyJob &job, Client &client)
{
	const Fixture &f = fixture();
	const copyoffload_copy_request request = job.request;
	auto sent = client.sent.find(request.request_id);
	std::optional<std::vector<std::uint8_t>> before;
	if (sent != client.sent.end() && sent->second.times_sent == 1 &&
	    sent->second.kinds.size() == 2 && inode_of(sent->second.kinds[0]) != Inode::none &&
	    inode_of(sent->second.kinds[1]) != Inode::none) {
		// Files never exceed the source size at the start of a job.
		std::vector<std::uint8_t> bytes(source_size);
		ssize_t n = ::pread(f.file_of(inode_of(sent->second.kinds[0])), bytes.data(),
				    bytes.size(), static_cast<off_t>(request.src_offset));
		bytes.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
		before = std::move(bytes);
	}

	// run_copy_job() takes the job over, connection included.
	const std::shared_ptr<Connection> connection = job.connection;
	std::promise<void> done;
	std::future<void> finished = done.get_future();
	std::jthread worker([&] {
		run_copy_job(job, *f.log);
		done.set_value();
	});
	if (finished.wait_for(job_deadline) == std::future_status::timeout) {
		connection->cancel();
	}
	worker.join();
	client.drain();

	auto reply = client.replies.find(request.request_id);
	if (before && reply != client.replies.end() && reply->second.bytes_done > 0) {
		std::uint64_t done = reply->second.bytes_done;
		// Within one file, a copy beyond the end grows the file as it goes,
		// and its source range then reaches into the growth (zeros): only
		// the bytes that were there are known.
		if (inode_of(sent->second.kinds[0]) == inode_of(sent->second.kinds[1])) {
			done = std::min<std::uint64_t>(done, before->size());
		}
		FUZZ_CHECK(done <= before->size(), "id %llu: %llu bytes copied from %zu available",
			   static_cast<unsigned long long>(request.request_id),
			   static_cast<unsigned long long>(done), before->size());
		std::vector<std::uint8_t> after(done);
		ssize_t n = ::pread(f.file_of(inode_of(sent->second.kinds[1])), after.data(), done,
				    static_cast<off_t>(request.dst_offset));
		FUZZ_CHECK(n == static_cast<ssize_t>(done) &&
				   std::memcmp(after.data(), before->data(), done) == 0,
			   "id %llu: destination differs from the source (src_off %llu dst_off %llu "
			   "bytes %llu)",
			   static_cast<unsigned long long>(request.request_id),
			   static_cast<unsigned long long>(request.src_offset),
			   static_cast<unsigned long long>(request.dst_offset),
			   static_cast<unsigned long long>(done));
	}
	f.reset_files();
}

void run_input(fuzz_input &in)
{
	Fixture &f = fixture();
	int ends[2];
	FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0,
		   "socketpair");
	UniqueFd client_end(ends[1]);
	Client client(client_end.get());
	ShareRegistry shares;
	auto connection = std::make_shared<Connection>(
		UniqueFd(ends[0]), PeerCredentials{::getpid(), 0, 0}, *f.log, shares);
	std::vector<CopyJob> accepted;
	bool open = true;

	// Server::handle_connection_event: a batch is kept only if the
	// connection stays open, and a closed one is cancelled.
	auto read = [&] {
		std::vector<CopyJob> batch;
		if (connection->read_messages(batch) == Connection::ReadOutcome::close) {
			connection->cancel();
			open = false;
			return;
		}
		for (CopyJob &job : batch) {
			accepted.push_back(std::move(job));
		}
	};

	const std::uint8_t flags = fuzz_u8(&in);
	if ((flags & 1) != 0) {
		std::uint8_t hello_bytes[COPYOFFLOAD_HELLO_SIZE];
		copyoffload_hello hello{};
		hello.min_version = hello.max_version = COPYOFFLOAD_PROTOCOL_VERSION;
		copyoffload_encode_hello(hello_bytes, &hello);
		FUZZ_CHECK(send_packet(client_end.get(), hello_bytes, sizeof(hello_bytes), {}),
			   "sending HELLO");
		read();
		client.drain();
		if ((flags & 2) != 0) {
			connection->refuse_new_copies();
		}
	}

	std::size_t packets = 0;
	while (open && !fuzz_input_empty(&in) && packets < max_packets) {
		std::vector<unsigned> kinds(fuzz_u8(&in) & 3);
		for (unsigned &kind : kinds) {
			kind = fuzz_u8(&in) % kind_count;
		}
		std::size_t size = 0;
		const std::uint8_t *bytes = fuzz_blob(&in, COPYOFFLOAD_MAX_REQUEST_SIZE + 64, &size);
		if (!send_packet(client_end.get(), bytes, size, kinds)) {
			continue;
		}
		packets++;
		copyoffload_copy_request request{};
		if (copyoffload_decode_copy_request(bytes, size, &request) == COPYOFFLOAD_DECODE_OK) {
			SentCopy &entry = client.sent[request.request_id];
			entry.request = request;
			entry.kinds = kinds;
			entry.times_sent++;
		}
	}
	for (std::size_t calls = 0; open && calls <= packets / Connection::max_messages_per_read;
	     calls++) {
		read();
	}
	client.drain();

	for (CopyJob &job : accepted) {
		run_job(job, client);
	}
	accepted.clear();
	connection.reset();
	client_end.reset();
	std::size_t now = open_descriptor_count();
	FUZZ_CHECK(now == f.baseline_descriptors, "%zu descriptors open, %zu before the input: %s",
		   now, f.baseline_descriptors, describe_descriptors().c_str());
}

void put_packet(fuzz_output &out, const std::vector<unsigned> &kinds,
		const std::uint8_t *bytes, std::size_t size)
{
	fuzz_put_u8(&out, static_cast<std::uint8_t>(kinds.size()));
	for (unsigned kind : kinds) {
		fuzz_put_u8(&out, static_cast<std::uint8_t>(kind));
	}
	fuzz_put_blob(&out, bytes, size);
}

// Seeds: every sample message of every type after a handshake (a COPY with
// a readable source and a writable destination), the first COPY sample with
// each kind of descriptor in either place, and all COPY samples at once.
void write_seeds(const char *dir)
{
	static fuzz_message m;
	static std::uint8_t bytes[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static fuzz_output out, all;
	fuzz_put_u8(&all, 1);
	for (std::size_t i = 0; i < fuzz_kind_count; i++) {
		const fuzz_message_kind &kind = fuzz_message_kinds[i];
		for (std::size_t s = 0; kind.sample(s, &m); s++) {
			std::size_t size = kind.encode(bytes, sizeof(bytes), &m);
			std::vector<unsigned> kinds;
			if (kind.type == COPYOFFLOAD_MSG_COPY) {
				kinds = {source_ro, dest_rw};
				put_packet(all, kinds, bytes, size);
			}
			out.size = 0;
			fuzz_put_u8(&out, kind.type == COPYOFFLOAD_MSG_HELLO ? 0 : 1);
			put_packet(out, kinds, bytes, size);
			fuzz_write_seed(dir, fmt::format("{}-{}", kind.name, s).c_str(), &out);
		}
	}
	fuzz_write_seed(dir, "copies", &all);

	// A descriptor handle: registered by a COPY with descriptors, named by
	// one without, released, then named again.
	const fuzz_message_kind *copy_kind = fuzz_kind_for_type(COPYOFFLOAD_MSG_COPY);
	const fuzz_message_kind *release = fuzz_kind_for_type(COPYOFFLOAD_MSG_RELEASE);
	out.size = 0;
	fuzz_put_u8(&out, 1);
	copy_kind->sample(0, &m);
	m.copy.handle = 9;
	put_packet(out, {source_ro, dest_rw}, bytes, copy_kind->encode(bytes, sizeof(bytes), &m));
	m.copy.request_id++;
	put_packet(out, {}, bytes, copy_kind->encode(bytes, sizeof(bytes), &m));
	release->sample(0, &m);
	m.release.handle = 9;
	put_packet(out, {}, bytes, release->encode(bytes, sizeof(bytes), &m));
	copy_kind->sample(0, &m);
	m.copy.handle = 9;
	m.copy.request_id = 99;
	put_packet(out, {}, bytes, copy_kind->encode(bytes, sizeof(bytes), &m));
	fuzz_write_seed(dir, "handle", &out);

	const fuzz_message_kind *copy = fuzz_kind_for_type(COPYOFFLOAD_MSG_COPY);
	copy->sample(0, &m);
	std::size_t size = copy->encode(bytes, sizeof(bytes), &m);
	for (unsigned kind = 0; kind < kind_count; kind++) {
		for (bool as_source : {true, false}) {
			out.size = 0;
			fuzz_put_u8(&out, 1);
			put_packet(out, as_source ? std::vector<unsigned>{kind, dest_rw}
						  : std::vector<unsigned>{source_ro, kind},
				   bytes, size);
			fuzz_write_seed(dir,
					fmt::format("descriptor-{}-as-{}", kind,
						    as_source ? "source" : "destination")
						.c_str(),
					&out);
		}
	}
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	fuzz_initialize(write_seeds);
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	fuzz_input in{data, size};
	run_input(in);
	return 0;
}
