// The test program of the blockdev guest (run.py, guest_init.sh): statically
// linked, run as root inside QEMU next to a real copyoffloadd --device-copy.
//
// It fills every device with a known pattern and keeps a model of what each
// must hold. Each case sends COPY requests with block device descriptors
// over the helper's real protocol (or drives the device layer directly),
// checks the reply (status, bytes, bytes per method), updates the model and
// reads the destination back with O_DIRECT. The last case reads every
// device whole. Prints "PASS name" or "FAIL name: why" per case.
//
// usage: blockdev-test SOCKET COPYOFFLOAD_TOOL
#include "copyoffload_protocol.h"
#include "device_backend.hpp"
#include "device_probe.hpp"
#include "device_session.hpp"
#include "nvme_device.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace copyoffload;
using namespace copyoffload::device;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr std::uint32_t ALL = COPYOFFLOAD_METHODS_ALL;
constexpr std::uint32_t DEVICE_BIT = COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_DEVICE);
constexpr std::uint32_t RW_BIT = COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE);

int passed = 0;
int failed = 0;

void report(const std::string &name, const std::string &failure)
{
	if (failure.empty()) {
		std::printf("PASS %s\n", name.c_str());
		passed++;
	} else {
		std::printf("FAIL %s: %s\n", name.c_str(), failure.c_str());
		failed++;
	}
	std::fflush(stdout);
}

std::string errno_text(int error)
{
	return error == 0 ? "0" : std::string(strerrorname_np(error) ? strerrorname_np(error) : "?");
}

std::uint64_t mix(std::uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

// Page-aligned memory for O_DIRECT.
struct AlignedBuffer {
	explicit AlignedBuffer(std::size_t size)
		: data(static_cast<std::uint8_t *>(std::aligned_alloc(4096, size))), size(size)
	{
	}
	~AlignedBuffer() { std::free(data); }
	AlignedBuffer(const AlignedBuffer &) = delete;
	AlignedBuffer &operator=(const AlignedBuffer &) = delete;
	std::uint8_t *data;
	std::size_t size;
};

// A whole disk and the bytes it must hold.
struct Disk {
	std::string path;
	std::vector<std::uint8_t> model;
};

// Moves `length` bytes with pread or pwrite, whatever they do per call.
template <typename Transfer>
bool transfer_all(Transfer transfer, std::size_t length)
{
	std::size_t done = 0;
	while (done < length) {
		const ssize_t n = transfer(done);
		if (n <= 0) {
			return false;
		}
		done += static_cast<std::size_t>(n);
	}
	return true;
}

bool pwrite_all(int fd, const std::uint8_t *data, std::size_t length, std::uint64_t offset)
{
	return transfer_all([&](std::size_t done) {
		return ::pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
	}, length);
}

bool pread_all(int fd, std::uint8_t *data, std::size_t length, std::uint64_t offset)
{
	return transfer_all([&](std::size_t done) {
		return ::pread(fd, data + done, length - done, static_cast<off_t>(offset + done));
	}, length);
}

std::uint64_t device_size(int fd)
{
	off_t end = ::lseek(fd, 0, SEEK_END);
	return end < 0 ? 0 : static_cast<std::uint64_t>(end);
}

// Writes a pattern over the whole disk with O_DIRECT and makes it the model.
std::string fill(Disk &disk, std::uint64_t seed)
{
	UniqueFd fd(::open(disk.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
	if (!fd) {
		return "open " + disk.path + ": " + std::strerror(errno);
	}
	const std::uint64_t size = device_size(fd.get());
	disk.model.resize(size);
	for (std::uint64_t i = 0; i + 8 <= size; i += 8) {
		const std::uint64_t word = mix(seed << 40 ^ i);
		std::memcpy(disk.model.data() + i, &word, 8);
	}
	AlignedBuffer buffer(MiB);
	for (std::uint64_t at = 0; at < size; at += MiB) {
		const std::size_t n = static_cast<std::size_t>(std::min(MiB, size - at));
		std::memcpy(buffer.data, disk.model.data() + at, n);
		if (!pwrite_all(fd.get(), buffer.data, n, at)) {
			return "O_DIRECT write to " + disk.path + ": " + std::strerror(errno);
		}
	}
	return {};
}

// Reads [offset - 1 MiB, offset + length + 1 MiB) of the disk through
// `node` (the disk, or a partition of it starting `base` bytes in), rounded
// out to 4 KiB, with O_DIRECT or buffered, and compares it with the model.
// Through the node the copy wrote: O_DIRECT writes back that node's dirty
// pages first (a partition has a page cache of its own, apart from its
// disk's).
std::string verify(const Disk &disk, std::uint64_t offset, std::uint64_t length,
		   bool direct = true, const std::string &node = {}, std::uint64_t base = 0)
{
	const std::string &path = node.empty() ? disk.path : node;
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0)));
	if (!fd) {
		return "open " + path + ": " + std::strerror(errno);
	}
	const std::uint64_t size = std::min<std::uint64_t>(disk.model.size() - base,
							   device_size(fd.get()));
	std::uint64_t begin = offset > MiB ? offset - MiB : 0;
	begin -= begin % 4096;
	std::uint64_t end = std::min(size, offset + length + MiB);
	end += (4096 - end % 4096) % 4096;
	end = std::min(end, size);
	AlignedBuffer buffer(MiB);
	for (std::uint64_t at = begin; at < end; at += MiB) {
		const std::size_t n = static_cast<std::size_t>(std::min(MiB, end - at));
		if (!pread_all(fd.get(), buffer.data, n, at)) {
			return "read " + path + ": " + std::strerror(errno);
		}
		const std::uint8_t *expected = disk.model.data() + base + at;
		if (std::memcmp(buffer.data, expected, n) != 0) {
			std::size_t i = 0;
			while (buffer.data[i] == expected[i]) {
				i++;
			}
			return std::string(direct ? "O_DIRECT" : "buffered") + " read of " + path +
			       " differs from the expected data at byte " + std::to_string(at + i);
		}
	}
	return {};
}

