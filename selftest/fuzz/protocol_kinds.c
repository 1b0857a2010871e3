/* The rows of protocol_kinds.h: one per message type. */
#include "protocol_kinds.h"

#define FUZZ_KIND_CODEC(member, fn)                                    \
	static enum copyoffload_decode_result fuzz_decode_##member(    \
		const uint8_t *buf, size_t len, union fuzz_message *m) \
	{                                                              \
		return copyoffload_decode_##fn(buf, len, &m->member);  \
	}

/* Encoders of fixed-size types. */
#define FUZZ_KIND_FIXED_ENCODER(member, fn, size)                             \
	static size_t fuzz_encode_##member(uint8_t *buf, size_t buf_size,     \
					   const union fuzz_message *m)       \
	{                                                                     \
		return buf_size < (size) ? 0                                  \
					 : copyoffload_encode_##fn(buf, &m->member); \
	}

FUZZ_KIND_CODEC(hello, hello)
FUZZ_KIND_CODEC(hello_reply, hello_reply)
FUZZ_KIND_CODEC(copy, copy_request)
FUZZ_KIND_CODEC(copy_reply, copy_reply)
FUZZ_KIND_CODEC(share, share)
FUZZ_KIND_CODEC(release, release)
FUZZ_KIND_CODEC(cloned, cloned)
FUZZ_KIND_CODEC(stats, stats_request)
FUZZ_KIND_CODEC(stats_reply, stats_reply)
FUZZ_KIND_FIXED_ENCODER(hello, hello, COPYOFFLOAD_HELLO_SIZE)
FUZZ_KIND_FIXED_ENCODER(hello_reply, hello_reply, COPYOFFLOAD_HELLO_REPLY_SIZE)
FUZZ_KIND_FIXED_ENCODER(copy, copy_request, COPYOFFLOAD_COPY_SIZE)
FUZZ_KIND_FIXED_ENCODER(copy_reply, copy_reply, COPYOFFLOAD_COPY_REPLY_SIZE)
FUZZ_KIND_FIXED_ENCODER(share, share, COPYOFFLOAD_SHARE_SIZE)
FUZZ_KIND_FIXED_ENCODER(release, release, COPYOFFLOAD_RELEASE_SIZE)
FUZZ_KIND_FIXED_ENCODER(cloned, cloned, COPYOFFLOAD_CLONED_SIZE)
FUZZ_KIND_FIXED_ENCODER(stats, stats_request, COPYOFFLOAD_STATS_SIZE)

static size_t fuzz_encode_stats_reply(uint8_t *buf, size_t buf_size,
				      const union fuzz_message *m)
{
	return copyoffload_encode_stats_reply(buf, buf_size, &m->stats_reply);
}

/* --- invariants --------------------------------------------------------- */

static const char *fuzz_hello_invariant(const union fuzz_message *m)
{
	return m->hello.min_version == 0 || m->hello.min_version > m->hello.max_version
		       ? "version range empty or starting at 0"
		       : NULL;
}

static const char *fuzz_hello_reply_invariant(const union fuzz_message *m)
{
	return m->hello_reply.status < 0 ? "negative status" : NULL;
}

/* What the daemon relies on before it touches a descriptor. */
static const char *fuzz_copy_invariant(const union fuzz_message *m)
{
	const struct copyoffload_copy_request *c = &m->copy;

	if (c->length > COPYOFFLOAD_MAX_COPY_LENGTH) {
		return "length over COPYOFFLOAD_MAX_COPY_LENGTH";
	}
	if (c->src_offset > (uint64_t)INT64_MAX - c->length ||
	    c->dst_offset > (uint64_t)INT64_MAX - c->length) {
		return "range end beyond INT64_MAX";
	}
	if (c->methods == 0 || (c->methods & ~COPYOFFLOAD_METHODS_ALL) != 0) {
		return "empty or unknown method mask";
	}
	return (c->flags & ~COPYOFFLOAD_COPY_FLAGS_ALL) != 0 ? "unknown flags" : NULL;
}

