// Gives up every capability the daemon was started with.
#pragma once

#include <span>
#include <vector>

namespace copyoffload {

// Empties the effective, permitted and inheritable capability sets and sets
// PR_SET_NO_NEW_PRIVS. A root daemon keeping CAP_SYS_RESOURCE would write
// past disk quotas and ext4 reserved blocks, and CAP_DAC_OVERRIDE/CAP_FOWNER
// are never needed: the daemon only uses descriptors smbd opened for a user,
// so a copy can never do more than that user's own write.
//
// Capabilities are not enough: ext4 keeps its reserved blocks for uid 0
// (s_resuid) whatever the capabilities, so a copy written with file-system
// uid 0 could fill them where the user's own write gets ENOSPC. The calling
// thread therefore also takes the unprivileged file-system uid and gid
// below, with no supplementary groups; I/O on passed descriptors does not
// depend on them.
//
// `keep_permitted` (copyoffloadd --device-copy: CAP_SYS_ADMIN and
// CAP_SYS_RAWIO, device/device_privileges.hpp) stay in the permitted set
// only, never effective: a worker raises one around a device passthrough
// call and lowers it at once. Those not permitted at start (a bounding set
// without them) cannot be kept; the list of them is returned.
//
// Capabilities and file-system ids belong to threads: call this before
// starting any thread, so every worker inherits them, those the main
// thread adds later included: no long-lived thread takes root's file ids
// again (device::run_with_root_file_ids()). Throws std::system_error.
std::vector<int> drop_all_privileges(std::span<const int> keep_permitted = {});

// Takes `capability` out of the calling thread's sets (the workers and the
// main thread drop CAP_SYS_NICE, which only the guard thread may keep:
// guard_thread.hpp).
// Throws std::system_error.
void drop_thread_capability(int capability);

// The file-system uid and gid copies run with ("nobody").
inline constexpr unsigned unprivileged_file_id = 65534;

} // namespace copyoffload