// The helper's protocol, as the VFS module speaks it.
class Helper {
public:
	explicit Helper(const std::string &path)
	{
		sock_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		sockaddr_un address{};
		address.sun_family = AF_UNIX;
		std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
		if (!sock_ || ::connect(sock_.get(), reinterpret_cast<sockaddr *>(&address),
					sizeof(address)) != 0) {
			error_ = std::string("connect: ") + std::strerror(errno);
			return;
		}
		std::uint8_t buffer[COPYOFFLOAD_HELLO_SIZE];
		copyoffload_hello hello{.request_id = 1,
				       .min_version = COPYOFFLOAD_PROTOCOL_VERSION,
				       .max_version = COPYOFFLOAD_PROTOCOL_VERSION};
		copyoffload_encode_hello(buffer, &hello);
		std::uint8_t reply[COPYOFFLOAD_MAX_MESSAGE_SIZE];
		copyoffload_hello_reply decoded{};
		if (::send(sock_.get(), buffer, sizeof(buffer), MSG_NOSIGNAL) != sizeof(buffer) ||
		    receive(reply, sizeof(reply)) <= 0 ||
		    copyoffload_decode_hello_reply(reply, COPYOFFLOAD_HELLO_REPLY_SIZE, &decoded) !=
			    COPYOFFLOAD_DECODE_OK ||
		    decoded.status != 0) {
			error_ = "HELLO failed";
		}
	}

	[[nodiscard]] const std::string &error() const { return error_; }

