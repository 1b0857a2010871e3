// Shared bits of the copyoffloadd unit tests: cmocka from C++, a private
// temporary directory per test, and small file helpers.
#pragma once

// Include this after every other header: cmocka defines macros such as
// fail() and skip() that would clash with names in the standard library.

#include "copyoffload_protocol.h"
#include "preallocation.hpp"
#include "share_registry.hpp"
#include "unique_fd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

// cmocka.h needs these first.
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <csetjmp>
extern "C" { // cmocka.h does not declare C linkage itself
#include <cmocka.h>
}

namespace test_support {

// Short names for methods, masks and flags: `using namespace
// test_support::methods;`.
namespace methods {
inline constexpr auto CLONE = COPYOFFLOAD_METHOD_CLONE;
inline constexpr auto CFR = COPYOFFLOAD_METHOD_COPY_FILE_RANGE;
inline constexpr auto DEVICE = COPYOFFLOAD_METHOD_DEVICE;
inline constexpr auto RW = COPYOFFLOAD_METHOD_READ_WRITE;
inline constexpr std::uint32_t ALL = COPYOFFLOAD_METHODS_ALL;
inline constexpr std::uint32_t CLONE_ONLY = COPYOFFLOAD_COPY_CLONE_ONLY;
inline constexpr std::uint64_t MiB = std::uint64_t{1} << 20;
constexpr std::uint32_t bit(copyoffload_method m) { return COPYOFFLOAD_METHOD_BIT(m); }
} // namespace methods

// Where the tests make their files: $TMPDIR, or /tmp.
inline std::string temp_base()
{
	const char *tmpdir = std::getenv("TMPDIR");
	return tmpdir != nullptr ? tmpdir : "/tmp";
}

// Skips the test unless files under `directory` are preallocated (ext4).
// Call it before anything that needs destroying: skip() leaves the test by
// longjmp.
inline void skip_unless_preallocated(const std::string &directory)
{
	struct statfs fs{};
	if (::statfs(directory.c_str(), &fs) != 0 || !copyoffload::preallocation_pays(fs.f_type)) {
		print_message("%s is not on ext4: nothing to preallocate\n", directory.c_str());
		skip();
	}
}

// A fresh directory under temp_base(), removed with its contents.
class TempDir {
public:
	TempDir() : TempDir(temp_base()) {}
	// Under `base`: another filesystem than TMPDIR's, say.
	explicit TempDir(const std::string &base)
	{
		std::string pattern = base + "/copyoffload-test.XXXXXX";
		std::vector<char> buffer(pattern.begin(), pattern.end());
		buffer.push_back('\0');
		if (::mkdtemp(buffer.data()) == nullptr) {
			std::abort();
		}
		path_ = buffer.data();
	}
	~TempDir()
	{
		std::error_code ignored;
		std::filesystem::remove_all(path_, ignored);
	}
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;

