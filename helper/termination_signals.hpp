// SIGTERM/SIGINT delivered as readable events instead of handlers, so the
// main loop handles them like any other input and no handler needs globals.
#pragma once

#include "unique_fd.hpp"

#include <string>

namespace copyoffload {

// Blocks SIGTERM and SIGINT and returns a signalfd for them; ignores
// SIGPIPE (a vanished client shows up as EPIPE) and SIGXFSZ (an oversized
// write then fails with EFBIG and is reported, instead of killing the
// daemon). The mask is per thread: call before starting any thread so that
// every worker inherits it. Throws std::system_error.
UniqueFd open_termination_signalfd();

// Reads one pending signal; the name of the signal, e.g. "SIGTERM".
std::string read_termination_signal(int signal_fd);

} // namespace copyoffload