/* What the module relies on: never more bytes than the methods moved. */
static const char *fuzz_copy_reply_invariant(const union fuzz_message *m)
{
	const struct copyoffload_copy_reply *r = &m->copy_reply;
	uint64_t sum = 0;
	unsigned i;

	if (r->status < 0 || r->bytes_done > COPYOFFLOAD_MAX_COPY_LENGTH) {
		return "negative status or bytes_done over COPYOFFLOAD_MAX_COPY_LENGTH";
	}
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		if (r->bytes_by_method[i] > COPYOFFLOAD_MAX_COPY_LENGTH) {
			return "per-method bytes over COPYOFFLOAD_MAX_COPY_LENGTH";
		}
		sum += r->bytes_by_method[i];
	}
	return sum != r->bytes_done ? "per-method bytes do not add up" : NULL;
}

static const char *fuzz_share_invariant(const union fuzz_message *m)
{
	if (m->share.share_id == 0) {
		return "share id 0";
	}
	if (!copyoffload_share_policy_valid(&m->share)) {
		return "invalid policy";
	}
	return copyoffload_share_name_valid((const uint8_t *)m->share.name, false)
		       ? NULL
		       : "invalid share name";
}

static const char *fuzz_release_invariant(const union fuzz_message *m)
{
	return m->release.handle == 0 ? "handle 0" : NULL;
}

/* What the daemon's counters rely on: no empty batch, no empty clone, no
 * clone larger than a copy. */
static const char *fuzz_cloned_invariant(const union fuzz_message *m)
{
	const struct copyoffload_cloned *c = &m->cloned;

	if (c->share_id == 0) {
		return "share id 0";
	}
	if (c->copies == 0 || c->bytes < c->copies) {
		return "no clones, or a clone of 0 bytes";
	}
	return c->bytes / c->copies > COPYOFFLOAD_MAX_COPY_LENGTH ? "clones over a copy's limit"
								 : NULL;
}

static const char *fuzz_stats_invariant(const union fuzz_message *m)
{
	(void)m;
	return NULL;
}

static const char *fuzz_stats_reply_invariant(const union fuzz_message *m)
{
	const struct copyoffload_stats_reply *r = &m->stats_reply;
	uint32_t i;

	if (r->status < 0 || r->count > COPYOFFLOAD_STATS_MAX_RECORDS ||
	    (r->status != 0 && r->count != 0)) {
		return "bad status or record count";
	}
	for (i = 0; i < r->count; i++) {
		if (!copyoffload_share_stats_valid(&r->records[i])) {
			return "inconsistent record";
		}
	}
	return NULL;
}

/* --- samples ------------------------------------------------------------ */

#define FUZZ_BIT(m) COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_##m)

static bool fuzz_hello_sample(size_t i, union fuzz_message *m)
{
	m->hello = (struct copyoffload_hello){
		.request_id = i, .min_version = 1, .max_version = (uint16_t)(1 + 2 * i)};
	return i < 2;
}

static bool fuzz_hello_reply_sample(size_t i, union fuzz_message *m)
{
	m->hello_reply = (struct copyoffload_hello_reply){
		.status = i == 0 ? 0 : 93 /* EPROTONOSUPPORT */, .version = 1};
	return i < 2;
}

