// The worker pool for real: threads, each worker's epoll and io_uring
// ring, the scheduler spreading one copy's pieces over the workers, and
// the reply from whichever worker finished the last piece. Over a socket
// pair, as smbd would talk to the daemon.

#include "connection.hpp"
#include "preallocation.hpp"
#include "worker_pool.hpp"

#include <dirent.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <atomic>
#include <fstream>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;
using namespace test_support::methods;

namespace {

const Logger quiet(LogLevel::error, -1);

struct Client {
	UniqueFd socket;

	void send(const std::uint8_t *data, std::size_t size, const std::vector<int> &fds = {})
	{
		send_with_descriptors(socket.get(), data, size, fds);
	}

	// The next message, waiting up to 10 s.
	std::vector<std::uint8_t> receive()
	{
		pollfd readable{socket.get(), POLLIN, 0};
		assert_int_equal(::poll(&readable, 1, 10000), 1);
		std::vector<std::uint8_t> buf(COPYOFFLOAD_MAX_MESSAGE_SIZE);
		ssize_t n = ::recv(socket.get(), buf.data(), buf.size(), 0);
		assert_true(n > 0);
		buf.resize(static_cast<std::size_t>(n));
		return buf;
	}

	void hello()
	{
		std::uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
		copyoffload_hello hello{1, COPYOFFLOAD_PROTOCOL_VERSION, COPYOFFLOAD_PROTOCOL_VERSION};
		send(buf, copyoffload_encode_hello(buf, &hello));
		auto answer = receive();
		copyoffload_hello_reply reply{};
		assert_int_equal(copyoffload_decode_hello_reply(answer.data(), answer.size(), &reply),
				 COPYOFFLOAD_DECODE_OK);
		assert_int_equal(reply.status, 0);
	}

	void send_copy(const copyoffload_copy_request &request, const std::vector<int> &fds)
	{
		std::uint8_t buf[COPYOFFLOAD_COPY_SIZE];
		send(buf, copyoffload_encode_copy_request(buf, &request), fds);
	}

	// The next copy reply within `ms`, if one comes.
	std::optional<copyoffload_copy_reply> reply_within(int ms)
	{
		pollfd readable{socket.get(), POLLIN, 0};
		if (::poll(&readable, 1, ms) != 1) {
			return std::nullopt;
		}
		auto answer = receive();
		copyoffload_copy_reply reply{};
		assert_int_equal(copyoffload_decode_copy_reply(answer.data(), answer.size(), &reply),
				 COPYOFFLOAD_DECODE_OK);
		return reply;
	}

	copyoffload_copy_reply copy(const copyoffload_copy_request &request,
				    const std::vector<int> &fds)
	{
		std::uint8_t buf[COPYOFFLOAD_COPY_SIZE];
		send(buf, copyoffload_encode_copy_request(buf, &request), fds);
		auto answer = receive();
		copyoffload_copy_reply reply{};
		assert_int_equal(copyoffload_decode_copy_reply(answer.data(), answer.size(), &reply),
				 COPYOFFLOAD_DECODE_OK);
		assert_true(reply.request_id == request.request_id);
		return reply;
	}
};

// The daemon's end of a socket pair as a Connection, in `connection`;
// the other end, playing smbd, in `client`.
void connect_pair(ShareRegistry &shares, std::shared_ptr<Connection> &connection, Client &client)
{
	int ends[2];
	assert_int_equal(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends), 0);
	connection = std::make_shared<Connection>(UniqueFd(ends[0]),
						  PeerCredentials{::getpid(), 0, 0}, quiet, shares);
	client.socket = UniqueFd(ends[1]);
}

struct Fixture {
	ShareRegistry shares;
	std::atomic<int> notified{0};
	WorkerPool pool;
	Client client;
	std::shared_ptr<Connection> connection;

	explicit Fixture(unsigned workers)
		: pool(PoolOptions{.workers = workers, .segment_size = 64 << 10, .queue_depth = 4},
		       quiet, [this] { notified++; })
	{
		connect_pair(shares, connection, client);
		pool.adopt(connection);
		client.hello();
	}
};

