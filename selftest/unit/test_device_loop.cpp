// The device path on real block devices of the host: loop devices, which
// have no copy offload of their own, so everything that does not need NVMe
// or SCSI: the descriptor checks (--device-copy, kinds, overlap), the
// exclusive claims (another O_EXCL holder, a mounted filesystem), the range
// checks, the session without a copier, and whole copies through the
// engine, which fall back to read/write. Device commands themselves are
// tested in QEMU (selftest/blockdev). Needs root and loop devices; exits 77
// (skip) otherwise.
//
// Loop devices are attached with LO_FLAGS_AUTOCLEAR and mounts are made in
// a private mount namespace, on a tmpfs of this process: nothing is left
// behind however the process ends.

#include "copy_service.hpp"
#include "descriptor_check.hpp"
#include "device_backend.hpp"
#include "device_session.hpp"

#include <linux/loop.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace copyoffload::device;
using namespace test_support;
using namespace test_support::methods;

namespace {

constexpr std::uint64_t device_size = 16 * MiB;

// A loop device over an image file, detached by the kernel once the last
// descriptor of it closes.
struct LoopDevice {
	std::string path;
	UniqueFd fd; // read-write
};

bool attach_loop(const std::string &image, LoopDevice &loop)
{
	UniqueFd backing(::open(image.c_str(), O_RDWR | O_CLOEXEC));
	UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
	if (!backing || !control) {
		return false;
	}
	for (int attempt = 0; attempt < 8; attempt++) {
		const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
		if (number < 0) {
			return false;
		}
		loop.path = "/dev/loop" + std::to_string(number);
		loop.fd = UniqueFd(::open(loop.path.c_str(), O_RDWR | O_CLOEXEC));
		if (!loop.fd) {
			return false;
		}
		loop_config config{};
		config.fd = static_cast<__u32>(backing.get());
		config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (::ioctl(loop.fd.get(), LOOP_CONFIGURE, &config) == 0) {
			return true;
		}
		if (errno != EBUSY) { // taken meanwhile: try the next free one
			return false;
		}
	}
	return false;
}

struct Devices {
	TempDir dir;
	LoopDevice a, b, c;
	std::vector<unsigned char> a_bytes, b_bytes;
};

Devices *devices = nullptr;

bool make_device(const std::string &image, LoopDevice &loop, std::vector<unsigned char> *bytes,
		 unsigned seed)
{
	std::vector<unsigned char> data = pattern(device_size, seed);
	write_file(image, data);
	if (!attach_loop(image, loop)) {
		std::fprintf(stderr, "cannot attach %s to a loop device: %s\n", image.c_str(),
			     std::strerror(errno));
		return false;
	}
	if (bytes != nullptr) {
		*bytes = std::move(data);
	}
	return true;
}

std::vector<unsigned char> device_bytes(const LoopDevice &loop)
{
	std::vector<unsigned char> bytes(device_size);
	assert_int_equal(::pread(loop.fd.get(), bytes.data(), bytes.size(), 0),
			 static_cast<ssize_t>(bytes.size()));
	return bytes;
}

UniqueFd reopen(const LoopDevice &loop, int flags)
{
	return open_file(loop.path, flags);
}

void assert_rejected(int source, int destination, const copyoffload_copy_request &request,
		     int status, const char *reason)
{
	auto rejection = check_copy_descriptors(source, destination, request);
	assert_true(rejection.has_value());
	assert_int_equal(rejection->status, status);
	if (std::string(rejection->reason).find(reason) == std::string::npos) {
		fail_msg("reason '%s' lacks '%s'", std::string(rejection->reason).c_str(), reason);
	}
}

void test_refused_without_device_copy(void **)
{
	enable_device_copy(false);
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	assert_rejected(a.get(), b.get(), copy_request(0, 0, 4096), EBADF, "--device-copy");
	CopyOutcome outcome = execute_copy(copy_request(0, 0, 4096), a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, EBADF);
	enable_device_copy(true);
}

void test_pair_checks(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	assert_false(check_copy_descriptors(a.get(), b.get(), copy_request(0, 0, 4096)).has_value());
	// One block device and one file, either way round.
	write_file(devices->dir.file("file"), pattern(8192));
	UniqueFd file = open_file(devices->dir.file("file"), O_RDWR);
	assert_rejected(a.get(), file.get(), copy_request(0, 0, 4096), EBADF, "regular file");
	assert_rejected(file.get(), b.get(), copy_request(0, 0, 4096), EBADF, "regular file");
	// One device: overlapping ranges, through one node or two descriptors.
	UniqueFd b_read = reopen(devices->b, O_RDONLY);
	assert_rejected(b_read.get(), b.get(), copy_request(0, 512, 4096), EINVAL, "overlapping");
	assert_false(check_copy_descriptors(b_read.get(), b.get(), copy_request(0, 4096, 4096))
			     .has_value());
	// The destination must be writable, as for files.
	UniqueFd b_only_read = reopen(devices->b, O_RDONLY);
	assert_rejected(a.get(), b_only_read.get(), copy_request(0, 0, 4096), EBADF, "writing");
}

void test_copy_falls_back_to_read_write(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	const std::uint64_t source = 3 * MiB + 100, destination = 9 * MiB + 100, length = 2 * MiB + 5;
	CopyOutcome outcome =
		execute_copy(copy_request(source, destination, length), a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, 0);
	assert_int_equal(outcome.result.bytes_done, length);
	assert_int_equal(outcome.result.bytes_by_method[DEVICE], 0);
	assert_int_equal(outcome.result.bytes_by_method[RW], length);
	std::copy_n(devices->a_bytes.begin() + source, length,
		    devices->b_bytes.begin() + destination);
	assert_true(device_bytes(devices->b) == devices->b_bytes);
}

void test_exclusive_holder_refused(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	{
		UniqueFd holder = reopen(devices->b, O_RDONLY | O_EXCL);
		CopyOutcome outcome =
			execute_copy(copy_request(0, 0, 4096), a.get(), b.get(), {});
		assert_int_equal(outcome.result.status, EBUSY);
		assert_int_equal(outcome.result.bytes_done, 0);
	}
	CopyOutcome outcome = execute_copy(copy_request(0, 0, 4096), a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, 0);
	std::copy_n(devices->a_bytes.begin(), 4096, devices->b_bytes.begin());
	assert_true(device_bytes(devices->b) == devices->b_bytes);
}

void test_mounted_refused(void **)
{
	const std::string mount_point = devices->dir.file("mnt");
	assert_int_equal(::mkdir(mount_point.c_str(), 0700), 0);
	if (std::system(("mkfs.ext4 -q -F " + devices->c.path + " >/dev/null 2>&1").c_str()) != 0 ||
	    ::mount(devices->c.path.c_str(), mount_point.c_str(), "ext4", 0, nullptr) != 0) {
		skip();
	}
	UniqueFd c = reopen(devices->c, O_RDWR);
	UniqueFd b = reopen(devices->b, O_RDWR);
	for (auto [source, destination] : {std::pair{c.get(), c.get()}, {c.get(), b.get()},
					   {b.get(), c.get()}}) {
		CopyOutcome outcome =
			execute_copy(copy_request(0, 8 * MiB, 4096), source, destination, {});
		assert_int_equal(outcome.result.status, EBUSY);
		assert_true(outcome.rejection.find("in use") != std::string_view::npos);
	}
	assert_int_equal(::umount2(mount_point.c_str(), 0), 0);
}

void test_range_past_device_end(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	CopyOutcome outcome = execute_copy(copy_request(device_size - 4096, 0, 8192), a.get(),
					   b.get(), {});
	assert_int_equal(outcome.result.status, ENODATA);
	outcome = execute_copy(copy_request(0, device_size - 4096, 8192), a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, ENOSPC);
	assert_true(device_bytes(devices->b) == devices->b_bytes);
}

void test_methods_without_device(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	CopyOutcome outcome = execute_copy(copy_request(0, 0, 4096, bit(RW) | bit(CFR)), a.get(),
					   b.get(), {});
	assert_int_equal(outcome.result.status, EOPNOTSUPP);
	outcome = execute_copy(copy_request(0, 0, 4096, bit(CLONE), COPYOFFLOAD_COPY_CLONE_ONLY),
			       a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, EOPNOTSUPP);
	// Device copy alone on a device that cannot: the request fails.
	outcome = execute_copy(copy_request(0, 0, 4096, bit(DEVICE)), a.get(), b.get(), {});
	assert_int_equal(outcome.result.status, EXDEV);
	assert_int_equal(outcome.result.bytes_done, 0);
}

void test_session_without_copier(void **)
{
	UniqueFd a = reopen(devices->a, O_RDONLY);
	UniqueFd b = reopen(devices->b, O_RDWR);
	auto session = DeviceSession::open(a.get(), b.get(), 0, 0, MiB);
	assert_true(session.ok());
	assert_null(session.value()->copier());
	assert_true(session.value()->unavailable_reason().find("NVMe namespaces and SCSI disks") !=
		    std::string::npos);
	assert_true(DeviceSession::find(a.get(), b.get()) == session.value());
	// Two requests on the same devices at once share the claims.
	auto second = DeviceSession::open(a.get(), b.get(), MiB, MiB, MiB);
	assert_true(second.ok());

	DeviceBackend backend; // finds the session by the descriptors
	BackendProgress progress = backend.copy_slice({a.get(), b.get(), 0, 0, MiB});
	assert_int_equal(progress.error, EXDEV);
	assert_int_equal(progress.bytes, 0);
	assert_true(backend.is_unsupported(EXDEV));
	assert_true(backend.refuses_files(EXDEV));
	assert_false(backend.refuses_files(EOPNOTSUPP)); // one refused command

	// The source's descriptor number reused for another device while the
	// session lives (its request closed it): not that session's devices.
	UniqueFd saved(::dup(a.get()));
	UniqueFd c = reopen(devices->c, O_RDONLY);
	assert_int_equal(::dup2(c.get(), a.get()), a.get());
	assert_true(DeviceSession::find(a.get(), b.get()) == nullptr);
	progress = backend.copy_slice({a.get(), b.get(), 0, 0, MiB});
	assert_int_equal(progress.error, EXDEV);
	assert_int_equal(::dup2(saved.get(), a.get()), a.get());
	assert_true(DeviceSession::find(a.get(), b.get()) == session.value());

	session = DeviceError{0, ""};
	second = DeviceError{0, ""};
	assert_true(DeviceSession::find(a.get(), b.get()) == nullptr);
	progress = backend.copy_slice({a.get(), b.get(), 0, 0, MiB});
	assert_int_equal(progress.error, EXDEV);
	// The claims went with the sessions: another program may hold it now.
	UniqueFd holder = reopen(devices->b, O_RDONLY | O_EXCL);
	assert_true(holder.valid());
}

} // namespace