static bool fuzz_copy_sample(size_t i, union fuzz_message *m)
{
	static const struct copyoffload_copy_request samples[] = {
		{.request_id = 1, .length = 4096, .methods = COPYOFFLOAD_METHODS_ALL},
		{.request_id = 2, .src_offset = 1000, .dst_offset = 5, .length = 60000,
		 .methods = FUZZ_BIT(READ_WRITE), .share_id = 1},
		{.request_id = 3, .src_offset = 4096, .dst_offset = 8192, .length = 16384,
		 .methods = FUZZ_BIT(CLONE), .flags = COPYOFFLOAD_COPY_CLONE_ONLY},
		{.request_id = 4, .src_offset = 10, .dst_offset = 10, .length = 100,
		 .methods = FUZZ_BIT(COPY_FILE_RANGE), .share_id = 7, .handle = 5},
		{.request_id = 5, .length = 0, .methods = COPYOFFLOAD_METHODS_ALL},
		{.request_id = 6, .dst_offset = UINT64_C(1) << 62,
		 .length = COPYOFFLOAD_MAX_COPY_LENGTH,
		 .methods = FUZZ_BIT(DEVICE) | FUZZ_BIT(READ_WRITE)},
	};

	if (i >= sizeof(samples) / sizeof(samples[0])) {
		return false;
	}
	m->copy = samples[i];
	return true;
}

static bool fuzz_copy_reply_sample(size_t i, union fuzz_message *m)
{
	static const struct copyoffload_copy_reply samples[] = {
		{.request_id = 1, .bytes_done = 4096, .bytes_by_method = {4096, 0, 0, 0}},
		{.request_id = 2, .status = 28 /* ENOSPC */, .bytes_done = 300,
		 .bytes_by_method = {0, 100, 0, 200}},
		{.request_id = 3, .status = 9 /* EBADF */},
	};

	if (i >= sizeof(samples) / sizeof(samples[0])) {
		return false;
	}
	m->copy_reply = samples[i];
	return true;
}

static bool fuzz_share_sample(size_t i, union fuzz_message *m)
{
	m->share = (struct copyoffload_share){
		.request_id = 10 + i,
		.share_id = (uint32_t)(1 + i),
		.method_order = {COPYOFFLOAD_METHOD_CLONE, COPYOFFLOAD_METHOD_COPY_FILE_RANGE,
				 COPYOFFLOAD_METHOD_READ_WRITE, COPYOFFLOAD_METHOD_NONE},
	};
	if (i == 1) {
		m->share.method_order[0] = COPYOFFLOAD_METHOD_READ_WRITE;
		m->share.method_order[1] = COPYOFFLOAD_METHOD_NONE;
		m->share.method_order[2] = COPYOFFLOAD_METHOD_NONE;
		m->share.max_segment = COPYOFFLOAD_MIN_SEGMENT;
		m->share.max_bytes_per_second = 1 << 20;
		m->share.max_concurrent = 2;
		m->share.flags = COPYOFFLOAD_SHARE_NO_PREALLOCATE;
	}
	copyoffload_share_name_set(m->share.name, i == 0 ? "share" : "d\xc3\xa9p\xc3\xb4t");
	return i < 2;
}

static bool fuzz_release_sample(size_t i, union fuzz_message *m)
{
	m->release = (struct copyoffload_release){.request_id = 40 + i,
						  .handle = (uint32_t)(1 + i)};
	return i < 2;
}

static bool fuzz_cloned_sample(size_t i, union fuzz_message *m)
{
	m->cloned = (struct copyoffload_cloned){.request_id = 50 + i,
						.share_id = (uint32_t)(1 + i),
						.copies = (uint32_t)(1 + 15 * i),
						.bytes = (uint64_t)(1 + 15 * i) << 20};
	return i < 2;
}

static bool fuzz_stats_sample(size_t i, union fuzz_message *m)
{
	m->stats = (struct copyoffload_stats_request){.request_id = 20 + i,
						       .cursor = (uint32_t)i};
	return i < 2;
}

