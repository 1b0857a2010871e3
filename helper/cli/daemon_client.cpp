#include "daemon_client.hpp"

#include "logging.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace copyoffload::cli {

namespace {

[[noreturn]] void fail(const std::string &path, const std::string &what)
{
	throw std::runtime_error(fmt::format("copyoffloadd at {}: {}", path, what));
}

} // namespace

DaemonClient DaemonClient::connect(const std::string &socket_path,
				   std::chrono::milliseconds timeout)
{
	sockaddr_un address{};
	address.sun_family = AF_UNIX;
	if (socket_path.size() >= sizeof(address.sun_path)) {
		fail(socket_path, "socket path too long");
	}
	std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
	UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!fd) {
		fail(socket_path, "socket: " + describe_errno(errno));
	}
	if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) != 0) {
		int error = errno;
		fail(socket_path,
		     fmt::format("cannot connect: {}{}", describe_errno(error),
				 error == ENOENT || error == ECONNREFUSED
					 ? " (is copyoffloadd running? see --socket)"
				 : error == EACCES ? " (the socket is root's only)"
						   : ""));
	}
	DaemonClient client(std::move(fd), socket_path, timeout);

	copyoffload_hello hello{client.next_request_id_++, COPYOFFLOAD_PROTOCOL_VERSION,
				COPYOFFLOAD_PROTOCOL_VERSION};
	std::uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
	client.send(buf, copyoffload_encode_hello(buf, &hello));
	std::vector<std::uint8_t> answer = client.receive();
	copyoffload_hello_reply reply{};
	auto decoded = copyoffload_decode_hello_reply(answer.data(), answer.size(), &reply);
	if (decoded != COPYOFFLOAD_DECODE_OK) {
		fail(socket_path, fmt::format("bad handshake reply ({})",
					      copyoffload_decode_result_string(decoded)));
	}
	if (reply.status != 0) {
		fail(socket_path, fmt::format("handshake refused: {} (the daemon speaks "
					      "protocol version {}, this tool {})",
					      describe_errno(reply.status), reply.version,
					      COPYOFFLOAD_PROTOCOL_VERSION));
	}
	return client;
}

void DaemonClient::send(const std::uint8_t *data, std::size_t size)
{
	ssize_t n;
	do {
		n = ::send(fd_.get(), data, size, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != static_cast<ssize_t>(size)) {
		fail(path_, "sending: " + describe_errno(n < 0 ? errno : EPROTO));
	}
}

std::vector<std::uint8_t> DaemonClient::receive()
{
	pollfd readable{fd_.get(), POLLIN, 0};
	int ready;
	do {
		ready = ::poll(&readable, 1, static_cast<int>(timeout_.count()));
	} while (ready < 0 && errno == EINTR);
	if (ready == 0) {
		fail(path_, fmt::format("no answer within {} ms", timeout_.count()));
	}
	std::vector<std::uint8_t> buf(COPYOFFLOAD_MAX_MESSAGE_SIZE + 1);
	ssize_t n;
	do {
		n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		fail(path_, "receiving: " + describe_errno(errno));
	}
	if (n == 0) {
		fail(path_, "the daemon closed the connection (not root? see its log)");
	}
	buf.resize(static_cast<std::size_t>(n));
	return buf;
}

std::vector<copyoffload_share_stats> DaemonClient::fetch_stats()
{
	std::vector<copyoffload_share_stats> records;
	auto reply = std::make_unique<copyoffload_stats_reply>();
	std::uint32_t cursor = 0;
	do {
		copyoffload_stats_request request{next_request_id_++, cursor};
		std::uint8_t buf[COPYOFFLOAD_STATS_SIZE];
		send(buf, copyoffload_encode_stats_request(buf, &request));
		std::vector<std::uint8_t> answer = receive();
		auto decoded = copyoffload_decode_stats_reply(answer.data(), answer.size(),
							      reply.get());
		if (decoded != COPYOFFLOAD_DECODE_OK) {
			fail(path_, fmt::format("bad statistics reply ({})",
						copyoffload_decode_result_string(decoded)));
		}
		if (reply->request_id != request.request_id) {
			fail(path_, "statistics reply for another request");
		}
		if (reply->status != 0) {
			fail(path_, "statistics refused: " + describe_errno(reply->status));
		}
		records.insert(records.end(), reply->records, reply->records + reply->count);
		// Cursors only go forward, so a daemon cannot keep us looping.
		if (reply->next_cursor != 0 && reply->next_cursor <= cursor) {
			fail(path_, "statistics pages out of order");
		}
		cursor = reply->next_cursor;
	} while (cursor != 0);
	return records;
}

} // namespace copyoffload::cli
