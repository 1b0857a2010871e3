#include "device_privileges.hpp"

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

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

ScopedRootFileIds::ScopedRootFileIds() noexcept
{
	// setfsuid(-1) only reports the current value.
	previous_uid_ = static_cast<unsigned>(::setfsuid(static_cast<uid_t>(-1)));
	previous_gid_ = static_cast<unsigned>(::setfsgid(static_cast<gid_t>(-1)));
	::setfsgid(0);
	::setfsuid(0);
	ok_ = ::setfsuid(static_cast<uid_t>(-1)) == 0 && ::setfsgid(static_cast<gid_t>(-1)) == 0;
}

ScopedRootFileIds::~ScopedRootFileIds()
{
	const int saved_errno = errno;
	::setfsuid(previous_uid_);
	::setfsgid(previous_gid_);
	errno = saved_errno;
}

} // namespace copyoffload::device