	[[nodiscard]] std::string file(const std::string &name) const
	{
		return path_ + "/" + name;
	}
	[[nodiscard]] const std::string &path() const { return path_; }

private:
	std::string path_;
};

// cmocka setup/teardown handing each test its own TempDir as *state.
inline int make_temp_dir(void **state)
{
	*state = std::make_unique<TempDir>().release();
	return 0;
}

inline int remove_temp_dir(void **state)
{
	std::unique_ptr<TempDir> owned(static_cast<TempDir *>(*state));
	return 0;
}

inline TempDir &temp_dir(void **state)
{
	return *static_cast<TempDir *>(*state);
}

// Deterministic, position-dependent bytes, so a shifted copy is noticed.
inline std::vector<unsigned char> pattern(std::size_t size, unsigned seed = 1)
{
	std::vector<unsigned char> bytes(size);
	std::uint32_t x = seed * 2654435761u + 1;
	for (std::size_t i = 0; i < size; i++) {
		x = x * 1103515245u + 12345u;
		bytes[i] = static_cast<unsigned char>(x >> 16);
	}
	return bytes;
}

inline void write_file(const std::string &path, const std::vector<unsigned char> &bytes)
{
	copyoffload::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	assert_true(fd.valid());
	std::size_t done = 0;
	while (done < bytes.size()) {
		ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
		assert_true(n > 0);
		done += static_cast<std::size_t>(n);
	}
}

inline std::vector<unsigned char> read_file(const std::string &path)
{
	copyoffload::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	assert_true(fd.valid());
	std::vector<unsigned char> bytes;
	unsigned char buffer[65536];
	for (;;) {
		ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
		assert_true(n >= 0);
		if (n == 0) {
			return bytes;
		}
		bytes.insert(bytes.end(), buffer, buffer + n);
	}
}

// Sends one packet with `descriptors` attached (SCM_RIGHTS), as smbd does.
inline void send_with_descriptors(int fd, const std::uint8_t *data, std::size_t size,
				  const std::vector<int> &descriptors)
{
	iovec iov{const_cast<std::uint8_t *>(data), size};
	msghdr header{};
	header.msg_iov = &iov;
	header.msg_iovlen = 1;
	std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * descriptors.size()));
	if (!descriptors.empty()) {
		header.msg_control = control.data();
		header.msg_controllen = control.size();
		cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * descriptors.size());
		std::memcpy(CMSG_DATA(cmsg), descriptors.data(), sizeof(int) * descriptors.size());
	}
	assert_int_equal(::sendmsg(fd, &header, 0), static_cast<ssize_t>(size));
}

inline copyoffload::UniqueFd open_file(const std::string &path, int flags)
{
	copyoffload::UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0600));
	assert_true(fd.valid());
	return fd;
}

// A COPY request as the decoder would hand it to the engine.
inline copyoffload_copy_request copy_request(std::uint64_t src, std::uint64_t dst,
					     std::uint64_t length,
					     std::uint32_t methods = COPYOFFLOAD_METHODS_ALL,
					     std::uint32_t flags = 0)
{
	copyoffload_copy_request r{};
	r.request_id = 77;
	r.src_offset = src;
	r.dst_offset = dst;
	r.length = length;
	r.methods = methods;
	r.flags = flags;
	return r;
}

// A valid SHARE declaration of share `name` under `id`.
struct SharePolicy {
	std::vector<copyoffload_method> order{COPYOFFLOAD_METHOD_COPY_FILE_RANGE,
					      COPYOFFLOAD_METHOD_READ_WRITE};
	std::uint64_t max_segment = 256 << 10;
	std::uint64_t rate = 0;  // bytes per second
	std::uint32_t limit = 0; // concurrent copies
};

inline copyoffload_share share_declaration(std::uint32_t id, const char *name,
					   const SharePolicy &policy = {})
{
	copyoffload_share share{};
	share.request_id = 500 + id;
	share.share_id = id;
	for (std::size_t i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		share.method_order[i] = i < policy.order.size()
						? static_cast<std::uint8_t>(policy.order[i])
						: COPYOFFLOAD_METHOD_NONE;
	}
	share.max_segment = policy.max_segment;
	share.max_bytes_per_second = policy.rate;
	share.max_concurrent = policy.limit;
	copyoffload_share_name_set(share.name, name);
	return share;
}

// The statistics record of the share named `name`; fails the test when
// the registry keeps none.
inline copyoffload_share_stats share_record(const copyoffload::ShareRegistry &shares,
					    const char *name)
{
	std::uint32_t next = 0;
	for (const copyoffload_share_stats &record :
	     shares.page(0, COPYOFFLOAD_STATS_MAX_RECORDS, next)) {
		if (std::strcmp(record.name, name) == 0) {
			return record;
		}
	}
	fail_msg("no statistics for share \"%s\"", name);
	return {};
}

inline void assert_contains(const std::string &text, std::string_view fragment)
{
	if (text.find(fragment) == std::string::npos) {
		fail_msg("'%s' lacks '%s'", text.c_str(), std::string(fragment).c_str());
	}
}

} // namespace test_support
