// A decoded COPY request with its descriptors, waiting for or running on a
// worker. Holding the connection keeps it alive until the reply is sent.
#pragma once

#include "copyoffload_protocol.h"
#include "logging.hpp"
#include "unique_fd.hpp"

#include <memory>

namespace copyoffload {

class Connection;

struct CopyJob {
	std::shared_ptr<Connection> connection;
	copyoffload_copy_request request{};
	UniqueFd source;
	UniqueFd destination;
};

// Runs on a worker thread: copies, closes the descriptors, logs the
// outcome, answers the client. Never throws.
void run_copy_job(CopyJob &job, const Logger &log) noexcept;

} // namespace copyoffload
