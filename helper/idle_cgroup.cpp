#include "idle_cgroup.hpp"

#include "logging.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string_view>

namespace copyoffload {

namespace {

bool write_value(int fd, std::string_view text)
{
	// A cgroup file takes one value per write(2).
	const ssize_t written = ::pwrite(fd, text.data(), text.size(), 0);
	return written == static_cast<ssize_t>(text.size());
}

[[noreturn]] void fail(const std::string &directory, std::string_view what, int error)
{
	throw std::runtime_error(fmt::format("--cpu-cgroup {}: {}: {}", directory, what,
					     describe_errno(error)));
}

UniqueFd open_for_writing(const std::string &directory, const char *name)
{
	const std::string path = directory + "/" + name;
	return UniqueFd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
}

} // namespace

IdleCgroup IdleCgroup::create(const std::string &directory)
{
	const bool created = ::mkdir(directory.c_str(), 0755) == 0;
	if (!created && errno != EEXIST) {
		fail(directory, "cannot create it", errno);
	}
	try {
		return open_existing(directory);
	} catch (...) {
		if (created) {
			::rmdir(directory.c_str()); // leave nothing behind
		}
		throw;
	}
}

IdleCgroup IdleCgroup::open_existing(const std::string &directory)
{
	struct stat st {};
	if (::stat((directory + "/cgroup.type").c_str(), &st) == 0) {
		throw std::runtime_error(fmt::format(
			"--cpu-cgroup {}: a cgroup v2 directory; the workers' idle cgroup needs "
			"cgroup v1's cpu hierarchy, which takes single threads",
			directory));
	}
	UniqueFd cpu_idle = open_for_writing(directory, "cpu.idle");
	if (!cpu_idle) {
		const int error = errno;
		if (error == ENOENT) {
			throw std::runtime_error(fmt::format(
				"--cpu-cgroup {}: it has no cpu.idle, so it is not a CPU cgroup: "
				"give a directory in cgroup v1's cpu hierarchy (such as "
				"/sys/fs/cgroup/cpu/copyoffloadd; cpu.idle needs Linux 5.15)",
				directory));
		}
		fail(directory, "cannot open cpu.idle", error);
	}
	UniqueFd tasks = open_for_writing(directory, "tasks");
	if (!tasks) {
		fail(directory, "cannot open tasks", errno);
	}
	if (!write_value(cpu_idle.get(), "1")) {
		fail(directory, "cannot set cpu.idle to 1", errno);
	}
	return IdleCgroup(directory, std::move(cpu_idle), std::move(tasks));
}

bool IdleCgroup::add_thread(pid_t tid) const
{
	return !in_use() || write_value(tasks_.get(), std::to_string(tid));
}

bool IdleCgroup::set_idle(bool idle) const
{
	return !in_use() || write_value(cpu_idle_.get(), idle ? "1" : "0");
}

} // namespace copyoffload