// Waits up to 10 s for `condition`.
template <typename Condition>
bool eventually(Condition condition)
{
	for (int i = 0; i < 2000; i++) {
		if (condition()) {
			return true;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return condition();
}

void test_pieces_spread_and_one_reply(void **state)
{
	TempDir &dir = temp_dir(state);
	Fixture f(2);
	// 1 MiB + 123 bytes in 64 KiB pieces: 17 pieces over two workers,
	// through io_uring (read/write only), then copy_file_range.
	const std::size_t size = (1 << 20) + 123;
	auto bytes = pattern(size, 11);
	write_file(dir.file("src"), bytes);
	for (std::uint32_t methods : {bit(RW), bit(CFR)}) {
		write_file(dir.file("dst"), {});
		UniqueFd source = open_file(dir.file("src"), O_RDONLY);
		UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
		copyoffload_copy_request request = copy_request(0, 100, size, methods);
		request.request_id = methods;
		copyoffload_copy_reply reply =
			f.client.copy(request, {source.get(), destination.get()});
		assert_int_equal(reply.status, 0);
		assert_true(reply.bytes_done == size);
		auto copied = read_file(dir.file("dst"));
		assert_int_equal(copied.size(), 100 + size);
		assert_memory_equal(copied.data() + 100, bytes.data(), size);
	}
	assert_true(eventually([&] { return f.pool.jobs_in_flight() == 0; }));
	assert_int_equal(f.pool.connections(), 1);
}

void test_handles_through_the_pool(void **state)
{
	TempDir &dir = temp_dir(state);
	Fixture f(2);
	auto bytes = pattern(300000, 4);
	write_file(dir.file("src"), bytes);
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	// The first chunk registers the pair, the next ones only name it,
	// as smbd's module does for the chunks of one copy.
	for (std::uint64_t chunk = 0; chunk < 3; chunk++) {
		copyoffload_copy_request request =
			copy_request(chunk * 100000, chunk * 100000, 100000, bit(CFR) | bit(RW));
		request.request_id = 10 + chunk;
		request.handle = 42;
		std::vector<int> fds;
		if (chunk == 0) {
			fds = {source.get(), destination.get()};
		}
		copyoffload_copy_reply reply = f.client.copy(request, fds);
		assert_int_equal(reply.status, 0);
		assert_true(reply.bytes_done == 100000);
	}
	assert_true(read_file(dir.file("dst")) == bytes);

	std::uint8_t buf[COPYOFFLOAD_RELEASE_SIZE];
	copyoffload_release release{.request_id = 20, .handle = 42};
	f.client.send(buf, copyoffload_encode_release(buf, &release));
	copyoffload_copy_request after = copy_request(0, 0, 10, bit(CFR));
	after.request_id = 21;
	after.handle = 42;
	assert_int_equal(f.client.copy(after, {}).status, ESTALE);
}

void test_drain_and_disconnect(void **state)
{
	TempDir &dir = temp_dir(state);
	Fixture f(2);
	write_file(dir.file("src"), pattern(1000));
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);

	// A copy sent before the drain runs; one sent after it is refused.
	std::uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	copyoffload_copy_request before = copy_request(0, 0, 1000, bit(CFR));
	before.request_id = 1;
	f.client.send(buf, copyoffload_encode_copy_request(buf, &before),
		      {source.get(), destination.get()});
	f.pool.watch(true);
	f.pool.drain(4096);
	assert_true(eventually([&] { return f.pool.drained(); }));
	assert_true(f.notified.load() > 0);
	copyoffload_copy_request after = copy_request(0, 0, 1000, bit(CFR));
	after.request_id = 2;
	f.client.send(buf, copyoffload_encode_copy_request(buf, &after),
		      {source.get(), destination.get()});
	int answered = 0;
	for (int i = 0; i < 2; i++) {
		auto answer = f.client.receive();
		copyoffload_copy_reply reply{};
		assert_int_equal(copyoffload_decode_copy_reply(answer.data(), answer.size(), &reply),
				 COPYOFFLOAD_DECODE_OK);
		answered |= 1 << reply.request_id;
		assert_int_equal(reply.status, reply.request_id == 1 ? 0 : ESHUTDOWN);
	}
	assert_int_equal(answered, 0b110);
	assert_true(eventually([&] { return f.pool.jobs_in_flight() == 0; }));

	// The client goes: its worker closes the connection.
	f.client.socket.reset();
	assert_true(eventually([&] { return f.pool.connections() == 0; }));
	assert_true(eventually([&] { return f.connection.use_count() == 1; }));
}

// smbd reports its inline clones at tree disconnect and exits at once: the
// worker first sees the hangup with the report still queued. It counts the
// report and starts no copy for the client that left.
void test_messages_before_a_hangup_are_read(void **state)
{
	TempDir &dir = temp_dir(state);
	ShareRegistry shares;
	WorkerPool pool(PoolOptions{.workers = 1, .segment_size = 64 << 10, .queue_depth = 4},
			quiet, [] {});
	std::shared_ptr<Connection> connection;
	Client client;
	connect_pair(shares, connection, client);

	std::uint8_t buf[COPYOFFLOAD_MAX_REQUEST_SIZE];
	copyoffload_hello hello{1, COPYOFFLOAD_PROTOCOL_VERSION, COPYOFFLOAD_PROTOCOL_VERSION};
	client.send(buf, copyoffload_encode_hello(buf, &hello));
	copyoffload_share share = share_declaration(2, "left");
	client.send(buf, copyoffload_encode_share(buf, &share));
	copyoffload_cloned cloned{.request_id = 3, .share_id = 2, .copies = 4, .bytes = 4096};
	client.send(buf, copyoffload_encode_cloned(buf, &cloned));
	write_file(dir.file("src"), pattern(1000));
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
	copyoffload_copy_request copy = copy_request(0, 0, 1000, bit(CFR));
	copy.request_id = 4;
	copy.share_id = 2;
	client.send(buf, copyoffload_encode_copy_request(buf, &copy),
		    {source.get(), destination.get()});
	client.socket.reset();

	pool.adopt(connection);
	assert_true(eventually([&] { return pool.connections() == 0; }));
	const copyoffload_share_stats left = share_record(shares, "left");
	const copyoffload_method_stats &clone = left.slots[COPYOFFLOAD_METHOD_CLONE];
	assert_int_equal(clone.requests, 4);
	assert_int_equal(clone.bytes, 4096);
	assert_int_equal(left.slots[COPYOFFLOAD_STATS_TOTAL].requests, 4); // the COPY did not run
	assert_int_equal(read_file(dir.file("dst")).size(), 0);
}

// The reply of a copy that finished while another was in flight says BUSY
// (smbd then does not poll for its next reply); a lone copy's says it only
// where the daemon has a single CPU.
void test_replies_say_busy(void **state)
{
	TempDir &dir = temp_dir(state);
	Fixture f(2);
	cpu_set_t set;
	assert_int_equal(::sched_getaffinity(0, sizeof(set), &set), 0);
	const std::uint32_t lone_flags = CPU_COUNT(&set) < 2 ? COPYOFFLOAD_REPLY_BUSY : 0;

	const std::size_t large = 16 << 20; // 256 pieces: the small one is read while it runs
	write_file(dir.file("src"), pattern(large, 3));
	write_file(dir.file("dst"), {});
	write_file(dir.file("small"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDONLY);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
	UniqueFd small = open_file(dir.file("small"), O_WRONLY);

	std::uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	copyoffload_copy_request first = copy_request(0, 0, large, bit(RW));
	first.request_id = 1;
	f.client.send(buf, copyoffload_encode_copy_request(buf, &first),
		      {source.get(), destination.get()});
	copyoffload_copy_request second = copy_request(0, 0, 10, bit(CFR));
	second.request_id = 2;
	f.client.send(buf, copyoffload_encode_copy_request(buf, &second),
		      {source.get(), small.get()});

	std::vector<copyoffload_copy_reply> replies;
	for (int i = 0; i < 2; i++) {
		auto answer = f.client.receive();
		copyoffload_copy_reply reply{};
		assert_int_equal(copyoffload_decode_copy_reply(answer.data(), answer.size(), &reply),
				 COPYOFFLOAD_DECODE_OK);
		assert_int_equal(reply.status, 0);
		replies.push_back(reply);
	}
	// Whichever finished first had the other in flight. (The last may or
	// may not see the first counted still: a copy leaves the count just
	// after its reply.)
	assert_true(replies[0].request_id != replies[1].request_id);
	assert_int_equal(replies[0].flags, COPYOFFLOAD_REPLY_BUSY);

	// A copy alone.
	assert_true(eventually([&] { return f.pool.jobs_in_flight() == 0; }));
	copyoffload_copy_request third = copy_request(0, 0, 10, bit(CFR));
	third.request_id = 3;
	assert_int_equal(f.client.copy(third, {source.get(), small.get()}).flags, lone_flags);
}

// The threads of this process for which `matches(tid)` holds.
template <typename Predicate>
int threads_where(Predicate matches)
{
	int count = 0;
	DIR *tasks = ::opendir("/proc/self/task");
	assert_non_null(tasks);
	while (const dirent *entry = ::readdir(tasks)) {
		if (entry->d_name[0] != '.' && matches(static_cast<pid_t>(std::atoi(entry->d_name)))) {
			count++;
		}
	}
	::closedir(tasks);
	return count;
}

// A limited share's clone piece that falls back to copying (the clone
// refused, as ext4 and tmpfs do) books its data's time at the share's rate
// and goes on: its worker must not sleep for the limit, deaf to its
// connections, while the share's next piece waits instead. Two data
// extents in one piece: the second would wait for the first's time.
void test_refused_clone_books_instead_of_sleeping(void **state)
{
	TempDir &dir = temp_dir(state);
	const std::size_t size = 64 << 10, extent = 4096;
	write_file(dir.file("src"), {});
	write_file(dir.file("dst"), {});
	UniqueFd source = open_file(dir.file("src"), O_RDWR);
	UniqueFd destination = open_file(dir.file("dst"), O_WRONLY);
	if (::ioctl(destination.get(), FICLONE, source.get()) == 0) {
		skip(); // $TMPDIR clones: no piece falls back to copying
	}
	auto data = pattern(extent, 5);
	for (off_t at : {off_t{0}, off_t{32 << 10}}) {
		assert_int_equal(::pwrite(source.get(), data.data(), extent, at),
				 static_cast<ssize_t>(extent));
	}
	assert_int_equal(::ftruncate(source.get(), size), 0);

	Fixture f(1);
	const copyoffload_share share = share_declaration(
		7, "limited", {.order = {CLONE, CFR, RW}, .max_segment = size, .rate = 1 << 10});
	std::uint8_t buf[COPYOFFLOAD_SHARE_SIZE];
	f.client.send(buf, copyoffload_encode_share(buf, &share));
	copyoffload_copy_request request = copy_request(0, 0, size);
	request.share_id = 7;
	const auto started = std::chrono::steady_clock::now();
	copyoffload_copy_reply reply = f.client.copy(request, {source.get(), destination.get()});
	const auto took = std::chrono::steady_clock::now() - started;
	assert_int_equal(reply.status, 0);
	assert_true(reply.bytes_done == size);
	// At 1 KiB/s the second extent's wait would be 4 s.
	assert_true(took < std::chrono::seconds(2));
	auto copied = read_file(dir.file("dst"));
	assert_int_equal(copied.size(), size);
	assert_memory_equal(copied.data() + (32 << 10), data.data(), extent);

	// Both extents' time was booked: the share's next piece waits.
	bool changed = false;
	ShareBinding binding = f.shares.declare(share, changed);
	assert_true(binding.share->rate_limiter().ready_at() >
		    std::chrono::steady_clock::now() + std::chrono::seconds(5));
}

// Each worker, and only the workers, takes the pool's scheduling, and its
// nice value under either policy (the starvation guard lifts idle workers
// to SCHED_OTHER at that value); worker_threads() names them.
void test_workers_take_the_policy(void **)
{
	auto idle = [](pid_t tid) { return ::sched_getscheduler(tid) == SCHED_IDLE; };
	const int base = ::getpriority(PRIO_PROCESS, 0);
	auto niced = [base](pid_t tid) {
		errno = 0;
		const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
		return errno == 0 && nice == std::min(base + 3, 19);
	};
	{
		WorkerPool pool(PoolOptions{.workers = 2, .idle_policy = true, .nice = 3}, quiet,
				[] {});
		assert_true(eventually([&] { return threads_where(idle) == 2; }));
		assert_int_equal(threads_where(niced), 2);
		assert_int_equal(::sched_getscheduler(0), SCHED_OTHER);
		const std::vector<pid_t> workers = pool.worker_threads();
		assert_int_equal(workers.size(), 2);
		for (pid_t tid : workers) {
			assert_true(idle(tid));
		}
	}
	WorkerPool pool(PoolOptions{.workers = 2, .nice = 3}, quiet, [] {});
	assert_true(eventually([&] { return threads_where(niced) == 2; }));
	assert_int_equal(threads_where(idle), 0);
}

// A file whose inode lock a thread holds until release(): its write faults
// on a page a userfaultfd never fills, so a worker's copy_file_range into
// the file waits in the kernel as on a filesystem that hangs.
class LockedInode {
public:
	explicit LockedInode(const std::string &path)
		: file_(open_file(path, O_WRONLY)),
		  uffd_(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)))
	{
		if (!uffd_) { // unprivileged, or filtered (seccomp)
			print_message("userfaultfd: %s\n", std::strerror(errno));
			skip();
		}
		uffdio_api api{};
		api.api = UFFD_API;
		assert_int_equal(::ioctl(uffd_.get(), UFFDIO_API, &api), 0);
		page_ = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(page_ != MAP_FAILED);
		uffdio_register area{};
		area.range = {reinterpret_cast<std::uintptr_t>(page_), page_size};
		area.mode = UFFDIO_REGISTER_MODE_MISSING;
		assert_int_equal(::ioctl(uffd_.get(), UFFDIO_REGISTER, &area), 0);
		writer_ = std::thread([this] {
			[[maybe_unused]] auto ignored = ::pwrite(file_.get(), page_, page_size, 0);
		});
		pollfd faulted{uffd_.get(), POLLIN, 0};
		assert_int_equal(::poll(&faulted, 1, 5000), 1); // the writer holds the lock
	}
	~LockedInode()
	{
		release();
		::munmap(page_, page_size);
	}
	LockedInode(const LockedInode &) = delete;
	LockedInode &operator=(const LockedInode &) = delete;

	void release()
	{
		if (writer_.joinable()) {
			uffdio_zeropage zero{};
			zero.range = {reinterpret_cast<std::uintptr_t>(page_), page_size};
			assert_int_equal(::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &zero), 0);
			writer_.join();
		}
	}

