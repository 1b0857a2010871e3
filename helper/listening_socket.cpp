#include "listening_socket.hpp"

#include "device_privileges.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace copyoffload {

namespace {

[[noreturn]] void throw_errno(int error, const std::string &what)
{
	throw std::system_error(error, std::generic_category(), what);
}

sockaddr_un socket_address(const std::string &path)
{
	sockaddr_un address{};
	address.sun_family = AF_UNIX;
	if (path.size() >= sizeof(address.sun_path)) {
		throw std::runtime_error(fmt::format(
			"socket path '{}' is longer than {} bytes", path,
			sizeof(address.sun_path) - 1));
	}
	std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
	return address;
}

UniqueFd new_socket(int extra_flags = 0)
{
	UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | extra_flags, 0));
	if (!fd) {
		throw_errno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
	}
	return fd;
}

// Clears the way for bind(): a socket file nobody listens on any more is
// removed, anything else at that path makes startup fail.
void remove_stale_socket(const std::string &path, const sockaddr_un &address)
{
	struct stat status{};
	if (::lstat(path.c_str(), &status) != 0) {
		if (errno == ENOENT) {
			return;
		}
		throw_errno(errno, fmt::format("cannot inspect '{}'", path));
	}
	if (!S_ISSOCK(status.st_mode)) {
		throw std::runtime_error(fmt::format(
			"'{}' exists and is not a socket; refusing to replace it", path));
	}
	// Only a refused connection proves nobody is listening; anything else
	// (a live daemon, a socket of another type) is somebody's socket.
	UniqueFd probe = new_socket();
	if (::connect(probe.get(), reinterpret_cast<const sockaddr *>(&address),
		      sizeof(address)) == 0) {
		throw std::runtime_error(fmt::format(
			"another daemon is listening on '{}'", path));
	}
	if (errno != ECONNREFUSED) {
		throw_errno(errno, fmt::format("cannot tell whether socket '{}' is in use", path));
	}
	if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
		throw_errno(errno, fmt::format("cannot remove stale socket '{}'", path));
	}
}

} // namespace

ListeningSocket ListeningSocket::open(const std::string &path)
{
	sockaddr_un address = socket_address(path);
	remove_stale_socket(path, address);

	UniqueFd fd = new_socket(SOCK_NONBLOCK);
	// bind() creates the file with the umask applied; 0177 gives 0600 with
	// no window in which anyone else could connect.
	mode_t previous_umask = ::umask(0177);
	int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address),
			   sizeof(address));
	int bind_error = errno;
	::umask(previous_umask);
	if (bound != 0) {
		throw_errno(bind_error, fmt::format("cannot bind '{}'", path));
	}
	// Listen at once: a client that sees the file may connect right away.
	int listened = ::listen(fd.get(), SOMAXCONN);
	int listen_error = errno;

	struct stat status{};
	if (listened != 0 || ::stat(path.c_str(), &status) != 0) {
		int error = listened != 0 ? listen_error : errno;
		::unlink(path.c_str());
		throw_errno(error, fmt::format("cannot listen on '{}'", path));
	}
	return ListeningSocket(std::move(fd), path, status.st_dev, status.st_ino, true);
}

ListeningSocket ListeningSocket::adopt(UniqueFd fd)
{
	int flags = ::fcntl(fd.get(), F_GETFL);
	if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0 ||
	    ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
		throw_errno(errno, "making the passed socket non-blocking");
	}
	sockaddr_un address{};
	socklen_t size = sizeof(address);
	std::string path = "(unnamed)";
	if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&address), &size) == 0 &&
	    size > offsetof(sockaddr_un, sun_path) && address.sun_path[0] != '\0') {
		path.assign(address.sun_path,
			    ::strnlen(address.sun_path, size - offsetof(sockaddr_un, sun_path)));
	}
	return ListeningSocket(std::move(fd), path, 0, 0, false);
}

void ListeningSocket::close()
{
	if (!fd_) {
		return;
	}
	fd_.reset();
	if (!owns_file_) {
		return;
	}
	// The daemon's threads keep unprivileged file-system ids
	// (privileges.hpp); the socket's directory is root's.
	try {
		device::run_with_root_file_ids([this] {
			struct stat status{};
			if (::lstat(path_.c_str(), &status) == 0 && status.st_dev == device_ &&
			    status.st_ino == inode_) {
				::unlink(path_.c_str());
			}
		});
	} catch (...) {
		// Nothing in the task throws; close() runs in a destructor.
	}
}

} // namespace copyoffload
