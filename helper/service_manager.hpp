// The daemon's side of the service manager (systemd): socket activation
// and readiness notification, through libsystemd. Standalone, without
// LISTEN_FDS or NOTIFY_SOCKET in the environment, these do nothing.
#pragma once

#include "unique_fd.hpp"

#include <string_view>

namespace copyoffload {

// How many sockets the service manager passed to this process (0 when
// started standalone). Unsets LISTEN_FDS and friends, so children do not
// inherit them; call once.
int passed_socket_count();

// The listening socket the service manager passed: exactly one, a unix
// SOCK_SEQPACKET socket in the listening state (ListenSequentialPacket=).
// Throws std::runtime_error naming what is wrong with it otherwise.
UniqueFd take_passed_listener(int count);

// READY=1 with a STATUS= line; STOPPING=1. Failures are ignored: the
// service manager then reports the unit itself.
void notify_ready(std::string_view status);
void notify_stopping(std::string_view status);

} // namespace copyoffload
