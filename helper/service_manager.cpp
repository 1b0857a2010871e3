#include "service_manager.hpp"

#include "device_privileges.hpp"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>

namespace copyoffload {

int passed_socket_count()
{
	int count = ::sd_listen_fds(1);
	if (count < 0) {
		throw std::system_error(-count, std::generic_category(),
					"reading the sockets passed by the service manager");
	}
	return count;
}

UniqueFd take_passed_listener(int count)
{
	if (count != 1) {
		// Take ownership of all of them, so none leaks into the daemon.
		for (int i = 0; i < count; i++) {
			UniqueFd ignored(SD_LISTEN_FDS_START + i);
		}
		throw std::runtime_error(fmt::format(
			"the service manager passed {} sockets (LISTEN_FDS); copyoffloadd "
			"needs exactly one (ListenSequentialPacket=)",
			count));
	}
	UniqueFd fd(SD_LISTEN_FDS_START);
	int is_listener = ::sd_is_socket_unix(fd.get(), SOCK_SEQPACKET, 1, nullptr, 0);
	if (is_listener < 0) {
		throw std::system_error(-is_listener, std::generic_category(),
					"inspecting the socket passed by the service manager");
	}
	if (is_listener == 0) {
		throw std::runtime_error(
			"the socket passed by the service manager (LISTEN_FDS) is not a "
			"listening unix SOCK_SEQPACKET socket; use ListenSequentialPacket=");
	}
	return fd;
}

namespace {

void notify(const std::string &message)
{
	// A NOTIFY_SOCKET path may be one root reaches and "nobody", the
	// daemon's file-system ids (privileges.hpp), does not (systemd's own,
	// /run/systemd/notify, is open to all); an abstract one ("@...") is
	// not a file, and with none sd_notify() does nothing.
	const char *socket = std::getenv("NOTIFY_SOCKET");
	bool sent = false;
	if (socket != nullptr && socket[0] == '/') {
		try {
			sent = device::run_with_root_file_ids(
				[&] { ::sd_notify(0, message.c_str()); });
		} catch (...) {
			// No thread (out of memory): try from here below.
		}
	}
	if (!sent) {
		// systemd's own socket takes any sender.
		::sd_notify(0, message.c_str());
	}
}

} // namespace

void notify_ready(std::string_view status)
{
	notify(fmt::format("READY=1\nSTATUS={}", status));
}

void notify_stopping(std::string_view status)
{
	notify(fmt::format("STOPPING=1\nSTATUS={}", status));
}

} // namespace copyoffload
