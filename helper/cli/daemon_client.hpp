// The copyoffload tool's side of the daemon's protocol: connect (as root),
// shake hands, fetch the statistics page by page.
#pragma once

#include "copyoffload_protocol.h"
#include "unique_fd.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace copyoffload::cli {

class DaemonClient {
public:
	// Connects and completes the handshake. Throws std::runtime_error
	// saying what failed (no daemon, permission, protocol).
	static DaemonClient connect(const std::string &socket_path,
				    std::chrono::milliseconds timeout = std::chrono::seconds(10));

	// Every share's record, in name order.
	std::vector<copyoffload_share_stats> fetch_stats();

private:
	DaemonClient(UniqueFd fd, std::string path, std::chrono::milliseconds timeout)
		: fd_(std::move(fd)), path_(std::move(path)), timeout_(timeout)
	{
	}

	void send(const std::uint8_t *data, std::size_t size);
	std::vector<std::uint8_t> receive();

	UniqueFd fd_;
	std::string path_;
	std::chrono::milliseconds timeout_;
	std::uint64_t next_request_id_ = 1;
};

} // namespace copyoffload::cli