	// The daemon's process id; 0 if unknown.
	[[nodiscard]] pid_t daemon_pid() const
	{
		ucred peer{};
		socklen_t size = sizeof(peer);
		return ::getsockopt(sock_.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0
			       ? peer.pid
			       : 0;
	}

	// Sends one COPY and waits for its reply; status -1: no valid reply.
	copyoffload_copy_reply copy(int source, int destination, std::uint64_t source_offset,
				    std::uint64_t destination_offset, std::uint64_t length,
				    std::uint32_t methods = ALL)
	{
		copyoffload_copy_reply result{};
		result.status = -1;
		copyoffload_copy_request request{};
		request.request_id = ++id_;
		request.src_offset = source_offset;
		request.dst_offset = destination_offset;
		request.length = length;
		request.methods = methods;
		std::uint8_t buffer[COPYOFFLOAD_COPY_SIZE];
		copyoffload_encode_copy_request(buffer, &request);
		iovec io{buffer, sizeof(buffer)};
		int fds[2] = {source, destination};
		alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))]{};
		msghdr message{};
		message.msg_iov = &io;
		message.msg_iovlen = 1;
		message.msg_control = control;
		message.msg_controllen = sizeof(control);
		cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
		std::memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
		if (::sendmsg(sock_.get(), &message, MSG_NOSIGNAL) != sizeof(buffer)) {
			return result;
		}
		std::uint8_t reply[COPYOFFLOAD_MAX_MESSAGE_SIZE];
		const ssize_t n = receive(reply, sizeof(reply));
		copyoffload_copy_reply decoded{};
		if (n > 0 && copyoffload_decode_copy_reply(reply, static_cast<std::size_t>(n),
							   &decoded) == COPYOFFLOAD_DECODE_OK &&
		    decoded.request_id == request.request_id) {
			result = decoded;
		}
		return result;
	}

private:
	ssize_t receive(std::uint8_t *buffer, std::size_t size)
	{
		pollfd p{sock_.get(), POLLIN, 0};
		if (::poll(&p, 1, 120000) != 1) {
			return -1;
		}
		return ::recv(sock_.get(), buffer, size, 0);
	}

	UniqueFd sock_;
	std::string error_;
	std::uint64_t id_ = 1;
};

struct Expect {
	int status = 0;
	std::uint64_t device = 0;
	std::uint64_t read_write = 0;
};

std::string describe_reply(const copyoffload_copy_reply &r)
{
	return "status " + errno_text(r.status) + ", bytes " + std::to_string(r.bytes_done) +
	       " (device " + std::to_string(r.bytes_by_method[COPYOFFLOAD_METHOD_DEVICE]) +
	       ", read_write " + std::to_string(r.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE]) +
	       ", clone " + std::to_string(r.bytes_by_method[COPYOFFLOAD_METHOD_CLONE]) +
	       ", copy_file_range " +
	       std::to_string(r.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE]) + ")";
}

std::string check_reply(const copyoffload_copy_reply &r, const Expect &expect)
{
	const std::uint64_t total = expect.device + expect.read_write;
	if (r.status != expect.status || r.bytes_done != total ||
	    r.bytes_by_method[COPYOFFLOAD_METHOD_DEVICE] != expect.device ||
	    r.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE] != expect.read_write) {
		return "got " + describe_reply(r) + "; expected status " +
		       errno_text(expect.status) + ", device " + std::to_string(expect.device) +
		       ", read_write " + std::to_string(expect.read_write);
	}
	return {};
}

UniqueFd open_device(const std::string &path, int flags = O_RDWR)
{
	return UniqueFd(::open(path.c_str(), flags | O_CLOEXEC));
}

// Partition `path` (e.g. /dev/nvme0n3p1) starts this many bytes into its disk.
std::uint64_t partition_start(const std::string &path)
{
	const std::string name = path.substr(path.rfind('/') + 1);
	std::string disk = name.substr(0, name.rfind('p'));
	FILE *f = std::fopen(("/sys/block/" + disk + "/" + name + "/start").c_str(), "r");
	unsigned long long sectors = 0;
	if (f != nullptr) {
		if (std::fscanf(f, "%llu", &sectors) != 1) {
			sectors = 0;
		}
		std::fclose(f);
	}
	return sectors * 512;
}

// A copy through the helper between offsets of (possibly partition)
// descriptors: checks the reply, applies it to the model, verifies.
struct Endpoint {
	Disk *disk;
	std::string path;      // the node the descriptor is opened from
	std::uint64_t base = 0; // where that node starts on the disk
};