private:
	static constexpr std::size_t page_size = 4096;
	UniqueFd file_;
	UniqueFd uffd_; // after file_: errno is the syscall's when it fails
	void *page_ = nullptr;
	std::thread writer_;
};

// Files for a copy in `dir`: a source of `size` bytes and an empty
// destination, opened.
std::pair<UniqueFd, UniqueFd> copy_files(const TempDir &dir, const std::string &name,
					 std::size_t size)
{
	write_file(dir.file(name + ".src"), pattern(size));
	write_file(dir.file(name + ".dst"), {});
	return {open_file(dir.file(name + ".src"), O_RDONLY),
		open_file(dir.file(name + ".dst"), O_WRONLY)};
}

copyoffload_copy_request numbered(std::uint64_t id, std::uint64_t length)
{
	copyoffload_copy_request request = copy_request(0, 0, length, bit(CFR));
	request.request_id = id;
	return request;
}

// A pool whose workers stall after 200 ms without progress (at most
// `max_workers` of them, 0: the default), with two clients, a and b, and
// directories on two filesystems: the one to stall (tmpfs, or $TMPDIR's
// with `stuck_in_tmp`) and another.
struct StallFixture {
	TempDir stuck_fs;
	TempDir other_fs;
	ShareRegistry shares;
	WorkerPool pool;
	Client a, b;
	std::shared_ptr<Connection> a_end, b_end;

