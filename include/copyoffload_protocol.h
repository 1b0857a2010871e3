/*
 * copyoffload wire protocol: the VFS module inside smbd (and the copyoffload
 * command-line tool) <-> copyoffloadd.
 *
 * Transport: a unix SOCK_SEQPACKET socket, one message per packet. Every
 * message is a little-endian record: a 24-byte header followed by a
 * type-specific body. All bodies have a fixed size except STATS_REPLY, whose
 * size is its record count times a fixed record size, bounded. A COPY
 * request carries two descriptors (source, destination) as SCM_RIGHTS, or
 * none when it names a descriptor handle registered before; no other
 * message carries any.
 *
 * The session starts with HELLO (client) / HELLO_REPLY (daemon), which
 * settles the protocol version. After that the client sends:
 *   SHARE  declares a share_id for this connection: the share's name and
 *          policy (method order, largest segment, limits, preallocation).
 *          No reply. The daemon handles one connection's messages in
 *          order, so a COPY sent after its SHARE finds it declared.
 *          Declaring an id again replaces its binding for later COPYs.
 *   COPY   answered with exactly one COPY_REPLY carrying the same request
 *          id. Replies may arrive in any order. A COPY with descriptors and
 *          a non-zero handle also registers the pair under that handle
 *          for this connection; later COPYs of the same pair name the
 *          handle and carry no descriptors (no SCM_RIGHTS, no fstat per
 *          copy). The daemon keeps a bounded number of pairs per
 *          connection and answers a handle it does not hold with ESTALE
 *          (nothing copied): the client then sends the descriptors again.
 *   RELEASE drops a handle (the client closed one of its files). No reply.
 *   STATS  answered with one STATS_REPLY: a page of per-share counters.
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
/*
 * 2: COPY names a descriptor handle (@60, reserved in 1); RELEASE.
 * 3: CLONED.
 * 4: COPY_REPLY flags (@28, reserved in 3): COPYOFFLOAD_REPLY_*.
 * 5: SHARE flags (@52, reserved in 4): COPYOFFLOAD_SHARE_*.
 */
#define COPYOFFLOAD_PROTOCOL_VERSION 5

