#include "connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

namespace copyoffload {

namespace {

const char *message_type_name(std::uint16_t type)
{
	switch (type) {
	case COPYOFFLOAD_MSG_HELLO: return "HELLO";
	case COPYOFFLOAD_MSG_HELLO_REPLY: return "HELLO_REPLY";
	case COPYOFFLOAD_MSG_COPY: return "COPY";
	case COPYOFFLOAD_MSG_COPY_REPLY: return "COPY_REPLY";
	case COPYOFFLOAD_MSG_SHARE: return "SHARE";
	case COPYOFFLOAD_MSG_STATS: return "STATS";
	case COPYOFFLOAD_MSG_STATS_REPLY: return "STATS_REPLY";
	case COPYOFFLOAD_MSG_RELEASE: return "RELEASE";
	case COPYOFFLOAD_MSG_CLONED: return "CLONED";
	}
	return "unknown";
}

// Why a message that must carry no descriptors is malformed (what its
// decoder said, or that it carries some), or null when it is well formed.
const char *malformation(copyoffload_decode_result decoded, const ReceivedMessage &message)
{
	if (decoded != COPYOFFLOAD_DECODE_OK) {
		return copyoffload_decode_result_string(decoded);
	}
	return message.descriptors.empty() ? nullptr : "carries descriptors";
}

// Takes ownership of every descriptor in the control data, so that each is
// closed even when the message turns out to be bad.
void collect_descriptors(msghdr &header, std::vector<UniqueFd> &descriptors)
{
	// The control buffer bounds the count: no allocation (and so no
	// exception) can strand a descriptor half way through.
	descriptors.reserve(Connection::max_descriptors);
	for (cmsghdr *cmsg = CMSG_FIRSTHDR(&header); cmsg != nullptr;
	     cmsg = CMSG_NXTHDR(&header, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
			continue;
		}
		std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *data = CMSG_DATA(cmsg);
		for (std::size_t i = 0; i < count; i++) {
			int fd = -1;
			std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
			descriptors.emplace_back(fd);
		}
	}
}

std::string describe_policy(const ShareBinding &binding,
			    const copyoffload_share &declaration)
{
	std::string methods;
	for (copyoffload_method method : binding.order) {
		methods += methods.empty() ? "" : ",";
		methods += copyoffload_method_name(method);
	}
	return fmt::format("methods={} max_segment={} max_bytes_per_second={} "
			   "max_concurrent={} preallocate={}",
			   methods, declaration.max_segment,
			   declaration.max_bytes_per_second, declaration.max_concurrent,
			   binding.preallocate ? "yes" : "no");
}

} // namespace

Connection::Connection(UniqueFd socket, PeerCredentials peer, const Logger &log,
		       ShareRegistry &shares)
	: socket_(std::move(socket)), peer_(peer), log_(log), shares_(shares)
{
}

std::string Connection::describe() const
{
	return fmt::format("peer pid={} uid={}", peer_.pid, peer_.uid);
}

Connection::ReceiveStatus Connection::receive(ReceivedMessage &message)
{
	alignas(cmsghdr) std::array<unsigned char,
				    CMSG_SPACE(sizeof(int) * max_descriptors)> control{};
	iovec data{message.bytes.data(), message.bytes.size()};
	msghdr header{};
	header.msg_iov = &data;
	header.msg_iovlen = 1;
	header.msg_control = control.data();
	header.msg_controllen = control.size();

	ssize_t n;
	bool reset_seen = false;
	for (;;) {
		n = ::recvmsg(socket_.get(), &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		// The client closed with a reply of ours unread: the kernel
		// reports that once, ahead of what it sent before it left.
		if (n < 0 && errno == ECONNRESET && !reset_seen) {
			reset_seen = true;
			note_peer_gone("receiving");
			continue;
		}
		break;
	}
	if (n < 0) {
		int error = errno;
		if (error == EAGAIN || error == EWOULDBLOCK) {
			return ReceiveStatus::would_block;
		}
		log_.warning("{}: receiving failed: {}", describe(), describe_errno(error));
		return ReceiveStatus::failed;
	}
	collect_descriptors(header, message.descriptors);
	if (n == 0) {
		// End of stream (a zero-length packet would be malformed anyway).
		return ReceiveStatus::closed;
	}
	message.size = static_cast<std::size_t>(n);
	message.truncated = (header.msg_flags & MSG_TRUNC) != 0;
	message.control_truncated = (header.msg_flags & MSG_CTRUNC) != 0;
	return ReceiveStatus::message;
}

Connection::ReadOutcome Connection::read_messages(std::vector<CopyJob> &jobs, int limit)
{
	for (int i = 0; i < limit; i++) {
		ReceivedMessage message;
		switch (receive(message)) {
		case ReceiveStatus::would_block:
			return ReadOutcome::keep_open;
		case ReceiveStatus::closed:
		case ReceiveStatus::failed:
			return ReadOutcome::close;
		case ReceiveStatus::message:
			break;
		}
		if (handle_message(message, jobs) == ReadOutcome::close) {
			return ReadOutcome::close;
		}
	}
	return ReadOutcome::keep_open;
}

Connection::ReadOutcome Connection::handle_message(ReceivedMessage &message,
						   std::vector<CopyJob> &jobs)
{
	copyoffload_header header{};
	auto decoded = copyoffload_decode_header(message.bytes.data(), message.size, &header);
	if (decoded != COPYOFFLOAD_DECODE_OK) {
		std::string problem =
			message.truncated
				? fmt::format("oversized message (more than {} bytes)",
					      COPYOFFLOAD_MAX_REQUEST_SIZE)
				: fmt::format("malformed message of {} bytes ({})", message.size,
					      copyoffload_decode_result_string(decoded));
		// A whole header with our magic carries a request id worth
		// answering: that request fails, the session goes on (packets
		// keep their boundaries, so nothing is out of step). Anything
		// else is not this protocol, and neither is a bad handshake.
		bool answerable = handshake_done_ &&
				  message.size >= COPYOFFLOAD_HEADER_SIZE &&
				  header.magic == COPYOFFLOAD_MAGIC;
		if (!answerable) {
			log_.warning("{}: {}, closing connection", describe(), problem);
			return ReadOutcome::close;
		}
		log_.warning("{}: {} id={}, replying EBADMSG", describe(), problem,
			     header.request_id);
		return reply_error(header.request_id, EBADMSG);
	}

	if (!handshake_done_) {
		if (header.type != COPYOFFLOAD_MSG_HELLO) {
			log_.warning("{}: first message is {} instead of HELLO, closing connection",
				     describe(), message_type_name(header.type));
			return ReadOutcome::close;
		}
		return handle_hello(message, header.request_id);
	}
	switch (header.type) {
	case COPYOFFLOAD_MSG_COPY:
		return handle_copy(message, header.request_id, jobs);
	case COPYOFFLOAD_MSG_SHARE:
		return handle_share(message, header.request_id);
	case COPYOFFLOAD_MSG_STATS:
		return handle_stats(message, header.request_id);
	case COPYOFFLOAD_MSG_RELEASE:
		return handle_release(message, header.request_id);
	case COPYOFFLOAD_MSG_CLONED:
		return handle_cloned(message, header.request_id);
	default:
		break;
	}
	log_.warning("{}: unexpected {} message id={} after the handshake, replying EBADMSG",
		     describe(), message_type_name(header.type), header.request_id);
	return reply_error(header.request_id, EBADMSG);
}

Connection::ReadOutcome Connection::handle_hello(const ReceivedMessage &message,
						 std::uint64_t request_id)
{
	copyoffload_hello hello{};
	auto decoded = copyoffload_decode_hello(message.bytes.data(), message.size, &hello);
	copyoffload_hello_reply reply{};
	reply.request_id = request_id;
	reply.version = COPYOFFLOAD_PROTOCOL_VERSION; // tells a refused peer what we speak

	if (const char *problem = malformation(decoded, message)) {
		log_.warning("{}: malformed HELLO ({}), closing connection", describe(), problem);
		reply.status = EBADMSG;
	} else if (!copyoffload_hello_acceptable(&hello)) {
		log_.warning("{}: speaks protocol versions {}..{}, this daemon only {}; "
			     "closing connection",
			     describe(), hello.min_version, hello.max_version,
			     COPYOFFLOAD_PROTOCOL_VERSION);
		reply.status = EPROTONOSUPPORT;
	}

	std::array<std::uint8_t, COPYOFFLOAD_HELLO_REPLY_SIZE> bytes{};
	copyoffload_encode_hello_reply(bytes.data(), &reply);
	if (replied(send_bytes(bytes.data(), bytes.size(), false)) == ReadOutcome::close ||
	    reply.status != 0) {
		return ReadOutcome::close;
	}
	handshake_done_ = true;
	log_.debug("{}: handshake done, protocol version {}", describe(),
		   COPYOFFLOAD_PROTOCOL_VERSION);
	return ReadOutcome::keep_open;
}

Connection::ReadOutcome Connection::handle_copy(ReceivedMessage &message,
						std::uint64_t request_id,
						std::vector<CopyJob> &jobs)
{
	copyoffload_copy_request request{};
	auto decoded = copyoffload_decode_copy_request(message.bytes.data(),
						       message.size, &request);
	if (decoded != COPYOFFLOAD_DECODE_OK) {
		log_.warning("{}: malformed COPY id={} ({}), replying EBADMSG", describe(),
			     request_id, copyoffload_decode_result_string(decoded));
		return reply_error(request_id, EBADMSG);
	}
	if (peer_gone_) {
		// Nobody waits for its result: smbd has dropped the request.
		log_.debug("{}: COPY id={} from a client that has gone, not started",
			   describe(), request_id);
		return ReadOutcome::keep_open;
	}
	ReadOutcome outcome = ReadOutcome::keep_open;
	std::shared_ptr<DescriptorPair> files = copy_files(message, request, outcome);
	if (!files) {
		return outcome;
	}
	ShareBinding binding;
	if (request.share_id == 0) {
		binding = shares_.unattributed();
	} else if (auto found = bindings_.find(request.share_id); found != bindings_.end()) {
		if (!found->second.share) {
			// Not the client's fault: it may copy another way.
			log_.warning("{}: COPY id={} names share id {}, whose SHARE was refused "
				     "(too many shares in use), replying EUSERS",
				     describe(), request_id, request.share_id);
			return reply_error(request_id, EUSERS);
		}
		binding = found->second;
	} else {
		log_.warning("{}: COPY id={} names share id {}, which this connection has not "
			     "declared (or whose SHARE was refused), replying EINVAL",
			     describe(), request_id, request.share_id);
		return reply_error(request_id, EINVAL);
	}
	if (refusing_copies_) {
		log_.info("{}: COPY id={} refused with ESHUTDOWN: the daemon is shutting down",
			  describe(), request_id);
		return reply_error(request_id, ESHUTDOWN);
	}
	ShareState::InFlight in_flight(binding.share);
	jobs.push_back(CopyJob{
		.connection = shared_from_this(),
		.request = request,
		.files = std::move(files),
		.share = std::move(binding),
		.in_flight = std::move(in_flight),
	});
	return ReadOutcome::keep_open;
}

std::shared_ptr<DescriptorPair> Connection::copy_files(ReceivedMessage &message,
						       const copyoffload_copy_request &request,
						       ReadOutcome &outcome)
{
	const std::size_t count = message.descriptors.size();
	if (!message.control_truncated && count == 0 && request.handle != 0) {
		if (auto files = descriptors_.find(request.handle)) {
			return files;
		}
		// Forgotten (beyond the table's bound), released, or from
		// before a restart: the client sends the descriptors again.
		log_.debug("{}: COPY id={} names descriptor handle {}, which is not held, "
			   "replying ESTALE",
			   describe(), request.request_id, request.handle);
		outcome = reply_error(request.request_id, ESTALE);
		return nullptr;
	}
	if (message.control_truncated || count != 2) {
		log_.warning("{}: COPY id={} carries {}{} descriptors instead of 2{}, replying EBADF",
			     describe(), request.request_id,
			     message.control_truncated ? "more than " : "", count,
			     request.handle != 0 ? " or none" : "");
		outcome = reply_error(request.request_id, EBADF);
		return nullptr;
	}
	auto files = DescriptorPair::make(std::move(message.descriptors[0]),
					  std::move(message.descriptors[1]));
	if (request.handle != 0) {
		descriptors_.add(request.handle, files);
	}
	return files;
}

Connection::ReadOutcome Connection::handle_release(const ReceivedMessage &message,
						   std::uint64_t request_id)
{
	// No reply, like SHARE: a bad one is only logged.
	copyoffload_release release{};
	auto decoded = copyoffload_decode_release(message.bytes.data(), message.size, &release);
	if (const char *problem = malformation(decoded, message)) {
		log_.warning("{}: malformed RELEASE id={} ({})", describe(), request_id, problem);
		return ReadOutcome::keep_open;
	}
	// An unknown handle is no error: the table may have forgotten it.
	descriptors_.remove(release.handle);
	return ReadOutcome::keep_open;
}

Connection::ReadOutcome Connection::handle_cloned(const ReceivedMessage &message,
						  std::uint64_t request_id)
{
	// No reply, like RELEASE: a bad one is only logged, and counts nothing.
	copyoffload_cloned cloned{};
	auto decoded = copyoffload_decode_cloned(message.bytes.data(), message.size, &cloned);
	if (const char *problem = malformation(decoded, message)) {
		log_.warning("{}: malformed CLONED id={} ({})", describe(), request_id, problem);
		return ReadOutcome::keep_open;
	}
	auto found = bindings_.find(cloned.share_id);
	if (found == bindings_.end() || !found->second.share) {
		log_.warning("{}: CLONED id={} names share id {}, which this connection has not "
			     "declared (or whose SHARE was refused); not counted",
			     describe(), request_id, cloned.share_id);
		return ReadOutcome::keep_open;
	}
	if (!found->second.share->stats().record_inline_clones(cloned.copies, cloned.bytes)) {
		log_.warning("{}: CLONED id={} claims {} bytes, more than share \"{}\"'s "
			     "counters can add; not counted",
			     describe(), request_id, cloned.bytes, found->second.share->name());
		return ReadOutcome::keep_open;
	}
	log_.debug("{}: share \"{}\": {} clones of {} bytes made in smbd", describe(),
		   found->second.share->name(), cloned.copies, cloned.bytes);
	return ReadOutcome::keep_open;
}

Connection::ReadOutcome Connection::handle_share(const ReceivedMessage &message,
						 std::uint64_t request_id)
{
	// A SHARE gets no reply: a bad one is logged, and the COPYs that name
	// its id are then refused (EINVAL), not run under some other policy.
	copyoffload_share declaration{};
	auto decoded = copyoffload_decode_share(message.bytes.data(), message.size, &declaration);
	if (const char *problem = malformation(decoded, message)) {
		log_.warning("{}: malformed SHARE id={} for share id {} ({}); copies naming it "
			     "will be refused",
			     describe(), request_id, declaration.share_id, problem);
		bindings_.erase(declaration.share_id);
		return ReadOutcome::keep_open;
	}
	bool limits_changed = false;
	ShareBinding binding = shares_.declare(declaration, limits_changed);
	const std::string policy = describe_policy(binding, declaration);
	if (!binding.share) {
		log_.error("{}: SHARE \"{}\" refused: all {} shares the daemon keeps are in use; "
			   "copies naming share id {} will be answered EUSERS and go to smbd",
			   describe(), declaration.name, ShareRegistry::max_shares,
			   declaration.share_id);
		bindings_[declaration.share_id] = std::move(binding); // without a share: refused
		return ReadOutcome::keep_open;
	}
	if (limits_changed) {
		log_.info("share \"{}\": limits set by {}: max_bytes_per_second={} "
			  "max_concurrent={}",
			  binding.share->name(), describe(), declaration.max_bytes_per_second,
			  declaration.max_concurrent);
	}
	log_.debug("{}: share id {} is \"{}\": {}", describe(), declaration.share_id,
		   binding.share->name(), policy);
	bindings_[declaration.share_id] = std::move(binding);
	return ReadOutcome::keep_open;
}

Connection::ReadOutcome Connection::handle_stats(const ReceivedMessage &message,
						 std::uint64_t request_id)
{
	copyoffload_stats_request request{};
	auto decoded = copyoffload_decode_stats_request(message.bytes.data(), message.size,
							&request);
	auto reply = std::make_unique<copyoffload_stats_reply>();
	reply->request_id = request_id;
	if (const char *problem = malformation(decoded, message)) {
		log_.warning("{}: malformed STATS id={} ({}), replying EBADMSG", describe(),
			     request_id, problem);
		reply->status = EBADMSG;
	} else {
		auto records = shares_.page(request.cursor, COPYOFFLOAD_STATS_MAX_RECORDS,
					    reply->next_cursor);
		reply->count = static_cast<std::uint32_t>(records.size());
		std::copy(records.begin(), records.end(), reply->records);
	}
	std::vector<std::uint8_t> bytes(COPYOFFLOAD_STATS_REPLY_MAX_SIZE);
	std::size_t size = copyoffload_encode_stats_reply(bytes.data(), bytes.size(), reply.get());
	return replied(send_bytes(bytes.data(), size, false));
}

Connection::ReadOutcome Connection::reply_error(std::uint64_t request_id, int status)
{
	copyoffload_copy_reply reply{};
	reply.request_id = request_id;
	reply.status = status;
	return replied(send_copy_reply(reply, false));
}

Connection::ReadOutcome Connection::replied(bool sent) const
{
	// A client that has gone may have sent more before it left (a CLONED
	// report at tree disconnect, say): it is read up to the end of stream.
	return sent || peer_gone_ ? ReadOutcome::keep_open : ReadOutcome::close;
}

void Connection::note_peer_gone(const char *noticed_while)
{
	if (!peer_gone_.exchange(true)) {
		log_.debug("{}: the client has gone (noticed while {}); what it sent before "
			   "is still read, its copies are not started",
			   describe(), noticed_while);
	}
}

bool Connection::send_copy_reply(const copyoffload_copy_reply &reply, bool may_block)
{
	if (cancelled()) {
		return false;
	}
	std::array<std::uint8_t, COPYOFFLOAD_COPY_REPLY_SIZE> bytes{};
	copyoffload_encode_copy_reply(bytes.data(), &reply);
	return send_bytes(bytes.data(), bytes.size(), may_block);
}

bool Connection::send_bytes(const std::uint8_t *data, std::size_t size, bool may_block)
{
	// The lock only covers non-blocking sends, so a worker waiting for a
	// slow client never holds up the main thread; waiting happens in
	// poll(), outside the lock.
	auto deadline = std::chrono::steady_clock::now() + reply_send_timeout;
	for (;;) {
		ssize_t n;
		{
			std::lock_guard lock(send_mutex_);
			do {
				n = ::send(socket_.get(), data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
			} while (n < 0 && errno == EINTR);
		}
		if (n >= 0) {
			return static_cast<std::size_t>(n) == size; // packets go whole or not at all
		}
		int error = errno;
		if (error == EPIPE || error == ECONNRESET || error == ENOTCONN) {
			note_peer_gone("replying");
			return false;
		}
		if ((error != EAGAIN && error != EWOULDBLOCK) || !may_block) {
			log_.warning("{}: sending a reply failed: {}", describe(),
				     describe_errno(error));
			return false;
		}
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0 || cancelled()) {
			log_.warning("{}: client has not read its replies for {} s",
				     describe(), reply_send_timeout.count());
			return false;
		}
		pollfd writable{socket_.get(), POLLOUT, 0};
		::poll(&writable, 1, static_cast<int>(std::min<long long>(left.count(), 100)));
	}
}

void Connection::abort()
{
	cancel();
	::shutdown(socket_.get(), SHUT_RDWR);
}

} // namespace copyoffload