int main()
{
	if (::geteuid() != 0) {
		std::fprintf(stderr, "skipped: loop devices need root\n");
		return 77;
	}
	const std::string base = temp_base();
	if (::unshare(CLONE_NEWNS) != 0 ||
	    ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
	    ::mount("copyoffload-test", base.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
		    "mode=1777,size=128m") != 0) {
		std::fprintf(stderr, "skipped: no private mount namespace and tmpfs: %s\n",
			     std::strerror(errno));
		return 77;
	}
	int failures;
	{
		Devices state;
		devices = &state;
		if (!make_device(state.dir.file("a.img"), state.a, &state.a_bytes, 1) ||
		    !make_device(state.dir.file("b.img"), state.b, &state.b_bytes, 2) ||
		    !make_device(state.dir.file("c.img"), state.c, nullptr, 3)) {
			std::fprintf(stderr, "skipped: no loop devices\n");
			return 77;
		}
		enable_device_copy(true);
		const CMUnitTest tests[] = {
			cmocka_unit_test(test_refused_without_device_copy),
			cmocka_unit_test(test_pair_checks),
			cmocka_unit_test(test_copy_falls_back_to_read_write),
			cmocka_unit_test(test_exclusive_holder_refused),
			cmocka_unit_test(test_mounted_refused),
			cmocka_unit_test(test_range_past_device_end),
			cmocka_unit_test(test_methods_without_device),
			cmocka_unit_test(test_session_without_copier),
		};
		failures = cmocka_run_group_tests_name("copyoffloadd_device_loop", tests, nullptr,
						       nullptr);
		devices = nullptr;
	}
	::umount2(base.c_str(), MNT_DETACH);
	return failures;
}
