// A decoded COPY request with its descriptors, waiting for or running on a
// worker. Holding the connection keeps it alive until the reply is sent.
#pragma once

#include "copyoffload_protocol.h"
#include "logging.hpp"
#include "share_registry.hpp"
#include "unique_fd.hpp"

#include <chrono>
#include <memory>
#include <optional>

namespace copyoffload {

class Connection;

struct CopyJob {
	std::shared_ptr<Connection> connection;
	copyoffload_copy_request request{};
	UniqueFd source;
	UniqueFd destination;
	// The share it counts for and the policy it follows; no share: the
	// engine's defaults, no limits, not counted.
	ShareBinding share{};
	std::optional<ShareState::InFlight> in_flight{};
	std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
};

// Runs on a worker thread: copies under the share's policy (method order,
// largest segment, bandwidth), closes the descriptors, logs the outcome,
// answers the client, counts it in the share's statistics. Never throws.
void run_copy_job(CopyJob &job, const Logger &log) noexcept;

} // namespace copyoffload
