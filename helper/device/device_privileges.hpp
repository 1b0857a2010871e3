// The two privileges device copy needs, held apart from everything else.
//
// copyoffloadd drops every capability at start (privileges.hpp). With
// --device-copy it keeps exactly two in its permitted set, never in the
// effective set:
// - CAP_SYS_ADMIN: NVMe passthrough (Identify, Copy). Linux 6.1 allows no
//   NVMe passthrough without it; from 6.2 on the Identify commands and I/O
//   commands the controller's effects log lists are allowed without it on a
//   descriptor open for writing.
// - CAP_SYS_RAWIO: SG_IO with EXTENDED COPY and RECEIVE COPY RESULTS, which
//   are not in the kernel's list of commands allowed without it.
// A worker thread raises one of them into its own effective set only around
// one passthrough call on a command it built itself (ScopedCapability), so
// nothing else the daemon does (data writes, quota, reserved blocks) ever
// runs with a capability. Capabilities belong to threads: raising one on a
// worker affects no other thread.
#pragma once

#include <linux/capability.h>

#include <functional>

namespace copyoffload::device {

// The capabilities --device-copy keeps permitted.
inline constexpr int device_capabilities[] = {CAP_SYS_ADMIN, CAP_SYS_RAWIO};

// Whether `capability` is in the calling thread's permitted set, so that
// ScopedCapability can raise it.
bool capability_permitted(int capability);

// Raises `capability` into the calling thread's effective set if it is
// permitted (and does nothing otherwise: the kernel then decides without
// it); lowers it again on destruction. Never throws.
class ScopedCapability {
public:
	explicit ScopedCapability(int capability) noexcept;
	~ScopedCapability();
	ScopedCapability(const ScopedCapability &) = delete;
	ScopedCapability &operator=(const ScopedCapability &) = delete;

	[[nodiscard]] bool raised() const noexcept { return raised_; }

private:
	int capability_;
	bool raised_ = false;
};

// Runs `task` on a thread of its own with file-system uid and gid 0 (the
// real ids, so no capability is needed) and waits for it; an exception
// `task` throws is thrown here. For what is checked against root as the
// owner: opening a device node (the helper's exclusive claim through
// /proc/self/fd, an NVMe generic character device), removing the socket
// from root's directory, reaching NOTIFY_SOCKET. The calling thread keeps
// its ids: setfsuid() without CAP_SETUID moves only to the real, effective,
// saved or current id, so a thread that took 0 could never take the
// unprivileged id back (and the workers the main thread starts later
// would inherit 0). False, with errno set, if the thread could not start
// or take the ids; `task` has not run then.
bool run_with_root_file_ids(const std::function<void()> &task);

} // namespace copyoffload::device