std::string helper_copy(Helper &helper, const Endpoint &source, std::uint64_t source_offset,
			const Endpoint &destination, std::uint64_t destination_offset,
			std::uint64_t length, const Expect &expect, std::uint32_t methods = ALL)
{
	UniqueFd src = open_device(source.path, O_RDONLY);
	UniqueFd dst = open_device(destination.path, O_RDWR);
	if (!src || !dst) {
		return std::string("open: ") + std::strerror(errno);
	}
	const copyoffload_copy_reply reply = helper.copy(src.get(), dst.get(), source_offset,
							 destination_offset, length, methods);
	if (std::string why = check_reply(reply, expect); !why.empty()) {
		return why;
	}
	if (reply.bytes_done > 0) {
		std::memmove(destination.disk->model.data() + destination.base + destination_offset,
			     source.disk->model.data() + source.base + source_offset,
			     reply.bytes_done);
	}
	return verify(*destination.disk, destination_offset, length, true, destination.path,
		      destination.base);
}

// Runs the tool and returns what it printed.
std::string run_tool(const std::string &tool, const std::vector<std::string> &arguments)
{
	std::string command = tool;
	for (const std::string &argument : arguments) {
		command += " '" + argument + "'";
	}
	std::string output;
	FILE *pipe = ::popen((command + " 2>&1").c_str(), "r");
	if (pipe == nullptr) {
		return output;
	}
	char buffer[4096];
	std::size_t n;
	while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
		output.append(buffer, n);
	}
	::pclose(pipe);
	return output;
}

std::string expect_contains(const std::string &text, const std::vector<std::string> &needles)
{
	for (const std::string &needle : needles) {
		if (text.find(needle) == std::string::npos) {
			return "no '" + needle + "' in: " + text.substr(0, 1500);
		}
	}
	return {};
}

