#include "privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace copyoffload {

namespace {

void set_file_ids(unsigned id)
{
	// setfsuid() reports no error: check that the change took.
	::setfsgid(id);
	::setfsuid(id);
	if (static_cast<unsigned>(::setfsuid(static_cast<uid_t>(-1))) != id ||
	    static_cast<unsigned>(::setfsgid(static_cast<gid_t>(-1))) != id) {
		throw std::system_error(EPERM, std::generic_category(),
					"setfsuid()/setfsgid() to " + std::to_string(id));
	}
}

} // namespace

std::vector<int> drop_all_privileges(std::span<const int> keep_permitted)
{
	if (::setgroups(0, nullptr) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"setgroups() to drop supplementary groups");
	}
	set_file_ids(unprivileged_file_id);
	// The raw syscall avoids a libcap dependency for one call; version 3
	// covers all 64 capability bits in two zeroed data words.
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	header.pid = 0; // this thread
	__user_cap_data_struct current[_LINUX_CAPABILITY_U32S_3]{};
	if (::syscall(SYS_capget, &header, current) != 0) {
		throw std::system_error(errno, std::generic_category(), "capget()");
	}
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	std::vector<int> missing;
	for (int capability : keep_permitted) {
		const unsigned word = static_cast<unsigned>(capability) / 32;
		const unsigned bit = 1u << (static_cast<unsigned>(capability) % 32);
		if ((current[word].permitted & bit) != 0) {
			data[word].permitted |= bit;
		} else {
			missing.push_back(capability);
		}
	}
	if (::syscall(SYS_capset, &header, data) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"capset() to drop all capabilities");
	}
	if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"prctl(PR_SET_NO_NEW_PRIVS)");
	}
	return missing;
}

void restore_root_file_ids()
{
	set_file_ids(0);
}

} // namespace copyoffload
