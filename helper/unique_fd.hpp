// Sole owner of a file descriptor: closes it exactly once, never leaks it
// across an early return or an exception.
#pragma once

#include <unistd.h>

#include <utility>

namespace copyoffload {

class UniqueFd {
public:
	UniqueFd() noexcept = default;
	explicit UniqueFd(int fd) noexcept : fd_(fd) {}

	UniqueFd(UniqueFd &&other) noexcept : fd_(other.release()) {}
	UniqueFd &operator=(UniqueFd &&other) noexcept
	{
		if (this != &other) {
			reset(other.release());
		}
		return *this;
	}
	UniqueFd(const UniqueFd &) = delete;
	UniqueFd &operator=(const UniqueFd &) = delete;

	~UniqueFd() { reset(); }

	[[nodiscard]] int get() const noexcept { return fd_; }
	[[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
	explicit operator bool() const noexcept { return valid(); }

	// Gives up ownership without closing.
	[[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

	void reset(int fd = -1) noexcept
	{
		int old = std::exchange(fd_, fd);
		if (old >= 0) {
			// close() on Linux always releases the descriptor, even
			// when it reports EINTR, so it must not be retried.
			::close(old);
		}
	}

private:
	int fd_ = -1;
};

} // namespace copyoffload