// A congruent range: the device copies the destination's whole pages (or
// blocks, if larger), the head and tail around them are read and written.
Expect split(std::uint64_t destination_offset, std::uint64_t length, std::uint64_t unit = 4096)
{
	const std::uint64_t head = std::min(length, (unit - destination_offset % unit) % unit);
	const std::uint64_t tail = (length - head) % unit;
	return {0, length - head - tail, head + tail};
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 3) {
		std::fprintf(stderr, "usage: %s SOCKET COPYOFFLOAD_TOOL\n", argv[0]);
		return 2;
	}
	const std::string socket_path = argv[1];
	const std::string tool = argv[2];

	Disk n1{"/dev/nvme0n1", {}}, n2{"/dev/nvme0n2", {}}, n3{"/dev/nvme0n3", {}};
	Disk sda{"/dev/sda", {}}, sdb{"/dev/sdb", {}};
	std::uint64_t seed = 1;
	for (Disk *disk : {&n1, &n2, &n3, &sda, &sdb}) {
		report("setup: fill " + disk->path, fill(*disk, seed++));
	}
	if (failed != 0) {
		return 1;
	}
	const Endpoint e1{&n1, n1.path}, e2{&n2, n2.path};
	const Endpoint p1{&n3, "/dev/nvme0n3p1", partition_start("/dev/nvme0n3p1")};
	const Endpoint p2{&n3, "/dev/nvme0n3p2", partition_start("/dev/nvme0n3p2")};
	const Endpoint ea{&sda, sda.path}, eb{&sdb, sdb.path};

	// Without a helper its cases fail one by one; the device layer's run.
	Helper helper(socket_path);
	report("helper: HELLO", helper.error());

	// --- NVMe ------------------------------------------------------------
	// n1: 512-byte blocks, at most 3 ranges of 8 and 20 blocks per command.
	report("nvme: probe shows Copy and the namespace limits",
	       expect_contains(run_tool(tool, {"probe", "--json", n1.path}),
			       {"\"copy\": true", "\"nvme oncs\": \"0x", "(Copy: yes)",
				"\"nvme mssrl\": \"8 blocks per range\"",
				"\"nvme mcl\": \"20 blocks per command\"",
				"\"nvme msrc\": \"2 (3 ranges per command)\"",
				"io_uring URING_CMD on /dev/ng0n1", "\"in use\": \"no\""}));
	report("nvme: aligned 1 MiB within a namespace, 103 Copy commands",
	       helper_copy(helper, e1, 0, e1, 16 * MiB, MiB, {0, MiB, 0}));
	report("nvme: unaligned head and tail copied, blocks between by the device",
	       helper_copy(helper, e1, 3 * 4096 + 100, e1, 20 * MiB + 100, MiB + 333,
			   split(20 * MiB + 100, MiB + 333)));
	report("nvme: offsets congruent modulo the block only: the device still copies",
	       helper_copy(helper, e1, 3 * 512, e1, 17 * MiB + 5 * 512, 300 * KiB + 7,
			   split(17 * MiB + 5 * 512, 300 * KiB + 7)));
	report("nvme: offsets not congruent modulo the block: all read_write",
	       helper_copy(helper, e1, 1, e1, 24 * MiB + 2, 64 * KiB, {0, 0, 64 * KiB}));
	report("nvme: range inside one block: read_write",
	       helper_copy(helper, e1, 5000, e1, 25 * MiB + 5000 % 512, 100, {0, 0, 100}));
	// n2: 4096-byte blocks, 2 ranges of 4 blocks per command (MSRC binds).
	report("nvme: 4 KiB blocks, 2 MiB + 12 KiB aligned, 65 commands of 8 blocks",
	       helper_copy(helper, e2, 4096, e2, 8 * MiB, 2 * MiB + 12 * KiB,
			   {0, 2 * MiB + 12 * KiB, 0}));
	report("nvme: 4 KiB blocks, 512-aligned but not 4 KiB-aligned head and tail",
	       helper_copy(helper, e2, 4096 + 512, e2, 12 * MiB + 512, MiB,
			   split(12 * MiB + 512, MiB)));
	// n3: partitions p1 and p2 of one namespace; LBAs are the namespace's.
	report("nvme: partition to partition of one namespace",
	       helper_copy(helper, p1, 777, p2, 2 * MiB + 777, 5 * MiB + 4321,
			   split(2 * MiB + 777, 5 * MiB + 4321)));
	report("nvme: whole namespace to its partition",
	       helper_copy(helper, Endpoint{&n3, n3.path}, 20 * MiB, p1, 10 * MiB, 3 * MiB,
			   {0, 3 * MiB, 0}));
	// n1 -> n2: two namespaces; format 0 cannot, so the data is copied.
	report("nvme: across namespaces falls back to read_write",
	       helper_copy(helper, e1, 4 * MiB, e2, MiB, 3 * MiB, {0, 0, 3 * MiB}));

	{
		// The page cache stays coherent: a dirty page of the source is
		// written back before the device reads, and a cached page of the
		// destination is dropped after it writes.
		std::string why;
		UniqueFd buffered = open_device(n1.path);
		std::vector<std::uint8_t> data(64 * KiB);
		for (std::size_t i = 0; i < data.size(); i++) {
			data[i] = static_cast<std::uint8_t>(mix(i) >> 7);
		}
		std::vector<std::uint8_t> cached(64 * KiB);
		if (!pwrite_all(buffered.get(), data.data(), data.size(), 2 * MiB) ||
		    !pread_all(buffered.get(), cached.data(), cached.size(), 28 * MiB)) {
			why = "buffered I/O failed";
		} else {
			std::memcpy(n1.model.data() + 2 * MiB, data.data(), data.size());
			why = helper_copy(helper, e1, 2 * MiB, e1, 28 * MiB, 64 * KiB, {0, 64 * KiB, 0});
			if (why.empty()) {
				why = verify(n1, 28 * MiB, 64 * KiB, false);
			}
		}
		report("nvme: page cache written back before and dropped after", why);
	}

	{
		// The device layer itself, for both transports.
		std::string why;
		UniqueFd fd = open_device(n1.path);
		for (NvmeTransport transport : {NvmeTransport::automatic, NvmeTransport::ioctl_only}) {
			const bool uring = transport == NvmeTransport::automatic;
			const std::uint64_t from = uring ? 5 * MiB : 6 * MiB;
			const std::uint64_t to = uring ? 29 * MiB : 30 * MiB;
			auto session = DeviceSession::open(fd.get(), fd.get(), from, to, MiB,
							   {transport});
			if (!session || session.value()->copier() == nullptr) {
				why = session ? session.value()->unavailable_reason()
					      : session.error().reason;
				break;
			}
			const std::string how = session.value()->copier()->describe();
			const std::string wanted = uring ? "io_uring URING_CMD on /dev/ng0n1"
							 : "NVME_IOCTL_IO64_CMD";
			if (how.find(wanted) == std::string::npos) {
				why = "transport: " + how;
				break;
			}
			DeviceBackend backend(session.value());
			BackendProgress progress =
				backend.copy_slice({fd.get(), fd.get(), from, to, MiB});
			if (progress.error != 0 || progress.bytes != MiB) {
				why = how + ": " + errno_text(progress.error) + " after " +
				      std::to_string(progress.bytes) + ": " + backend.last_reason();
				break;
			}
			std::memmove(n1.model.data() + to, n1.model.data() + from, MiB);
			if (why = verify(n1, to, MiB); !why.empty()) {
				break;
			}
		}
		report("nvme: device layer copies through io_uring and through the ioctl", why);
	}

	{
		// A command over the namespace's limits is refused by the
		// controller, and nothing changes.
		std::string why;
		UniqueFd fd = open_device(n1.path);
		auto device = inspect_block_device(fd.get());
		auto ns = device ? NvmeNamespace::open(device.value(), fd.get(),
						       NvmeTransport::automatic)
				 : Result<std::unique_ptr<NvmeNamespace>>(device.error());
		if (!ns) {
			why = ns.error().reason;
		} else {
			NvmeCopyLimits too_many = *ns.value()->support().limits;
			too_many.ranges += 1; // MSRC + 2 ranges
			too_many.command_blocks = too_many.range_blocks * too_many.ranges;
			auto commands = plan_nvme_copy(0, 31 * MiB / 512,
						       too_many.blocks_per_command(), too_many);
			CommandsOutcome outcome = ns.value()->run(commands);
			if (outcome.completed != 0 || outcome.error == 0) {
				why = "the controller accepted " + std::to_string(commands[0].ranges.size()) +
				      " ranges";
			} else {
				why = verify(n1, 31 * MiB, MiB);
			}
		}
		report("nvme: a command over MSRC is refused, data unchanged", why);
	}

	// --- refusals ----------------------------------------------------------
	report("refused: mounted device (EBUSY)",
	       [&] {
		       UniqueFd fd = open_device("/dev/nvme0n4");
		       return check_reply(helper.copy(fd.get(), fd.get(), 0, 4 * MiB, MiB),
					  {EBUSY, 0, 0});
	       }());
	report("refused: device held open with O_EXCL (EBUSY), then copied",
	       [&] {
		       std::string why;
		       {
			       UniqueFd holder = open_device(n1.path, O_RDONLY | O_EXCL);
			       UniqueFd fd = open_device(n1.path);
			       why = check_reply(helper.copy(fd.get(), fd.get(), 0, 8 * MiB, 4096),
						 {EBUSY, 0, 0});
		       }
		       return why.empty() ? helper_copy(helper, e1, 0, e1, 8 * MiB, 4096,
							{0, 4096, 0})
					  : why;
	       }());
	report("refused: source range past the device's end (ENODATA)",
	       [&] {
		       UniqueFd fd = open_device(n2.path);
		       return check_reply(helper.copy(fd.get(), fd.get(), 16 * MiB - 4096, 0, 8192),
					  {ENODATA, 0, 0});
	       }());
	report("refused: destination range past the device's end (ENOSPC)",
	       [&] {
		       UniqueFd fd = open_device(n2.path);
		       return check_reply(helper.copy(fd.get(), fd.get(), 0, 16 * MiB - 4096, 8192),
					  {ENOSPC, 0, 0});
	       }());
	report("refused: overlapping ranges of one namespace (EINVAL)",
	       [&] {
		       UniqueFd fd = open_device(n1.path);
		       return check_reply(helper.copy(fd.get(), fd.get(), 0, 512, 4096),
					  {EINVAL, 0, 0});
	       }());
	report("refused: a partition overlapping its namespace's range (EINVAL)",
	       [&] {
		       UniqueFd whole = open_device(n3.path);
		       UniqueFd part = open_device(p1.path);
		       return check_reply(helper.copy(whole.get(), part.get(), p1.base + 4096, 0,
						      8192),
					  {EINVAL, 0, 0});
	       }());
	report("refused: NVMe to SCSI (EBADF)",
	       [&] {
		       UniqueFd a = open_device(n1.path, O_RDONLY);
		       UniqueFd b = open_device(sda.path);
		       return check_reply(helper.copy(a.get(), b.get(), 0, 0, 4096), {EBADF, 0, 0});
	       }());
	report("refused: regular file to block device (EBADF)",
	       [&] {
		       UniqueFd file(::open("/tmp/regular", O_RDWR | O_CREAT | O_TRUNC, 0600));
		       std::vector<std::uint8_t> data(8192, 1);
		       pwrite_all(file.get(), data.data(), data.size(), 0);
		       UniqueFd b = open_device(n1.path);
		       return check_reply(helper.copy(file.get(), b.get(), 0, 0, 4096),
					  {EBADF, 0, 0});
	       }());
	report("refused: destination open read-only (EBADF)",
	       [&] {
		       UniqueFd a = open_device(n1.path, O_RDONLY);
		       UniqueFd b = open_device(n1.path, O_RDONLY);
		       return check_reply(helper.copy(a.get(), b.get(), 0, MiB, 4096),
					  {EBADF, 0, 0});
	       }());
	report("refused: methods without device (EOPNOTSUPP)",
	       [&] {
		       UniqueFd fd = open_device(n1.path);
		       return check_reply(helper.copy(fd.get(), fd.get(), 0, MiB, 4096, RW_BIT),
					  {EOPNOTSUPP, 0, 0});
	       }());
	report("device only: an unaligned range fails (EINVAL), an aligned one is copied",
	       [&] {
		       UniqueFd fd = open_device(n1.path);
		       std::string why = check_reply(
			       helper.copy(fd.get(), fd.get(), 100, 9 * MiB + 100, 4096, DEVICE_BIT),
			       {EINVAL, 0, 0});
		       return why.empty() ? helper_copy(helper, e1, 0, e1, 9 * MiB, 8192,
							{0, 8192, 0}, DEVICE_BIT)
					  : why;
	       }());

	// --- SCSI --------------------------------------------------------------
	for (const Disk *disk : {&sda, &n1}) {
		// For the log: what the devices report.
		UniqueFd fd = open_device(disk->path, O_RDONLY);
		DeviceProbe probe = probe_block_device(fd.get());
		for (const auto &[name, value] : probe.facts) {
			std::printf("blockdev guest: %s: %s: %s\n", disk->path.c_str(), name.c_str(),
				    value.c_str());
		}
		std::printf("blockdev guest: %s: device copy: %s\n", disk->path.c_str(),
			    probe.detail.c_str());
	}
	{
		std::string why;
		UniqueFd a = open_device(sda.path);
		UniqueFd b = open_device(sdb.path);
		// 40 MiB in one slice: more than one EXTENDED COPY can carry
		// (65535 blocks), so the copier sends two.
		auto session = DeviceSession::open(a.get(), b.get(), 0, 16 * MiB, 40 * MiB);
		if (!session || session.value()->copier() == nullptr) {
			why = session ? session.value()->unavailable_reason() : session.error().reason;
		} else {
			DeviceBackend backend(session.value());
			BackendProgress progress =
				backend.copy_slice({a.get(), b.get(), 0, 16 * MiB, 40 * MiB});
			if (progress.error != 0 || progress.bytes != 40 * MiB) {
				why = errno_text(progress.error) + " after " +
				      std::to_string(progress.bytes) + ": " + backend.last_reason();
			} else {
				std::memcpy(sdb.model.data() + 16 * MiB, sda.model.data(), 40 * MiB);
				why = verify(sdb, 16 * MiB, 40 * MiB);
			}
		}
		report("scsi: device layer, 40 MiB across logical units in two EXTENDED COPY commands", why);
	}
	report("scsi: probe shows the copy manager's parameters",
	       expect_contains(run_tool(tool, {"probe", "--json", sda.path}),
			       {"\"copy\": true", "\"scsi max segment descriptors\": \"1\"",
				"\"scsi descriptor types\": \"02h e4h\"",
				"\"scsi naa designator\": \"6"}));
	report("scsi: 9 MiB within one logical unit",
	       helper_copy(helper, ea, 0, ea, 40 * MiB, 9 * MiB, {0, 9 * MiB, 0}));
	report("scsi: across logical units, unaligned head and tail",
	       helper_copy(helper, ea, 1234, eb, 3 * MiB + 1234 % 512, 2 * MiB + 99,
			   split(3 * MiB + 1234 % 512, 2 * MiB + 99)));
	report("scsi: page cache dropped after the copy",
	       [&] {
		       UniqueFd buffered = open_device(sdb.path);
		       std::vector<std::uint8_t> cached(MiB);
		       if (!pread_all(buffered.get(), cached.data(), cached.size(), 60 * MiB)) {
			       return std::string("buffered read failed");
		       }
		       std::string why = helper_copy(helper, ea, 5 * MiB, eb, 60 * MiB, MiB,
						     {0, MiB, 0});
		       return why.empty() ? verify(sdb, 60 * MiB, MiB, false) : why;
	       }());

	// --- privileges ----------------------------------------------------------
	// The claims and the NVMe opens above were root's for files: each on a
	// short-lived thread, so every thread of the daemon still writes as
	// "nobody" (ext4 keeps its reserved blocks for uid 0).
	report("every thread of copyoffloadd still has file-system uid and gid 65534",
	       [&]() -> std::string {
		       const pid_t pid = helper.daemon_pid();
		       const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
		       DIR *dir = pid > 0 ? ::opendir(tasks.c_str()) : nullptr;
		       if (dir == nullptr) {
			       return "cannot list " + tasks;
		       }
		       std::string why;
		       int threads = 0;
		       for (dirent *task; (task = ::readdir(dir)) != nullptr && why.empty();) {
			       if (task->d_name[0] == '.') {
				       continue;
			       }
			       threads++;
			       const std::string status_path = tasks + "/" + task->d_name + "/status";
			       std::FILE *file = std::fopen(status_path.c_str(), "r");
			       std::string status;
			       char buffer[4096];
			       for (std::size_t got; file != nullptr &&
						     (got = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) {
				       status.append(buffer, got);
			       }
			       if (file != nullptr) {
				       std::fclose(file);
			       }
			       if (status.find("Uid:\t0\t0\t0\t65534\n") == std::string::npos ||
				   status.find("Gid:\t0\t0\t0\t65534\n") == std::string::npos) {
				       why = "thread " + std::string(task->d_name) + ":\n" + status;
			       }
		       }
		       ::closedir(dir);
		       return why.empty() && threads < 3 ? "fewer threads than expected" : why;
	       }());

	// --- everything, whole ------------------------------------------------
	{
		// Partitions cache apart from their disk: their dirty pages go
		// to the devices first.
		::sync();
		std::string why;
		for (const Disk *disk : {&n1, &n2, &n3, &sda, &sdb}) {
			if (why = verify(*disk, 0, disk->model.size()); !why.empty()) {
				break;
			}
		}
		report("every device holds exactly the expected data", why);
	}
	std::printf("blockdev guest: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
