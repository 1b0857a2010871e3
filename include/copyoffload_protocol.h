/*
 * copyoffload wire protocol: the VFS module inside smbd <-> copyoffloadd.
 *
 * Transport: a unix SOCK_SEQPACKET socket, one message per packet. Every
 * message is a fixed-size little-endian record: a 24-byte header followed
 * by a type-specific body. A COPY request carries exactly two descriptors
 * (source, destination) as SCM_RIGHTS; no other message carries any.
 *
 * The session starts with HELLO (client) / HELLO_REPLY (daemon), which
 * settles the protocol version; after that the client sends COPY requests
 * and the daemon answers each with exactly one COPY_REPLY carrying the same
 * request id. Replies may arrive in any order.
 *
 * This header is plain C (C99) and is compiled by both the C module and the
 * C++ daemon. All functions are pure: they never touch descriptors.
 */
#ifndef COPYOFFLOAD_PROTOCOL_H
#define COPYOFFLOAD_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where copyoffloadd listens unless configured otherwise. */
#define COPYOFFLOAD_DEFAULT_SOCKET "/run/copyoffload/copyoffloadd.sock"

#define COPYOFFLOAD_MAGIC 0x46464f43u /* "COFF" as little-endian bytes */
#define COPYOFFLOAD_PROTOCOL_VERSION 1

enum copyoffload_msg_type {
	COPYOFFLOAD_MSG_HELLO = 1,
	COPYOFFLOAD_MSG_HELLO_REPLY = 2,
	COPYOFFLOAD_MSG_COPY = 3,
	COPYOFFLOAD_MSG_COPY_REPLY = 4,
};

/* Data movement methods, in the order the engine prefers them. */
enum copyoffload_method {
	COPYOFFLOAD_METHOD_CLONE = 0,           /* FICLONERANGE */
	COPYOFFLOAD_METHOD_COPY_FILE_RANGE = 1, /* copy_file_range(2) */
	COPYOFFLOAD_METHOD_DEVICE = 2,          /* NVMe Copy / SCSI XCOPY */
	COPYOFFLOAD_METHOD_READ_WRITE = 3,      /* plain data copy */
	COPYOFFLOAD_METHOD_COUNT = 4,
};

#define COPYOFFLOAD_METHOD_BIT(m) (1u << (m))
#define COPYOFFLOAD_METHODS_ALL ((1u << COPYOFFLOAD_METHOD_COUNT) - 1)

/* COPY request flags. */
#define COPYOFFLOAD_COPY_CLONE_ONLY 0x1u /* all-or-nothing clone (dup extents) */
#define COPYOFFLOAD_COPY_FLAGS_ALL COPYOFFLOAD_COPY_CLONE_ONLY

/*
 * Largest range one COPY may name. Offsets plus length must also fit in a
 * signed 64-bit off_t; the daemon may enforce a smaller per-share limit.
 */
#define COPYOFFLOAD_MAX_COPY_LENGTH (UINT64_C(1) << 48)

#define COPYOFFLOAD_HEADER_SIZE 24
#define COPYOFFLOAD_HELLO_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_HELLO_REPLY_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_COPY_SIZE (COPYOFFLOAD_HEADER_SIZE + 32)
#define COPYOFFLOAD_COPY_REPLY_SIZE \
	(COPYOFFLOAD_HEADER_SIZE + 16 + 8 * COPYOFFLOAD_METHOD_COUNT)
#define COPYOFFLOAD_MAX_MESSAGE_SIZE COPYOFFLOAD_COPY_REPLY_SIZE

struct copyoffload_header {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length; /* whole message, header included */
	uint32_t reserved; /* must be 0 */
	uint64_t request_id;
};

struct copyoffload_hello {
	uint64_t request_id;
	uint16_t min_version;
	uint16_t max_version;
};

struct copyoffload_hello_reply {
	uint64_t request_id;
	int32_t status;   /* 0, or a positive errno (EPROTONOSUPPORT) */
	uint16_t version; /* the version both sides now speak */
};

struct copyoffload_copy_request {
	uint64_t request_id;
	uint64_t src_offset;
	uint64_t dst_offset;
	uint64_t length;
	uint32_t methods; /* COPYOFFLOAD_METHOD_BIT mask the engine may use */
	uint32_t flags;   /* COPYOFFLOAD_COPY_* */
};

