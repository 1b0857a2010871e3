// The workers' idle CPU cgroup (--cpu-cgroup).
//
// SCHED_IDLE only orders the threads of one scheduling group. smbd runs in
// another: its own session's autogroup, or its own service's cgroup. The
// kernel first shares a CPU between the groups, as equals, and the
// workers' group keeps it until its slice ends, however idle its threads
// are (measured: a SCHED_OTHER task beside a copying SCHED_IDLE thread of
// another session waited a p999 of 3.9-11 ms to run, against 0.9-1.2 ms in
// the same session). A cgroup with cpu.idle = 1 is idle as a whole: a task of
// any other group takes its CPU at once. Only the workers go there: the
// guard thread, starved with them, could not lift them (it turns cpu.idle
// off while they starve). cgroup v1 only, whose cpu hierarchy takes single
// threads.
#pragma once

#include "unique_fd.hpp"

#include <sys/types.h>

#include <string>

namespace copyoffload {

class IdleCgroup {
public:
	// Creates `directory` in cgroup v1's cpu hierarchy if missing and marks
	// it idle. Needs the privilege to write there: call before dropping it;
	// the descriptors it keeps work without. Throws std::runtime_error
	// naming what is wrong, and removes a directory it created.
	static IdleCgroup create(const std::string &directory);

	IdleCgroup() = default; // none: moves and sets nothing

	[[nodiscard]] bool in_use() const { return cpu_idle_.valid(); }
	[[nodiscard]] const std::string &directory() const { return directory_; }

	// Moves thread `tid` of this process into the cgroup. Sets errno and
	// returns false if the kernel refuses.
	bool add_thread(pid_t tid) const;

	// Writes cpu.idle. Sets errno and returns false if the kernel refuses.
	bool set_idle(bool idle) const;

private:
	static IdleCgroup open_existing(const std::string &directory);

	IdleCgroup(std::string directory, UniqueFd cpu_idle, UniqueFd tasks)
		: directory_(std::move(directory)), cpu_idle_(std::move(cpu_idle)),
		  tasks_(std::move(tasks))
	{
	}

	std::string directory_;
	UniqueFd cpu_idle_;
	UniqueFd tasks_;
};

} // namespace copyoffload
