#include "device_privileges.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <system_error>
#include <thread>

namespace copyoffload::device {

namespace {

using CapabilitySets = __user_cap_data_struct[_LINUX_CAPABILITY_U32S_3];

// The raw syscalls, as privileges.cpp uses: per thread, no libcap.
bool get_sets(CapabilitySets &sets)
{
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	header.pid = 0;
	return ::syscall(SYS_capget, &header, sets) == 0;
}

bool set_sets(CapabilitySets &sets)
{
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	header.pid = 0;
	return ::syscall(SYS_capset, &header, sets) == 0;
}

constexpr unsigned word(int capability)
{
	return static_cast<unsigned>(capability) / 32;
}

constexpr unsigned bit(int capability)
{
	return 1u << (static_cast<unsigned>(capability) % 32);
}

} // namespace

bool capability_permitted(int capability)
{
	CapabilitySets sets{};
	return get_sets(sets) && (sets[word(capability)].permitted & bit(capability)) != 0;
}

ScopedCapability::ScopedCapability(int capability) noexcept : capability_(capability)
{
	CapabilitySets sets{};
	if (!get_sets(sets) || (sets[word(capability)].permitted & bit(capability)) == 0 ||
	    (sets[word(capability)].effective & bit(capability)) != 0) {
		return; // not ours to raise, or already effective (not ours to lower)
	}
	sets[word(capability)].effective |= bit(capability);
	raised_ = set_sets(sets);
}

ScopedCapability::~ScopedCapability()
{
	if (!raised_) {
		return;
	}
	const int saved_errno = errno;
	CapabilitySets sets{};
	if (get_sets(sets)) {
		sets[word(capability_)].effective &= ~bit(capability_);
		set_sets(sets);
	}
	errno = saved_errno;
}

bool run_with_root_file_ids(const std::function<void()> &task)
{
	int error = 0;
	std::exception_ptr thrown;
	try {
		std::thread([&] {
			::pthread_setname_np(::pthread_self(), "root file ids"); // top -H
			// Born with its caller's policy: a SCHED_IDLE worker's, which
			// the starvation guard would not lift here (it watches the
			// worker, asleep in join()). Best effort: leaving SCHED_IDLE
			// takes RLIMIT_NICE (main.cpp raises it where it may).
			if (::sched_getscheduler(0) == SCHED_IDLE) {
				sched_param param{};
				::sched_setscheduler(0, SCHED_OTHER, &param);
			}
			// setfsuid() reports no error: check that the change took.
			::setfsgid(0);
			::setfsuid(0);
			if (::setfsuid(static_cast<uid_t>(-1)) != 0 ||
			    ::setfsgid(static_cast<gid_t>(-1)) != 0) {
				error = EPERM;
				return;
			}
			try {
				task();
			} catch (...) {
				thrown = std::current_exception();
			}
		}).join();
	} catch (const std::system_error &e) {
		error = e.code().value(); // the thread did not start
	}
	if (thrown) {
		std::rethrow_exception(thrown);
	}
	if (error != 0) {
		errno = error;
		return false;
	}
	return true;
}

} // namespace copyoffload::device