struct copyoffload_copy_reply {
	uint64_t request_id;
	int32_t status; /* 0, or a positive errno */
	uint64_t bytes_done; /* contiguous bytes from the start, exactly */
	uint64_t bytes_by_method[COPYOFFLOAD_METHOD_COUNT];
};

enum copyoffload_decode_result {
	COPYOFFLOAD_DECODE_OK = 0,
	COPYOFFLOAD_DECODE_TRUNCATED,   /* shorter than the header or its type */
	COPYOFFLOAD_DECODE_BAD_MAGIC,
	COPYOFFLOAD_DECODE_BAD_VERSION,
	COPYOFFLOAD_DECODE_BAD_TYPE,
	COPYOFFLOAD_DECODE_BAD_LENGTH,  /* length field disagrees with size */
	COPYOFFLOAD_DECODE_BAD_FIELD,   /* reserved bits, ranges, overflow */
};

static inline const char *
copyoffload_decode_result_string(enum copyoffload_decode_result r)
{
	switch (r) {
	case COPYOFFLOAD_DECODE_OK: return "ok";
	case COPYOFFLOAD_DECODE_TRUNCATED: return "truncated message";
	case COPYOFFLOAD_DECODE_BAD_MAGIC: return "bad magic";
	case COPYOFFLOAD_DECODE_BAD_VERSION: return "unsupported protocol version";
	case COPYOFFLOAD_DECODE_BAD_TYPE: return "unknown message type";
	case COPYOFFLOAD_DECODE_BAD_LENGTH: return "length field does not match message size";
	case COPYOFFLOAD_DECODE_BAD_FIELD: return "invalid field value";
	}
	return "unknown decode result";
}

static inline const char *
copyoffload_method_name(unsigned m)
{
	switch (m) {
	case COPYOFFLOAD_METHOD_CLONE: return "clone";
	case COPYOFFLOAD_METHOD_COPY_FILE_RANGE: return "copy_file_range";
	case COPYOFFLOAD_METHOD_DEVICE: return "device";
	case COPYOFFLOAD_METHOD_READ_WRITE: return "read_write";
	}
	return "unknown";
}

/* Little-endian field access, independent of host byte order. */

static inline void copyoffload_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void copyoffload_put32(uint8_t *p, uint32_t v)
{
	copyoffload_put16(p, (uint16_t)v);
	copyoffload_put16(p + 2, (uint16_t)(v >> 16));
}