/* Sample i has i records, each consistent. */
static bool fuzz_stats_reply_sample(size_t i, union fuzz_message *m)
{
	struct copyoffload_stats_reply *r = &m->stats_reply;
	uint32_t n;

	if (i > 2) {
		return false;
	}
	memset(r, 0, sizeof(*r));
	r->request_id = 30 + i;
	r->count = (uint32_t)i;
	r->next_cursor = i == 2 ? 5 : 0;
	for (n = 0; n < r->count; n++) {
		struct copyoffload_share_stats *record = &r->records[n];

		copyoffload_share_name_set(record->name, n == 0 ? "share" : "xfs");
		record->in_flight = 2;
		record->running = 1;
		record->slots[COPYOFFLOAD_STATS_TOTAL] = (struct copyoffload_method_stats){
			.requests = 3, .errors = 1, .bytes = 300, .latency_p50_us = 10,
			.latency_p90_us = 20, .latency_p99_us = 30, .latency_max_us = 40};
		record->slots[COPYOFFLOAD_METHOD_CLONE] = (struct copyoffload_method_stats){
			.requests = 1, .bytes = 100, .latency_p50_us = 1, .latency_p90_us = 1,
			.latency_p99_us = 1, .latency_max_us = 1};
		record->slots[COPYOFFLOAD_METHOD_COPY_FILE_RANGE] =
			(struct copyoffload_method_stats){
				.requests = 2, .errors = 1, .bytes = 200, .latency_p50_us = 5,
				.latency_p90_us = 6, .latency_p99_us = 7, .latency_max_us = 8};
	}
	return true;
}

#undef FUZZ_BIT

#define FUZZ_KIND(TYPE, member)                                              \
	{                                                                    \
		COPYOFFLOAD_MSG_##TYPE, #member, fuzz_decode_##member,       \
			fuzz_encode_##member, fuzz_##member##_invariant,     \
			fuzz_##member##_sample                               \
	}

const struct fuzz_message_kind fuzz_message_kinds[] = {
	FUZZ_KIND(HELLO, hello),
	FUZZ_KIND(HELLO_REPLY, hello_reply),
	FUZZ_KIND(COPY, copy),
	FUZZ_KIND(COPY_REPLY, copy_reply),
	FUZZ_KIND(SHARE, share),
	FUZZ_KIND(RELEASE, release),
	FUZZ_KIND(CLONED, cloned),
	FUZZ_KIND(STATS, stats),
	FUZZ_KIND(STATS_REPLY, stats_reply),
};

#undef FUZZ_KIND

const size_t fuzz_kind_count = sizeof(fuzz_message_kinds) / sizeof(fuzz_message_kinds[0]);

const struct fuzz_message_kind *fuzz_kind_for_type(unsigned type)
{
	size_t i;

	for (i = 0; i < fuzz_kind_count; i++) {
		if (fuzz_message_kinds[i].type == type) {
			return &fuzz_message_kinds[i];
		}
	}
	return NULL;
}

void fuzz_check_kind_table(void)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static union fuzz_message sample, decoded;
	unsigned type;
	size_t i, s;

	for (type = 0; type <= UINT16_MAX; type++) {
		FUZZ_CHECK(copyoffload_message_size(type) == 0 ||
				   fuzz_kind_for_type(type) != NULL,
			   "message type %u has no row in selftest/fuzz/protocol_kinds.h",
			   type);
	}
	for (i = 0; i < fuzz_kind_count; i++) {
		const struct fuzz_message_kind *k = &fuzz_message_kinds[i];

		for (s = 0; k->sample(s, &sample); s++) {
			size_t n = k->encode(buf, sizeof(buf), &sample);

			FUZZ_CHECK(n >= copyoffload_message_size(k->type) &&
					   n <= copyoffload_message_max_size(k->type),
				   "%s sample %zu encodes to %zu bytes", k->name, s, n);
			FUZZ_CHECK(k->decode(buf, n, &decoded) == COPYOFFLOAD_DECODE_OK,
				   "%s sample %zu does not decode", k->name, s);
		}
		FUZZ_CHECK(s > 0, "%s has no sample", k->name);
	}
}

void fuzz_initialize(void (*write_seeds)(const char *dir))
{
	const char *seeds = getenv(FUZZ_WRITE_SEEDS_VARIABLE);

	fuzz_check_kind_table();
	if (seeds != NULL) {
		write_seeds(seeds);
		exit(0);
	}
}