enum copyoffload_msg_type {
	COPYOFFLOAD_MSG_HELLO = 1,
	COPYOFFLOAD_MSG_HELLO_REPLY = 2,
	COPYOFFLOAD_MSG_COPY = 3,
	COPYOFFLOAD_MSG_COPY_REPLY = 4,
	COPYOFFLOAD_MSG_SHARE = 5,
	COPYOFFLOAD_MSG_STATS = 6,
	COPYOFFLOAD_MSG_STATS_REPLY = 7,
	COPYOFFLOAD_MSG_RELEASE = 8,
	COPYOFFLOAD_MSG_CLONED = 9,
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

/* An unused slot of a SHARE's method order. */
#define COPYOFFLOAD_METHOD_NONE 0xffu

/* COPY request flags. */
#define COPYOFFLOAD_COPY_CLONE_ONLY 0x1u /* all-or-nothing clone (dup extents) */
#define COPYOFFLOAD_COPY_FLAGS_ALL COPYOFFLOAD_COPY_CLONE_ONLY

/* SHARE flags. */
/* Never reserve a copy's destination blocks before writing them (the
 * daemon does on filesystems where that makes copies faster). */
#define COPYOFFLOAD_SHARE_NO_PREALLOCATE 0x1u
#define COPYOFFLOAD_SHARE_FLAGS_ALL COPYOFFLOAD_SHARE_NO_PREALLOCATE

/*
 * Largest range one COPY may name. Offsets plus length must also fit in a
 * signed 64-bit off_t; the daemon may enforce a smaller per-share limit.
 */
#define COPYOFFLOAD_MAX_COPY_LENGTH (UINT64_C(1) << 48)

/*
 * SHARE fields. A share name is UTF-8 without control characters, 1 to
 * COPYOFFLOAD_SHARE_NAME_SIZE - 1 bytes, NUL-padded to the field's size;
 * longer names are cut at a character boundary (copyoffload_share_name_set).
 * A largest segment of 0 means the daemon's defaults; limits of 0 mean none.
 */
#define COPYOFFLOAD_SHARE_NAME_SIZE 128
#define COPYOFFLOAD_MIN_SEGMENT (UINT64_C(64) << 10)
#define COPYOFFLOAD_MAX_SEGMENT (UINT64_C(1) << 30)
#define COPYOFFLOAD_MAX_BYTES_PER_SECOND COPYOFFLOAD_MAX_COPY_LENGTH
#define COPYOFFLOAD_MAX_CONCURRENT 65535u

/*
 * STATS_REPLY records: one per share, with one slot of counters per method
 * and a last slot (COPYOFFLOAD_STATS_TOTAL) for the share as a whole.
 */
#define COPYOFFLOAD_STATS_TOTAL COPYOFFLOAD_METHOD_COUNT
#define COPYOFFLOAD_STATS_SLOTS (COPYOFFLOAD_METHOD_COUNT + 1)
#define COPYOFFLOAD_STATS_MAX_RECORDS 32

#define COPYOFFLOAD_HEADER_SIZE 24
#define COPYOFFLOAD_HELLO_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_HELLO_REPLY_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_COPY_SIZE (COPYOFFLOAD_HEADER_SIZE + 40)
#define COPYOFFLOAD_COPY_REPLY_SIZE \
	(COPYOFFLOAD_HEADER_SIZE + 16 + 8 * COPYOFFLOAD_METHOD_COUNT)
#define COPYOFFLOAD_SHARE_SIZE \
	(COPYOFFLOAD_HEADER_SIZE + 32 + COPYOFFLOAD_SHARE_NAME_SIZE)
#define COPYOFFLOAD_STATS_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_RELEASE_SIZE (COPYOFFLOAD_HEADER_SIZE + 8)
#define COPYOFFLOAD_CLONED_SIZE (COPYOFFLOAD_HEADER_SIZE + 16)
#define COPYOFFLOAD_STATS_SLOT_SIZE 56
#define COPYOFFLOAD_STATS_RECORD_SIZE \
	(COPYOFFLOAD_SHARE_NAME_SIZE + 8 + \
	 COPYOFFLOAD_STATS_SLOTS * COPYOFFLOAD_STATS_SLOT_SIZE)
#define COPYOFFLOAD_STATS_REPLY_MIN_SIZE (COPYOFFLOAD_HEADER_SIZE + 16)
#define COPYOFFLOAD_STATS_REPLY_MAX_SIZE \
	(COPYOFFLOAD_STATS_REPLY_MIN_SIZE + \
	 COPYOFFLOAD_STATS_MAX_RECORDS * COPYOFFLOAD_STATS_RECORD_SIZE)
/* The largest message a client sends (what the daemon reads). */
#define COPYOFFLOAD_MAX_REQUEST_SIZE COPYOFFLOAD_SHARE_SIZE
/* The largest message of any kind. */
#define COPYOFFLOAD_MAX_MESSAGE_SIZE COPYOFFLOAD_STATS_REPLY_MAX_SIZE

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
	uint32_t share_id; /* declared by a SHARE on this connection; 0: none */
	/* Descriptor handle of this connection; 0: none (the descriptors
	 * come with this COPY and are not kept). */
	uint32_t handle;
};

/*
 * The daemon had other copies in flight, or no CPU to spare, when it
 * replied: a client should not poll for its next reply, since a poller
 * would take a CPU from those copies.
 */
#define COPYOFFLOAD_REPLY_BUSY 0x1u
#define COPYOFFLOAD_REPLY_KNOWN_FLAGS COPYOFFLOAD_REPLY_BUSY

struct copyoffload_copy_reply {
	uint64_t request_id;
	int32_t status; /* 0, or a positive errno */
	uint32_t flags; /* COPYOFFLOAD_REPLY_* */
	uint64_t bytes_done; /* contiguous bytes from the start, exactly */
	uint64_t bytes_by_method[COPYOFFLOAD_METHOD_COUNT];
};

