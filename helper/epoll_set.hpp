// What the main thread and the workers both do with descriptors of their
// own: make one (eventfd, epoll) or fail loudly, and watch one in an
// epoll set.
#pragma once

#include "unique_fd.hpp"

#include <sys/epoll.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace copyoffload {

// Owns `fd`, or throws std::system_error (errno, `what`) when it is -1.
inline UniqueFd checked_fd(int fd, const char *what)
{
	if (fd < 0) {
		throw std::system_error(errno, std::generic_category(), what);
	}
	return UniqueFd(fd);
}

// Adds `fd` to `epoll` for `events`, with the descriptor as its data.
inline void epoll_add(int epoll, int fd, std::uint32_t events)
{
	epoll_event event{};
	event.events = events;
	event.data.fd = fd;
	if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
		throw std::system_error(errno, std::generic_category(), "epoll_ctl(ADD)");
	}
}

} // namespace copyoffload
