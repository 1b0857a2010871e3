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

// The raw syscalls avoid a libcap dependency; version 3 covers all 64
// capability bits in two data words.
struct ThreadCapabilities {
	__user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0}; // pid 0: this thread
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};

	static ThreadCapabilities current()
	{
		ThreadCapabilities caps;
		if (::syscall(SYS_capget, &caps.header, caps.data) != 0) {
			throw std::system_error(errno, std::generic_category(), "capget()");
		}
		return caps;
	}

	// The data word that holds `capability`, and its bit there.
	__user_cap_data_struct &word(int capability)
	{
		return data[static_cast<unsigned>(capability) / 32];
	}
	const __user_cap_data_struct &word(int capability) const
	{
		return data[static_cast<unsigned>(capability) / 32];
	}
	static unsigned bit(int capability)
	{
		return 1u << (static_cast<unsigned>(capability) % 32);
	}

	void apply(const char *what)
	{
		if (::syscall(SYS_capset, &header, data) != 0) {
			throw std::system_error(errno, std::generic_category(), what);
		}
	}
};

} // namespace

std::vector<int> drop_all_privileges(std::span<const int> keep_permitted)
{
	if (::setgroups(0, nullptr) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"setgroups() to drop supplementary groups");
	}
	set_file_ids(unprivileged_file_id);
	const ThreadCapabilities current = ThreadCapabilities::current();
	ThreadCapabilities kept; // all zero but what is kept below
	std::vector<int> missing;
	for (int capability : keep_permitted) {
		const unsigned bit = ThreadCapabilities::bit(capability);
		if ((current.word(capability).permitted & bit) != 0) {
			kept.word(capability).permitted |= bit;
		} else {
			missing.push_back(capability);
		}
	}
	kept.apply("capset() to drop all capabilities");
	if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		throw std::system_error(errno, std::generic_category(),
					"prctl(PR_SET_NO_NEW_PRIVS)");
	}
	return missing;
}

void drop_thread_capability(int capability)
{
	ThreadCapabilities caps = ThreadCapabilities::current();
	const unsigned bit = ThreadCapabilities::bit(capability);
	auto &data = caps.word(capability);
	if (((data.permitted | data.effective | data.inheritable) & bit) == 0) {
		return;
	}
	data.permitted &= ~bit;
	data.effective &= ~bit;
	data.inheritable &= ~bit;
	caps.apply("capset() to drop one capability");
}

} // namespace copyoffload
