// One client (an smbd process, or the copyoffload tool): the handshake
// state, the share ids and descriptor handles it declared, message
// decoding and the serialized sending of replies. One thread (the worker
// that owns the connection, holding reading()) reads; any worker sends.
#pragma once

#include "copy_job.hpp"
#include "copyoffload_protocol.h"
#include "descriptor_table.hpp"
#include "logging.hpp"
#include "share_registry.hpp"
#include "unique_fd.hpp"

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <vector>

namespace copyoffload {

struct PeerCredentials {
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
};

// One received packet. The buffer is one byte larger than the largest
// message so that an oversized packet is seen as such, not as a fit.
struct ReceivedMessage {
	std::array<std::uint8_t, COPYOFFLOAD_MAX_REQUEST_SIZE + 1> bytes{};
	std::size_t size = 0;
	std::vector<UniqueFd> descriptors;
	bool truncated = false;         // MSG_TRUNC: larger than the buffer
	bool control_truncated = false; // MSG_CTRUNC: descriptors were lost
};

class Connection : public std::enable_shared_from_this<Connection> {
public:
	enum class ReadOutcome { keep_open, close };

	// Most descriptors accepted with one message: more than a COPY needs,
	// so a wrong count is reported as such rather than as truncation.
	static constexpr std::size_t max_descriptors = 4;
	// Messages handled per wakeup, so one busy client cannot starve others.
	static constexpr int max_messages_per_read = 32;
	// How long a worker waits for a client to make room for a reply
	// before giving the connection up.
	static constexpr std::chrono::seconds reply_send_timeout{10};

	Connection(UniqueFd socket, PeerCredentials peer, const Logger &log,
		   ShareRegistry &shares);

	[[nodiscard]] int fd() const { return socket_.get(); }
	[[nodiscard]] const PeerCredentials &peer() const { return peer_; }

	// Owner only: handles up to `limit` messages waiting on the socket and
	// appends the COPY requests to run to `jobs`.
	ReadOutcome read_messages(std::vector<CopyJob> &jobs,
				  int limit = max_messages_per_read);

	// Owner only: from now on every COPY is answered ESHUTDOWN at once
	// (the daemon is shutting down); other messages are served.
	void refuse_new_copies() { refusing_copies_ = true; }
	// Any thread: whether refuse_new_copies() ran (the connection was
	// drained).
	[[nodiscard]] bool refusing_new_copies() const { return refusing_copies_.load(); }

	// Any thread. Sends are serialized; `may_block` is false while reading
	// (a worker must not wait on a slow client with its other connections
	// unread), and lets a finished copy wait up to reply_send_timeout for
	// room. False when the reply was not delivered (client gone,
	// cancelled, or not reading).
	bool send_copy_reply(const copyoffload_copy_reply &reply, bool may_block);

	// The client is gone or misbehaved: its running copies stop at their
	// next slice and their replies are not sent.
	void cancel() { stop_source_.request_stop(); }
	[[nodiscard]] bool cancelled() const { return stop_source_.stop_requested(); }
	[[nodiscard]] std::stop_token stop_token() const { return stop_source_.get_token(); }

	// Any thread: the client has closed its end (hangup, EPIPE,
	// ECONNRESET). What it sent before is still read, but its COPYs are
	// not started, and a reply that fails no longer closes the connection.
	void note_peer_gone(const char *noticed_while);

	// A worker could not deliver a reply: stop the connection and wake the
	// main thread (it sees a hangup) to tidy up.
	void abort();

	[[nodiscard]] std::string describe() const;

	// Held by the worker that reads the connection, for as long as it
	// does: a connection moved to another worker (WorkerPool::
	// check_stalls()) is never read by two at once, and one whose reader
	// is stuck in the kernel stays with it.
	std::mutex &reading() { return reading_; }

private:
	enum class ReceiveStatus { message, would_block, closed, failed };

	ReceiveStatus receive(ReceivedMessage &message);
	ReadOutcome handle_message(ReceivedMessage &message, std::vector<CopyJob> &jobs);
	ReadOutcome handle_hello(const ReceivedMessage &message, std::uint64_t request_id);
	ReadOutcome handle_copy(ReceivedMessage &message, std::uint64_t request_id,
				std::vector<CopyJob> &jobs);
	ReadOutcome handle_share(const ReceivedMessage &message, std::uint64_t request_id);
	ReadOutcome handle_release(const ReceivedMessage &message, std::uint64_t request_id);
	ReadOutcome handle_cloned(const ReceivedMessage &message, std::uint64_t request_id);
	// The pair a COPY names: its descriptors (registered under its handle
	// when it has one), or its handle's registered pair. Null after an
	// error reply.
	std::shared_ptr<DescriptorPair> copy_files(ReceivedMessage &message,
						   const copyoffload_copy_request &request,
						   ReadOutcome &outcome);
	ReadOutcome handle_stats(const ReceivedMessage &message, std::uint64_t request_id);
	ReadOutcome reply_error(std::uint64_t request_id, int status);
	// What a handler does after replying: a failed reply closes the
	// connection, unless the client has simply gone.
	ReadOutcome replied(bool sent) const;
	bool send_bytes(const std::uint8_t *data, std::size_t size, bool may_block);

	UniqueFd socket_;
	PeerCredentials peer_;
	const Logger &log_;
	ShareRegistry &shares_;
	// Owner only:
	bool handshake_done_ = false;
	std::atomic<bool> refusing_copies_{false}; // set by the owner only
	std::unordered_map<std::uint32_t, ShareBinding> bindings_; // by share id
	DescriptorTable descriptors_;
	std::mutex reading_;
	std::mutex send_mutex_;
	std::atomic<bool> peer_gone_{false};
	std::stop_source stop_source_;
};

} // namespace copyoffload