struct copyoffload_share {
	uint64_t request_id; /* not answered; only for the daemon's log */
	uint32_t share_id;   /* per connection, never 0 */
	/* Methods by preference; also the allow-list. Unused slots at the end
	 * hold COPYOFFLOAD_METHOD_NONE; at least the first is used. */
	uint8_t method_order[COPYOFFLOAD_METHOD_COUNT];
	uint64_t max_segment;          /* bytes per engine step; 0: defaults */
	uint64_t max_bytes_per_second; /* for the share as a whole; 0: none */
	uint32_t max_concurrent;       /* copies running at once; 0: no limit */
	uint32_t flags;                /* COPYOFFLOAD_SHARE_* */
	char name[COPYOFFLOAD_SHARE_NAME_SIZE]; /* NUL-terminated, NUL-padded */
};

/*
 * Clones smbd made itself (inline, without a COPY), reported in batches so
 * that the share's statistics count them: `copies` clones of `bytes` in
 * all, each at least one byte and at most COPYOFFLOAD_MAX_COPY_LENGTH.
 * No reply.
 */
struct copyoffload_cloned {
	uint64_t request_id; /* not answered; only for the daemon's log */
	uint32_t share_id;   /* declared by a SHARE on this connection, never 0 */
	uint32_t copies;     /* never 0 */
	uint64_t bytes;
};

struct copyoffload_release {
	uint64_t request_id; /* not answered; only for the daemon's log */
	uint32_t handle;     /* never 0 */
};

struct copyoffload_stats_request {
	uint64_t request_id;
	uint32_t cursor; /* first record wanted: 0, then a reply's next_cursor */
};

/* Counters of one method (or of all, in the COPYOFFLOAD_STATS_TOTAL slot)
 * for one share, since the daemon started. */
struct copyoffload_method_stats {
	uint64_t requests; /* finished; per method: those that used it */
	uint64_t errors;   /* finished with an error; per method: in it */
	uint64_t bytes;    /* total: bytes done; per method: moved by it */
	/* Microseconds; total: from receipt to reply; per method: spent in
	 * it by one request. Percentiles are bucket bounds (within 1/8). */
	uint64_t latency_p50_us;
	uint64_t latency_p90_us;
	uint64_t latency_p99_us;
	uint64_t latency_max_us;
};

struct copyoffload_share_stats {
	char name[COPYOFFLOAD_SHARE_NAME_SIZE]; /* "": copies without a share */
	uint32_t in_flight; /* accepted, not yet answered */
	uint32_t running;   /* of those, being copied right now */
	struct copyoffload_method_stats slots[COPYOFFLOAD_STATS_SLOTS];
};