	explicit StallFixture(unsigned workers, unsigned max_workers = 0, bool stuck_in_tmp = false)
		: stuck_fs(stuck_in_tmp ? TempDir() : TempDir("/dev/shm")),
		  other_fs(stuck_in_tmp ? TempDir("/dev/shm") : TempDir()),
		  pool(PoolOptions{.workers = workers, .queue_depth = 4,
				   .stall_timeout = std::chrono::milliseconds(200),
				   .max_workers = max_workers},
		       quiet, [] {})
	{
		struct stat stuck {}, other {};
		assert_int_equal(::stat(stuck_fs.path().c_str(), &stuck), 0);
		assert_int_equal(::stat(other_fs.path().c_str(), &other), 0);
		assert_true(stuck.st_dev != other.st_dev);
		connect_pair(shares, a_end, a);
		connect_pair(shares, b_end, b);
		pool.adopt(a_end);
		pool.adopt(b_end);
		a.hello();
		b.hello();
	}

	// Looks for stalls until one worker is stalled (up to 10 s).
	bool one_stalls()
	{
		return eventually([&] {
			pool.check_stalls(std::chrono::steady_clock::now());
			return pool.stalled_workers() == 1;
		});
	}
};

// Whether one of the pool's workers is in system call `number` now.
bool a_worker_is_in(const WorkerPool &pool, long number)
{
	for (pid_t thread : pool.worker_threads()) {
		std::ifstream file("/proc/self/task/" + std::to_string(thread) + "/syscall");
		long current = -1;
		if (file >> current && current == number) {
			return true;
		}
	}
	return false;
}