static inline void copyoffload_put64(uint8_t *p, uint64_t v)
{
	copyoffload_put32(p, (uint32_t)v);
	copyoffload_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t copyoffload_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t copyoffload_get32(const uint8_t *p)
{
	return copyoffload_get16(p) | ((uint32_t)copyoffload_get16(p + 2) << 16);
}

static inline uint64_t copyoffload_get64(const uint8_t *p)
{
	return copyoffload_get32(p) | ((uint64_t)copyoffload_get32(p + 4) << 32);
}

/*
 * Takes the raw wire value: converting an unknown type to the enum first
 * would be undefined behaviour when the header is compiled as C++.
 */
static inline size_t
copyoffload_message_size(unsigned type)
{
	switch (type) {
	case COPYOFFLOAD_MSG_HELLO: return COPYOFFLOAD_HELLO_SIZE;
	case COPYOFFLOAD_MSG_HELLO_REPLY: return COPYOFFLOAD_HELLO_REPLY_SIZE;
	case COPYOFFLOAD_MSG_COPY: return COPYOFFLOAD_COPY_SIZE;
	case COPYOFFLOAD_MSG_COPY_REPLY: return COPYOFFLOAD_COPY_REPLY_SIZE;
	}
	return 0;
}

static inline void
copyoffload_encode_header(uint8_t *buf, enum copyoffload_msg_type type,
			  uint16_t version, uint64_t request_id)
{
	copyoffload_put32(buf, COPYOFFLOAD_MAGIC);
	copyoffload_put16(buf + 4, version);
	copyoffload_put16(buf + 6, (uint16_t)type);
	copyoffload_put32(buf + 8, (uint32_t)copyoffload_message_size(type));
	copyoffload_put32(buf + 12, 0);
	copyoffload_put64(buf + 16, request_id);
}

/*
 * Checks everything the header alone can tell: magic, a known type, the
 * length field equal to both the received size and the type's size, the
 * reserved word zero. HELLO may carry any version (it negotiates one);
 * every other message must carry COPYOFFLOAD_PROTOCOL_VERSION.
 */
static inline enum copyoffload_decode_result
copyoffload_decode_header(const uint8_t *buf, size_t len,
			  struct copyoffload_header *h)
{
	size_t expected;

	if (len < COPYOFFLOAD_HEADER_SIZE) {
		return COPYOFFLOAD_DECODE_TRUNCATED;
	}
	h->magic = copyoffload_get32(buf);
	h->version = copyoffload_get16(buf + 4);
	h->type = copyoffload_get16(buf + 6);
	h->length = copyoffload_get32(buf + 8);
	h->reserved = copyoffload_get32(buf + 12);
	h->request_id = copyoffload_get64(buf + 16);

	if (h->magic != COPYOFFLOAD_MAGIC) {
		return COPYOFFLOAD_DECODE_BAD_MAGIC;
	}
	expected = copyoffload_message_size(h->type);
	if (expected == 0) {
		return COPYOFFLOAD_DECODE_BAD_TYPE;
	}
	if (h->type != COPYOFFLOAD_MSG_HELLO &&
	    h->version != COPYOFFLOAD_PROTOCOL_VERSION) {
		return COPYOFFLOAD_DECODE_BAD_VERSION;
	}
	if (len < expected) {
		return COPYOFFLOAD_DECODE_TRUNCATED;
	}
	if (h->length != expected || len != expected) {
		return COPYOFFLOAD_DECODE_BAD_LENGTH;
	}
	if (h->reserved != 0) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

static inline enum copyoffload_decode_result
copyoffload_decode_body_header(const uint8_t *buf, size_t len,
			       enum copyoffload_msg_type type,
			       struct copyoffload_header *h)
{
	enum copyoffload_decode_result r = copyoffload_decode_header(buf, len, h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	return h->type == type ? COPYOFFLOAD_DECODE_OK
			       : COPYOFFLOAD_DECODE_BAD_TYPE;
}

/* --- HELLO ------------------------------------------------------------ */

static inline size_t
copyoffload_encode_hello(uint8_t buf[COPYOFFLOAD_HELLO_SIZE],
			 const struct copyoffload_hello *m)
{
	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_HELLO, m->max_version,
				  m->request_id);
	copyoffload_put16(buf + 24, m->min_version);
	copyoffload_put16(buf + 26, m->max_version);
	copyoffload_put32(buf + 28, 0);
	return COPYOFFLOAD_HELLO_SIZE;
}

static inline enum copyoffload_decode_result
copyoffload_decode_hello(const uint8_t *buf, size_t len,
			 struct copyoffload_hello *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_HELLO, &h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->min_version = copyoffload_get16(buf + 24);
	m->max_version = copyoffload_get16(buf + 26);
	if (m->min_version == 0 || m->min_version > m->max_version ||
	    copyoffload_get32(buf + 28) != 0) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

/* The version a daemon speaking only COPYOFFLOAD_PROTOCOL_VERSION picks. */
static inline bool
copyoffload_hello_acceptable(const struct copyoffload_hello *m)
{
	return m->min_version <= COPYOFFLOAD_PROTOCOL_VERSION &&
	       m->max_version >= COPYOFFLOAD_PROTOCOL_VERSION;
}

/* --- HELLO_REPLY ------------------------------------------------------ */

static inline size_t
copyoffload_encode_hello_reply(uint8_t buf[COPYOFFLOAD_HELLO_REPLY_SIZE],
			       const struct copyoffload_hello_reply *m)
{
	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_HELLO_REPLY,
				  COPYOFFLOAD_PROTOCOL_VERSION, m->request_id);
	copyoffload_put32(buf + 24, (uint32_t)m->status);
	copyoffload_put16(buf + 28, m->version);
	copyoffload_put16(buf + 30, 0);
	return COPYOFFLOAD_HELLO_REPLY_SIZE;
}

static inline enum copyoffload_decode_result
copyoffload_decode_hello_reply(const uint8_t *buf, size_t len,
			       struct copyoffload_hello_reply *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_HELLO_REPLY, &h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->status = (int32_t)copyoffload_get32(buf + 24);
	m->version = copyoffload_get16(buf + 28);
	if (m->status < 0 || copyoffload_get16(buf + 30) != 0) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

/* --- COPY ------------------------------------------------------------- */

static inline size_t
copyoffload_encode_copy_request(uint8_t buf[COPYOFFLOAD_COPY_SIZE],
				const struct copyoffload_copy_request *m)
{
	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_COPY,
				  COPYOFFLOAD_PROTOCOL_VERSION, m->request_id);
	copyoffload_put64(buf + 24, m->src_offset);
	copyoffload_put64(buf + 32, m->dst_offset);
	copyoffload_put64(buf + 40, m->length);
	copyoffload_put32(buf + 48, m->methods);
	copyoffload_put32(buf + 52, m->flags);
	return COPYOFFLOAD_COPY_SIZE;
}

/* True when [offset, offset + length) fits in a signed 64-bit off_t. */
static inline bool
copyoffload_range_fits(uint64_t offset, uint64_t length)
{
	return offset <= (uint64_t)INT64_MAX &&
	       length <= (uint64_t)INT64_MAX - offset;
}

static inline enum copyoffload_decode_result
copyoffload_decode_copy_request(const uint8_t *buf, size_t len,
				struct copyoffload_copy_request *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_COPY, &h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->src_offset = copyoffload_get64(buf + 24);
	m->dst_offset = copyoffload_get64(buf + 32);
	m->length = copyoffload_get64(buf + 40);
	m->methods = copyoffload_get32(buf + 48);
	m->flags = copyoffload_get32(buf + 52);

	if (m->length > COPYOFFLOAD_MAX_COPY_LENGTH ||
	    !copyoffload_range_fits(m->src_offset, m->length) ||
	    !copyoffload_range_fits(m->dst_offset, m->length) ||
	    m->methods == 0 || (m->methods & ~COPYOFFLOAD_METHODS_ALL) != 0 ||
	    (m->flags & ~COPYOFFLOAD_COPY_FLAGS_ALL) != 0) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

/* --- COPY_REPLY ------------------------------------------------------- */

static inline size_t
copyoffload_encode_copy_reply(uint8_t buf[COPYOFFLOAD_COPY_REPLY_SIZE],
			      const struct copyoffload_copy_reply *m)
{
	unsigned i;

	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_COPY_REPLY,
				  COPYOFFLOAD_PROTOCOL_VERSION, m->request_id);
	copyoffload_put32(buf + 24, (uint32_t)m->status);
	copyoffload_put32(buf + 28, 0);
	copyoffload_put64(buf + 32, m->bytes_done);
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		copyoffload_put64(buf + 40 + 8 * i, m->bytes_by_method[i]);
	}
	return COPYOFFLOAD_COPY_REPLY_SIZE;
}

/*
 * Beyond the layout, a reply must be self-consistent: the per-method bytes
 * add up to bytes_done without overflow, so a client never believes more
 * was copied than the daemon says it did.
 */
static inline enum copyoffload_decode_result
copyoffload_decode_copy_reply(const uint8_t *buf, size_t len,
			      struct copyoffload_copy_reply *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_COPY_REPLY, &h);
	uint64_t sum = 0;
	unsigned i;

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->status = (int32_t)copyoffload_get32(buf + 24);
	m->bytes_done = copyoffload_get64(buf + 32);
	if (m->status < 0 || copyoffload_get32(buf + 28) != 0 ||
	    m->bytes_done > COPYOFFLOAD_MAX_COPY_LENGTH) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		m->bytes_by_method[i] = copyoffload_get64(buf + 40 + 8 * i);
		if (m->bytes_by_method[i] > COPYOFFLOAD_MAX_COPY_LENGTH) {
			return COPYOFFLOAD_DECODE_BAD_FIELD;
		}
		sum += m->bytes_by_method[i];
	}
	if (sum != m->bytes_done) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* COPYOFFLOAD_PROTOCOL_H */
