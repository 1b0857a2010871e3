// The daemon's listening unix socket and the file that names it.
#pragma once

#include "unique_fd.hpp"

#include <sys/types.h>

#include <string>

namespace copyoffload {

class ListeningSocket {
public:
	// Binds a SOCK_SEQPACKET socket at `path` with mode 0600 and listens.
	// A leftover socket file is replaced unless a live daemon still
	// answers on it; any other kind of file is left alone. Throws
	// std::runtime_error / std::system_error saying why it failed.
	static ListeningSocket open(const std::string &path);

	// Takes over a listening socket bound by someone else (the service
	// manager): makes it non-blocking and learns its path. close() then
	// leaves the socket file alone, it belongs to its creator.
	static ListeningSocket adopt(UniqueFd fd);

	ListeningSocket(ListeningSocket &&) noexcept = default;
	ListeningSocket &operator=(ListeningSocket &&) noexcept = default;
	~ListeningSocket() { close(); }

	[[nodiscard]] int fd() const { return fd_.get(); }
	[[nodiscard]] const std::string &path() const { return path_; }
	[[nodiscard]] bool is_open() const { return fd_.valid(); }

	[[nodiscard]] bool adopted() const { return !owns_file_; }

	// Stops accepting and removes the socket file, if this object created
	// it and it is still that one (a successor daemon may have replaced
	// it).
	void close();

private:
	ListeningSocket(UniqueFd fd, std::string path, dev_t device, ino_t inode,
			bool owns_file)
		: fd_(std::move(fd)), path_(std::move(path)), device_(device), inode_(inode),
		  owns_file_(owns_file)
	{
	}

	UniqueFd fd_;
	std::string path_;
	dev_t device_ = 0;
	ino_t inode_ = 0;
	bool owns_file_ = true;
};

} // namespace copyoffload
