// Gives up every capability the daemon was started with.
#pragma once

namespace copyoffload {

// Empties the effective, permitted and inheritable capability sets and sets
// PR_SET_NO_NEW_PRIVS. A root daemon keeping CAP_SYS_RESOURCE would write
// past disk quotas and ext4 reserved blocks, and CAP_DAC_OVERRIDE/CAP_FOWNER
// are never needed: the daemon only uses descriptors smbd opened for a user,
// so a copy can never do more than that user's own write.
//
// Capabilities belong to threads: call this before starting any thread, so
// every worker inherits the empty sets. Throws std::system_error.
void drop_all_privileges();

} // namespace copyoffload