struct copyoffload_stats_reply {
	uint64_t request_id;
	int32_t status;       /* 0, or a positive errno (then count is 0) */
	uint32_t count;       /* records in this page */
	uint32_t next_cursor; /* cursor of the next page; 0: this is the last */
	struct copyoffload_share_stats records[COPYOFFLOAD_STATS_MAX_RECORDS];
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
 * The size of a message of this type: the exact size of a fixed-size type,
 * the smallest size of STATS_REPLY, 0 for an unknown type. Takes the raw
 * wire value: converting an unknown type to the enum first would be
 * undefined behaviour when the header is compiled as C++.
 */
static inline size_t
copyoffload_message_size(unsigned type)
{
	switch (type) {
	case COPYOFFLOAD_MSG_HELLO: return COPYOFFLOAD_HELLO_SIZE;
	case COPYOFFLOAD_MSG_HELLO_REPLY: return COPYOFFLOAD_HELLO_REPLY_SIZE;
	case COPYOFFLOAD_MSG_COPY: return COPYOFFLOAD_COPY_SIZE;
	case COPYOFFLOAD_MSG_COPY_REPLY: return COPYOFFLOAD_COPY_REPLY_SIZE;
	case COPYOFFLOAD_MSG_SHARE: return COPYOFFLOAD_SHARE_SIZE;
	case COPYOFFLOAD_MSG_STATS: return COPYOFFLOAD_STATS_SIZE;
	case COPYOFFLOAD_MSG_STATS_REPLY: return COPYOFFLOAD_STATS_REPLY_MIN_SIZE;
	case COPYOFFLOAD_MSG_RELEASE: return COPYOFFLOAD_RELEASE_SIZE;
	case COPYOFFLOAD_MSG_CLONED: return COPYOFFLOAD_CLONED_SIZE;
	}
	return 0;
}

/* The largest size of a message of this type; 0 for an unknown type. */
static inline size_t
copyoffload_message_max_size(unsigned type)
{
	if (type == COPYOFFLOAD_MSG_STATS_REPLY) {
		return COPYOFFLOAD_STATS_REPLY_MAX_SIZE;
	}
	return copyoffload_message_size(type);
}

static inline void
copyoffload_encode_header_sized(uint8_t *buf, enum copyoffload_msg_type type,
				uint16_t version, uint64_t request_id,
				size_t length)
{
	copyoffload_put32(buf, COPYOFFLOAD_MAGIC);
	copyoffload_put16(buf + 4, version);
	copyoffload_put16(buf + 6, (uint16_t)type);
	copyoffload_put32(buf + 8, (uint32_t)length);
	copyoffload_put32(buf + 12, 0);
	copyoffload_put64(buf + 16, request_id);
}

/* For the fixed-size types. */
static inline void
copyoffload_encode_header(uint8_t *buf, enum copyoffload_msg_type type,
			  uint16_t version, uint64_t request_id)
{
	copyoffload_encode_header_sized(buf, type, version, request_id,
					copyoffload_message_size(type));
}

/*
 * Checks everything the header alone can tell: magic, a known type, the
 * length field equal to the received size and within the type's sizes, the
 * reserved word zero. HELLO may carry any version (it negotiates one);
 * every other message must carry COPYOFFLOAD_PROTOCOL_VERSION.
 */
static inline enum copyoffload_decode_result
copyoffload_decode_header(const uint8_t *buf, size_t len,
			  struct copyoffload_header *h)
{
	size_t expected, largest;

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
	largest = copyoffload_message_max_size(h->type);
	if (h->length != len || len > largest) {
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
	copyoffload_put32(buf + 56, m->share_id);
	copyoffload_put32(buf + 60, m->handle);
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
	m->share_id = copyoffload_get32(buf + 56);
	m->handle = copyoffload_get32(buf + 60);

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
	copyoffload_put32(buf + 28, m->flags);
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
	m->flags = copyoffload_get32(buf + 28);
	m->bytes_done = copyoffload_get64(buf + 32);
	if (m->status < 0 || (m->flags & ~COPYOFFLOAD_REPLY_KNOWN_FLAGS) != 0 ||
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

/* --- share names and method orders -------------------------------------- */

/*
 * Length of the well-formed UTF-8 sequence starting at p (of which avail
 * bytes may be read), or 0 when there is none. Overlong forms, surrogates
 * and code points above U+10FFFF are not well formed. A NUL is never a
 * continuation byte, so a NUL-terminated string may pass avail = 4.
 */
static inline size_t
copyoffload_utf8_length(const uint8_t *p, size_t avail)
{
	uint32_t code;
	size_t n, i;

	if (avail == 0) {
		return 0;
	}
	if (p[0] < 0x80) {
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		code = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		code = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		code = p[0] & 0x07u;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if (i >= avail || (p[i] & 0xc0) != 0x80) {
			return 0;
		}
		code = (code << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && (code < 0x800 || (code >= 0xd800 && code <= 0xdfff))) ||
	    (n == 4 && (code < 0x10000 || code > 0x10ffff))) {
		return 0;
	}
	return n;
}

static inline bool copyoffload_is_control(uint8_t c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * True when a name field of COPYOFFLOAD_SHARE_NAME_SIZE bytes holds a
 * NUL-terminated, NUL-padded, well-formed UTF-8 name without control
 * characters; empty only if allow_empty.
 */
static inline bool
copyoffload_share_name_valid(const uint8_t *field, bool allow_empty)
{
	size_t length = 0, i, n;

	while (length < COPYOFFLOAD_SHARE_NAME_SIZE && field[length] != 0) {
		length++;
	}
	if (length == COPYOFFLOAD_SHARE_NAME_SIZE ||
	    (length == 0 && !allow_empty)) {
		return false;
	}
	for (i = length; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
		if (field[i] != 0) {
			return false;
		}
	}
	for (i = 0; i < length; i += n) {
		n = copyoffload_is_control(field[i])
			    ? 0
			    : copyoffload_utf8_length(field + i, length - i);
		if (n == 0) {
			return false;
		}
	}
	return true;
}

/*
 * Fills a name field from any C string so that it is valid: control
 * characters and bytes that are not well-formed UTF-8 become '?', an empty
 * name becomes "?", and a name longer than COPYOFFLOAD_SHARE_NAME_SIZE - 1
 * bytes is cut at a character boundary. Returns false when the name had to
 * be changed.
 */
static inline bool
copyoffload_share_name_set(char field[COPYOFFLOAD_SHARE_NAME_SIZE],
			   const char *name)
{
	const uint8_t *in = (const uint8_t *)name;
	size_t out = 0, n, i;
	bool exact = true;

	for (i = 0; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
		field[i] = 0;
	}
	while (*in != 0) {
		n = copyoffload_is_control(*in) ? 0 : copyoffload_utf8_length(in, 4);
		if (out + (n == 0 ? 1 : n) > COPYOFFLOAD_SHARE_NAME_SIZE - 1) {
			exact = false;
			break;
		}
		if (n == 0) {
			field[out++] = '?';
			in++;
			exact = false;
			continue;
		}
		for (i = 0; i < n; i++) {
			field[out++] = (char)*in++;
		}
	}
	if (out == 0) {
		field[0] = '?';
		exact = false;
	}
	return exact;
}

/*
 * True when order lists 1 to COPYOFFLOAD_METHOD_COUNT distinct methods
 * followed only by COPYOFFLOAD_METHOD_NONE.
 */
static inline bool
copyoffload_method_order_valid(const uint8_t order[COPYOFFLOAD_METHOD_COUNT])
{
	uint32_t seen = 0;
	unsigned i;

	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		if (order[i] == COPYOFFLOAD_METHOD_NONE) {
			break;
		}
		if (order[i] >= COPYOFFLOAD_METHOD_COUNT ||
		    (seen & COPYOFFLOAD_METHOD_BIT(order[i])) != 0) {
			return false;
		}
		seen |= COPYOFFLOAD_METHOD_BIT(order[i]);
	}
	if (i == 0) {
		return false;
	}
	for (; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		if (order[i] != COPYOFFLOAD_METHOD_NONE) {
			return false;
		}
	}
	return true;
}

/* The methods a valid order lists, as a COPYOFFLOAD_METHOD_BIT mask. */
static inline uint32_t
copyoffload_method_order_mask(const uint8_t order[COPYOFFLOAD_METHOD_COUNT])
{
	uint32_t mask = 0;
	unsigned i;

	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		if (order[i] < COPYOFFLOAD_METHOD_COUNT) {
			mask |= COPYOFFLOAD_METHOD_BIT(order[i]);
		}
	}
	return mask;
}

/* --- SHARE ------------------------------------------------------------ */

static inline size_t
copyoffload_encode_share(uint8_t buf[COPYOFFLOAD_SHARE_SIZE],
			 const struct copyoffload_share *m)
{
	unsigned i;

	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_SHARE,
				  COPYOFFLOAD_PROTOCOL_VERSION, m->request_id);
	copyoffload_put32(buf + 24, m->share_id);
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		buf[28 + i] = m->method_order[i];
	}
	copyoffload_put64(buf + 32, m->max_segment);
	copyoffload_put64(buf + 40, m->max_bytes_per_second);
	copyoffload_put32(buf + 48, m->max_concurrent);
	copyoffload_put32(buf + 52, m->flags);
	for (i = 0; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
		buf[56 + i] = (uint8_t)m->name[i];
	}
	return COPYOFFLOAD_SHARE_SIZE;
}

/* True when a SHARE's policy fields (all but ids and name) are valid. */
static inline bool
copyoffload_share_policy_valid(const struct copyoffload_share *m)
{
	return copyoffload_method_order_valid(m->method_order) &&
	       (m->max_segment == 0 ||
		(m->max_segment >= COPYOFFLOAD_MIN_SEGMENT &&
		 m->max_segment <= COPYOFFLOAD_MAX_SEGMENT)) &&
	       m->max_bytes_per_second <= COPYOFFLOAD_MAX_BYTES_PER_SECOND &&
	       m->max_concurrent <= COPYOFFLOAD_MAX_CONCURRENT &&
	       (m->flags & ~COPYOFFLOAD_SHARE_FLAGS_ALL) == 0;
}

static inline enum copyoffload_decode_result
copyoffload_decode_share(const uint8_t *buf, size_t len,
			 struct copyoffload_share *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_SHARE, &h);
	unsigned i;

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->share_id = copyoffload_get32(buf + 24);
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		m->method_order[i] = buf[28 + i];
	}
	m->max_segment = copyoffload_get64(buf + 32);
	m->max_bytes_per_second = copyoffload_get64(buf + 40);
	m->max_concurrent = copyoffload_get32(buf + 48);
	m->flags = copyoffload_get32(buf + 52);
	for (i = 0; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
		m->name[i] = (char)buf[56 + i];
	}
	if (m->share_id == 0 || !copyoffload_share_policy_valid(m) ||
	    !copyoffload_share_name_valid(buf + 56, false)) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

