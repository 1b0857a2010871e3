// Whether autogroups keep smbd from going before the SCHED_IDLE workers.
//
// SCHED_IDLE ranks a thread below the normal tasks of its own scheduling
// group only. With autogroups (sched(7); on in Debian's kernels) every
// session whose processes are in the root CPU cgroup is a group, smbd and
// the daemon are in different sessions, and their two groups share a CPU
// as equals: a woken smbd may wait for a copying worker for the rest of
// the group's slice. Measured with smbd and the helper on one CPU, the
// echo behind a copychunk had a p99 of 0.40-0.44 ms with autogroups on and
// 0.21 ms with them off. The daemon says so at start; it does not change
// a machine-wide setting itself.
#pragma once

namespace copyoffload {

// True if autogroups are on and this process is in the root CPU cgroup,
// the only one whose tasks they apply to.
[[nodiscard]] bool autogroups_apply();

} // namespace copyoffload
