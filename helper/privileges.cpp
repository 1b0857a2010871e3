#include "privileges.hpp"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace copyoffload {

void drop_all_privileges()
{
	// The raw syscall avoids a libcap dependency for one call; version 3
	// covers all 64 capability bits in two zeroed data words.
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	header.pid = 0; // this thread
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	if (::syscall(SYS_capset, &header, data) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"capset() to drop all capabilities");
	}
	if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"prctl(PR_SET_NO_NEW_PRIVS)");
	}
}

} // namespace copyoffload