/* --- one-word messages (RELEASE, STATS) -------------------------------- */

/* A header and a body of one 32-bit word and 4 reserved bytes. */
static inline size_t
copyoffload_encode_word_message(uint8_t *buf, enum copyoffload_msg_type type,
				uint64_t request_id, uint32_t word)
{
	copyoffload_encode_header(buf, type, COPYOFFLOAD_PROTOCOL_VERSION,
				  request_id);
	copyoffload_put32(buf + 24, word);
	copyoffload_put32(buf + 28, 0);
	return copyoffload_message_size(type);
}

static inline enum copyoffload_decode_result
copyoffload_decode_word_message(const uint8_t *buf, size_t len,
				enum copyoffload_msg_type type,
				uint64_t *request_id, uint32_t *word)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r =
		copyoffload_decode_body_header(buf, len, type, &h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	*request_id = h.request_id;
	*word = copyoffload_get32(buf + 24);
	return copyoffload_get32(buf + 28) == 0 ? COPYOFFLOAD_DECODE_OK
						: COPYOFFLOAD_DECODE_BAD_FIELD;
}

/* --- RELEASE ---------------------------------------------------------- */

static inline size_t
copyoffload_encode_release(uint8_t buf[COPYOFFLOAD_RELEASE_SIZE],
			   const struct copyoffload_release *m)
{
	return copyoffload_encode_word_message(buf, COPYOFFLOAD_MSG_RELEASE,
					       m->request_id, m->handle);
}