// A worker stuck in a piece of `length` bytes, in system call `stuck_in`:
// its connections go to a worker added in its place, copies elsewhere go
// on, copies on the stuck filesystem wait for it, and all of them complete
// once it goes again.
void hands_over(StallFixture &f, long stuck_in, std::uint64_t length = 4096)
{
	auto [stuck_src, stuck_dst] = copy_files(f.stuck_fs, "stuck", length);
	LockedInode lock(f.stuck_fs.file("stuck.dst"));
	f.a.send_copy(numbered(1, length), {stuck_src.get(), stuck_dst.get()});
	assert_true(f.one_stalls());
	assert_int_equal(f.pool.size(), 2);
	assert_true(a_worker_is_in(f.pool, stuck_in));

	// b was read by the stuck worker: its copy on the other filesystem is
	// answered, its copy on the stuck one waits.
	auto [other_src, other_dst] = copy_files(f.other_fs, "other", 4096);
	auto [held_src, held_dst] = copy_files(f.stuck_fs, "held", 4096);
	f.b.send_copy(numbered(2, 4096), {other_src.get(), other_dst.get()});
	auto elsewhere = f.b.reply_within(5000);
	assert_true(elsewhere.has_value() && elsewhere->request_id == 2 && elsewhere->status == 0);
	f.b.send_copy(numbered(3, 4096), {held_src.get(), held_dst.get()});
	assert_false(f.b.reply_within(300).has_value());

	lock.release();
	auto first = f.a.reply_within(5000);
	assert_true(first.has_value() && first->request_id == 1 && first->status == 0);
	auto held = f.b.reply_within(5000);
	assert_true(held.has_value() && held->request_id == 3 && held->status == 0);
	assert_true(eventually([&] { return f.pool.stalled_workers() == 0; }));
	assert_true(eventually([&] { return f.pool.jobs_in_flight() == 0; }));
}