static inline enum copyoffload_decode_result
copyoffload_decode_release(const uint8_t *buf, size_t len,
			   struct copyoffload_release *m)
{
	enum copyoffload_decode_result r = copyoffload_decode_word_message(
		buf, len, COPYOFFLOAD_MSG_RELEASE, &m->request_id, &m->handle);

	if (r == COPYOFFLOAD_DECODE_OK && m->handle == 0) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return r;
}

/* --- CLONED ----------------------------------------------------------- */

static inline size_t
copyoffload_encode_cloned(uint8_t buf[COPYOFFLOAD_CLONED_SIZE],
			  const struct copyoffload_cloned *m)
{
	copyoffload_encode_header(buf, COPYOFFLOAD_MSG_CLONED,
				  COPYOFFLOAD_PROTOCOL_VERSION, m->request_id);
	copyoffload_put32(buf + 24, m->share_id);
	copyoffload_put32(buf + 28, m->copies);
	copyoffload_put64(buf + 32, m->bytes);
	return COPYOFFLOAD_CLONED_SIZE;
}

static inline enum copyoffload_decode_result
copyoffload_decode_cloned(const uint8_t *buf, size_t len,
			  struct copyoffload_cloned *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_CLONED, &h);

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->share_id = copyoffload_get32(buf + 24);
	m->copies = copyoffload_get32(buf + 28);
	m->bytes = copyoffload_get64(buf + 32);
	/* Each clone moved at least one byte and at most a copy's limit. */
	if (m->share_id == 0 || m->copies == 0 || m->bytes < m->copies ||
	    m->bytes / m->copies > COPYOFFLOAD_MAX_COPY_LENGTH) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	return COPYOFFLOAD_DECODE_OK;
}

/* --- STATS ------------------------------------------------------------ */

static inline size_t
copyoffload_encode_stats_request(uint8_t buf[COPYOFFLOAD_STATS_SIZE],
				 const struct copyoffload_stats_request *m)
{
	return copyoffload_encode_word_message(buf, COPYOFFLOAD_MSG_STATS,
					       m->request_id, m->cursor);
}

static inline enum copyoffload_decode_result
copyoffload_decode_stats_request(const uint8_t *buf, size_t len,
				 struct copyoffload_stats_request *m)
{
	return copyoffload_decode_word_message(buf, len, COPYOFFLOAD_MSG_STATS,
					       &m->request_id, &m->cursor);
}

/* --- STATS_REPLY ------------------------------------------------------ */

static inline size_t
copyoffload_stats_reply_size(uint32_t count)
{
	return COPYOFFLOAD_STATS_REPLY_MIN_SIZE +
	       (size_t)count * COPYOFFLOAD_STATS_RECORD_SIZE;
}

/*
 * Writes m with its m->count records into buf of buf_size bytes; returns
 * the message size, or 0 when count is over COPYOFFLOAD_STATS_MAX_RECORDS
 * or buf is too small.
 */
static inline size_t
copyoffload_encode_stats_reply(uint8_t *buf, size_t buf_size,
			       const struct copyoffload_stats_reply *m)
{
	size_t size, i, s;
	uint32_t r;

	if (m->count > COPYOFFLOAD_STATS_MAX_RECORDS) {
		return 0;
	}
	size = copyoffload_stats_reply_size(m->count);
	if (buf_size < size) {
		return 0;
	}
	copyoffload_encode_header_sized(buf, COPYOFFLOAD_MSG_STATS_REPLY,
					COPYOFFLOAD_PROTOCOL_VERSION,
					m->request_id, size);
	copyoffload_put32(buf + 24, (uint32_t)m->status);
	copyoffload_put32(buf + 28, m->count);
	copyoffload_put32(buf + 32, m->next_cursor);
	copyoffload_put32(buf + 36, 0);
	for (r = 0; r < m->count; r++) {
		const struct copyoffload_share_stats *record = &m->records[r];
		uint8_t *p = buf + copyoffload_stats_reply_size(r);

		for (i = 0; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
			p[i] = (uint8_t)record->name[i];
		}
		copyoffload_put32(p + 128, record->in_flight);
		copyoffload_put32(p + 132, record->running);
		for (s = 0; s < COPYOFFLOAD_STATS_SLOTS; s++) {
			const struct copyoffload_method_stats *slot =
				&record->slots[s];
			uint8_t *q = p + 136 + s * COPYOFFLOAD_STATS_SLOT_SIZE;

			copyoffload_put64(q, slot->requests);
			copyoffload_put64(q + 8, slot->errors);
			copyoffload_put64(q + 16, slot->bytes);
			copyoffload_put64(q + 24, slot->latency_p50_us);
			copyoffload_put64(q + 32, slot->latency_p90_us);
			copyoffload_put64(q + 40, slot->latency_p99_us);
			copyoffload_put64(q + 48, slot->latency_max_us);
		}
	}
	return size;
}