void test_a_stalled_worker_hands_over(void **)
{
	StallFixture f(1);
	hands_over(f, SYS_copy_file_range);
}

// The same stall on ext4, where the copy's first piece reserves its
// destination's blocks before it copies: the fallocate waits for the inode
// lock, and the copy's filesystems are held as for any piece.
void test_a_worker_stalled_in_preallocation_hands_over(void **)
{
	skip_unless_preallocated(temp_base()); // before the fixture
	StallFixture f(1, 0, /*stuck_in_tmp=*/true);
	hands_over(f, SYS_fallocate, min_preallocation); // shorter: not reserved
}

// At shutdown, a connection that a stalled worker could not drain moves to
// a worker that has drained (no worker is added: two at most), which
// drains it on arrival: its later copies are refused.
void test_a_moved_connection_is_drained(void **)
{
	StallFixture f(2, 2); // a on worker 0, b on worker 1
	auto [stuck_src, stuck_dst] = copy_files(f.stuck_fs, "stuck", 4096);
	LockedInode lock(f.stuck_fs.file("stuck.dst"));
	f.b.send_copy(numbered(1, 4096), {stuck_src.get(), stuck_dst.get()});
	assert_true(eventually([&] { return f.pool.jobs_in_flight() == 1; }));
	f.pool.watch(true);
	f.pool.drain(4096); // worker 0 drains a; worker 1, in the piece, cannot
	// Worker 0 has drained once it answers one of a's copies ESHUTDOWN
	// (one sent before it drained counts as sent before the signal).
	auto [a_src, a_dst] = copy_files(f.other_fs, "a", 4096);
	bool refused = false;
	for (std::uint64_t id = 2; id < 100 && !refused; id++) {
		f.a.send_copy(numbered(id, 4096), {a_src.get(), a_dst.get()});
		auto reply = f.a.reply_within(5000);
		assert_true(reply.has_value());
		refused = reply->status == ESHUTDOWN;
	}
	assert_true(refused);

	assert_true(f.one_stalls()); // b moves to worker 0: none is added
	assert_int_equal(f.pool.size(), 2);
	// What waits on b when worker 0 adopts it counts as sent before the
	// signal: send after that.
	std::this_thread::sleep_for(std::chrono::milliseconds(200));
	auto [late_src, late_dst] = copy_files(f.other_fs, "late", 4096);
	f.b.send_copy(numbered(100, 4096), {late_src.get(), late_dst.get()});
	auto late = f.b.reply_within(5000);
	assert_true(late.has_value() && late->request_id == 100);
	assert_int_equal(late->status, ESHUTDOWN);
	// The stalled worker drains when it goes again; shutdown need not wait.
	assert_true(f.pool.drained());

	lock.release();
	auto first = f.b.reply_within(5000);
	assert_true(first.has_value() && first->request_id == 1 && first->status == 0);
	assert_true(eventually([&] { return f.pool.drained(); }));
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, make_temp_dir, remove_temp_dir)

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		WITH_DIR(test_pieces_spread_and_one_reply),
		WITH_DIR(test_handles_through_the_pool),
		WITH_DIR(test_drain_and_disconnect),
		WITH_DIR(test_messages_before_a_hangup_are_read),
		WITH_DIR(test_replies_say_busy),
		WITH_DIR(test_refused_clone_books_instead_of_sleeping),
		cmocka_unit_test(test_workers_take_the_policy),
		cmocka_unit_test(test_a_stalled_worker_hands_over),
		cmocka_unit_test(test_a_worker_stalled_in_preallocation_hands_over),
		cmocka_unit_test(test_a_moved_connection_is_drained),
	};
	return cmocka_run_group_tests_name("copyoffloadd_worker_pool", tests, nullptr, nullptr);
}