static inline bool
copyoffload_method_stats_valid(const struct copyoffload_method_stats *slot)
{
	if (slot->requests == 0 &&
	    (slot->errors != 0 || slot->bytes != 0 || slot->latency_max_us != 0)) {
		return false;
	}
	return slot->errors <= slot->requests &&
	       slot->latency_p50_us <= slot->latency_p90_us &&
	       slot->latency_p90_us <= slot->latency_p99_us &&
	       slot->latency_p99_us <= slot->latency_max_us;
}

/*
 * A record must be self-consistent: each slot's counts and percentiles in
 * order, no method with more requests or errors than the share, and the
 * share's bytes exactly the sum of its methods' bytes.
 */
static inline bool
copyoffload_share_stats_valid(const struct copyoffload_share_stats *record)
{
	const struct copyoffload_method_stats *total =
		&record->slots[COPYOFFLOAD_STATS_TOTAL];
	uint64_t bytes = 0;
	unsigned m;

	if (!copyoffload_share_name_valid((const uint8_t *)record->name, true) ||
	    record->running > record->in_flight ||
	    !copyoffload_method_stats_valid(total)) {
		return false;
	}
	for (m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
		const struct copyoffload_method_stats *slot = &record->slots[m];

		if (!copyoffload_method_stats_valid(slot) ||
		    slot->requests > total->requests ||
		    slot->errors > total->errors ||
		    slot->bytes > UINT64_MAX - bytes) {
			return false;
		}
		bytes += slot->bytes;
	}
	return bytes == total->bytes;
}

static inline enum copyoffload_decode_result
copyoffload_decode_stats_reply(const uint8_t *buf, size_t len,
			       struct copyoffload_stats_reply *m)
{
	struct copyoffload_header h;
	enum copyoffload_decode_result r = copyoffload_decode_body_header(
		buf, len, COPYOFFLOAD_MSG_STATS_REPLY, &h);
	size_t i, s;
	uint32_t n;

	if (r != COPYOFFLOAD_DECODE_OK) {
		return r;
	}
	m->request_id = h.request_id;
	m->status = (int32_t)copyoffload_get32(buf + 24);
	m->count = copyoffload_get32(buf + 28);
	m->next_cursor = copyoffload_get32(buf + 32);
	if (m->count > COPYOFFLOAD_STATS_MAX_RECORDS ||
	    len != copyoffload_stats_reply_size(m->count)) {
		return COPYOFFLOAD_DECODE_BAD_LENGTH;
	}
	if (m->status < 0 || copyoffload_get32(buf + 36) != 0 ||
	    (m->status != 0 && m->count != 0) ||
	    (m->count == 0 && m->next_cursor != 0)) {
		return COPYOFFLOAD_DECODE_BAD_FIELD;
	}
	for (n = 0; n < m->count; n++) {
		struct copyoffload_share_stats *record = &m->records[n];
		const uint8_t *p = buf + copyoffload_stats_reply_size(n);

		for (i = 0; i < COPYOFFLOAD_SHARE_NAME_SIZE; i++) {
			record->name[i] = (char)p[i];
		}
		record->in_flight = copyoffload_get32(p + 128);
		record->running = copyoffload_get32(p + 132);
		for (s = 0; s < COPYOFFLOAD_STATS_SLOTS; s++) {
			struct copyoffload_method_stats *slot = &record->slots[s];
			const uint8_t *q = p + 136 + s * COPYOFFLOAD_STATS_SLOT_SIZE;

			slot->requests = copyoffload_get64(q);
			slot->errors = copyoffload_get64(q + 8);
			slot->bytes = copyoffload_get64(q + 16);
			slot->latency_p50_us = copyoffload_get64(q + 24);
			slot->latency_p90_us = copyoffload_get64(q + 32);
			slot->latency_p99_us = copyoffload_get64(q + 40);
			slot->latency_max_us = copyoffload_get64(q + 48);
		}
		if (!copyoffload_share_stats_valid(record)) {
			return COPYOFFLOAD_DECODE_BAD_FIELD;
		}
	}
	return COPYOFFLOAD_DECODE_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* COPYOFFLOAD_PROTOCOL_H */
