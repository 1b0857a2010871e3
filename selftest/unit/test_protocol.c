/*
 * Unit tests of the wire protocol in include/copyoffload_protocol.h:
 * encode/decode round trips, the exact byte layout, and rejection of every
 * kind of malformed message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "copyoffload_protocol.h"
#include "protocol_kinds.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Header field offsets, as documented by the layout. */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_TYPE 6
#define OFF_LENGTH 8
#define OFF_RESERVED 12
#define OFF_REQUEST_ID 16

static const struct copyoffload_hello sample_hello = {
	.request_id = 0x0102030405060708ull,
	.min_version = 1,
	.max_version = 3,
};

static const struct copyoffload_hello_reply sample_hello_reply = {
	.request_id = 0xfedcba9876543210ull,
	.status = EPROTONOSUPPORT,
	.version = 1,
};

static const struct copyoffload_copy_request sample_copy = {
	.request_id = UINT64_MAX,
	.src_offset = (uint64_t)INT64_MAX - COPYOFFLOAD_MAX_COPY_LENGTH,
	.dst_offset = 0x123456789abcull,
	.length = COPYOFFLOAD_MAX_COPY_LENGTH,
	.methods = COPYOFFLOAD_METHODS_ALL,
	.flags = COPYOFFLOAD_COPY_CLONE_ONLY,
	.share_id = 0xfffffffeu,
	.handle = 0x80000001u,
};

static const struct copyoffload_copy_reply sample_copy_reply = {
	.request_id = 42,
	.status = ENOSPC,
	.flags = COPYOFFLOAD_REPLY_BUSY,
	.bytes_done = 1000 + 20 + 3 + 4,
	.bytes_by_method = {1000, 20, 3, 4},
};

static const struct copyoffload_share sample_share = {
	.request_id = 0x1122334455667788ull,
	.share_id = 7,
	.method_order = {COPYOFFLOAD_METHOD_COPY_FILE_RANGE, COPYOFFLOAD_METHOD_CLONE,
			 COPYOFFLOAD_METHOD_NONE, COPYOFFLOAD_METHOD_NONE},
	.max_segment = 1 << 20,
	.max_bytes_per_second = 100 << 20,
	.max_concurrent = 3,
	.flags = COPYOFFLOAD_SHARE_NO_PREALLOCATE,
	.name = "projekt-\xc3\xa4nderungen", /* UTF-8 "ä" */
};

static const struct copyoffload_release sample_release = {
	.request_id = 0x0102030405060708ull,
	.handle = 0xfffffffdu,
};

static const struct copyoffload_cloned sample_cloned = {
	.request_id = 0x1112131415161718ull,
	.share_id = 0xfffffffeu,
	.copies = 3,
	.bytes = (UINT64_C(2) << 20) + 1,
};

static const struct copyoffload_stats_request sample_stats = {
	.request_id = 99,
	.cursor = 0x01020304u,
};

/* Two records: a share with copies by two methods, and copies without one. */
static struct copyoffload_stats_reply sample_stats_reply;

static void init_sample_stats_reply(void)
{
	struct copyoffload_stats_reply *r = &sample_stats_reply;
	struct copyoffload_method_stats *total;

	memset(r, 0, sizeof(*r));
	r->request_id = 12;
	r->count = 2;
	r->next_cursor = 2;
	strcpy(r->records[0].name, "share");
	r->records[0].in_flight = 5;
	r->records[0].running = 2;
	r->records[0].slots[COPYOFFLOAD_METHOD_CLONE] = (struct copyoffload_method_stats){
		.requests = 10, .errors = 1, .bytes = 1000, .latency_p50_us = 10,
		.latency_p90_us = 20, .latency_p99_us = 30, .latency_max_us = 31};
	r->records[0].slots[COPYOFFLOAD_METHOD_READ_WRITE] = (struct copyoffload_method_stats){
		.requests = 3, .errors = 0, .bytes = 24, .latency_p50_us = 5,
		.latency_p90_us = 5, .latency_p99_us = 5, .latency_max_us = 5};
	total = &r->records[0].slots[COPYOFFLOAD_STATS_TOTAL];
	*total = (struct copyoffload_method_stats){
		.requests = 12, .errors = 2, .bytes = 1024, .latency_p50_us = 100,
		.latency_p90_us = 200, .latency_p99_us = 300, .latency_max_us = 400};
	/* "": copies that named no share; one that failed before any I/O. */
	r->records[1].slots[COPYOFFLOAD_STATS_TOTAL] = (struct copyoffload_method_stats){
		.requests = 1, .errors = 1, .latency_p50_us = 1, .latency_p90_us = 1,
		.latency_p99_us = 1, .latency_max_us = 1};
}

static size_t encode_sample(enum copyoffload_msg_type type, uint8_t *buf)
{
	switch (type) {
	case COPYOFFLOAD_MSG_HELLO:
		return copyoffload_encode_hello(buf, &sample_hello);
	case COPYOFFLOAD_MSG_HELLO_REPLY:
		return copyoffload_encode_hello_reply(buf, &sample_hello_reply);
	case COPYOFFLOAD_MSG_COPY:
		return copyoffload_encode_copy_request(buf, &sample_copy);
	case COPYOFFLOAD_MSG_COPY_REPLY:
		return copyoffload_encode_copy_reply(buf, &sample_copy_reply);
	case COPYOFFLOAD_MSG_SHARE:
		return copyoffload_encode_share(buf, &sample_share);
	case COPYOFFLOAD_MSG_STATS:
		return copyoffload_encode_stats_request(buf, &sample_stats);
	case COPYOFFLOAD_MSG_STATS_REPLY:
		return copyoffload_encode_stats_reply(buf, COPYOFFLOAD_MAX_MESSAGE_SIZE,
						      &sample_stats_reply);
	case COPYOFFLOAD_MSG_RELEASE:
		return copyoffload_encode_release(buf, &sample_release);
	case COPYOFFLOAD_MSG_CLONED:
		return copyoffload_encode_cloned(buf, &sample_cloned);
	}
	fail_msg("unknown type %d", type);
	return 0;
}

/* Decodes buf as `type` with the matching full decoder. */
static enum copyoffload_decode_result
decode_as(enum copyoffload_msg_type type, const uint8_t *buf, size_t len)
{
	static union fuzz_message m;
	const struct fuzz_message_kind *kind = fuzz_kind_for_type(type);

	assert_non_null(kind);
	return kind->decode(buf, len, &m);
}

static const enum copyoffload_msg_type all_types[] = {
	COPYOFFLOAD_MSG_HELLO,
	COPYOFFLOAD_MSG_HELLO_REPLY,
	COPYOFFLOAD_MSG_COPY,
	COPYOFFLOAD_MSG_COPY_REPLY,
	COPYOFFLOAD_MSG_SHARE,
	COPYOFFLOAD_MSG_STATS,
	COPYOFFLOAD_MSG_STATS_REPLY,
	COPYOFFLOAD_MSG_RELEASE,
	COPYOFFLOAD_MSG_CLONED,
};

/* The result of decoding the first len bytes of a longer valid message. */
static enum copyoffload_decode_result truncated_result(enum copyoffload_msg_type type,
							size_t len)
{
	/* A variable-size message cut after its smallest size looks whole
	 * to the header but not to its record count. */
	return len < copyoffload_message_size(type) ? COPYOFFLOAD_DECODE_TRUNCATED
						     : COPYOFFLOAD_DECODE_BAD_LENGTH;
}

/* --- primitives ------------------------------------------------------- */

static void test_little_endian_accessors(void **state)
{
	uint8_t buf[8];
	(void)state;

	copyoffload_put16(buf, 0xa1b2);
	assert_int_equal(buf[0], 0xb2);
	assert_int_equal(buf[1], 0xa1);
	assert_int_equal(copyoffload_get16(buf), 0xa1b2);

	copyoffload_put32(buf, 0xf1e2d3c4u);
	assert_int_equal(buf[0], 0xc4);
	assert_int_equal(buf[3], 0xf1);
	assert_int_equal(copyoffload_get32(buf), 0xf1e2d3c4u);

	copyoffload_put64(buf, 0x8899aabbccddeeffull);
	assert_int_equal(buf[0], 0xff);
	assert_int_equal(buf[7], 0x88);
	assert_true(copyoffload_get64(buf) == 0x8899aabbccddeeffull);

	/* High bits must not sign-extend into the upper half. */
	copyoffload_put64(buf, 0x00000000ffffffffull);
	assert_true(copyoffload_get64(buf) == 0x00000000ffffffffull);
	copyoffload_put64(buf, UINT64_MAX);
	assert_true(copyoffload_get64(buf) == UINT64_MAX);
}

/*
 * The codec table decode_as() and reencode() use has a row for every
 * message type, and each row's samples round-trip (aborts otherwise).
 */
static void test_kind_table(void **state)
{
	(void)state;
	fuzz_check_kind_table();
	assert_int_equal(fuzz_kind_count, ARRAY_SIZE(all_types));
}

static void test_message_sizes(void **state)
{
	(void)state;
	assert_int_equal(COPYOFFLOAD_HEADER_SIZE, 24);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_HELLO), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_HELLO_REPLY), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_COPY), 64);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_COPY_REPLY), 72);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_SHARE), 184);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_STATS), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_STATS_REPLY), 40);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_RELEASE), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_CLONED), 40);
	assert_int_equal(copyoffload_message_max_size(COPYOFFLOAD_MSG_STATS_REPLY),
			 40 + 32 * 416);
	assert_int_equal(COPYOFFLOAD_STATS_RECORD_SIZE, 416);
	assert_int_equal(copyoffload_message_size(0), 0);
	assert_int_equal(copyoffload_message_size(10), 0);
	assert_int_equal(copyoffload_message_size(0xffff), 0);
	assert_int_equal(copyoffload_message_max_size(0), 0);
	assert_int_equal(copyoffload_message_max_size(10), 0);
	assert_int_equal(COPYOFFLOAD_MAX_MESSAGE_SIZE, 40 + 32 * 416);
	assert_int_equal(COPYOFFLOAD_MAX_REQUEST_SIZE, 184);
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		assert_true(copyoffload_message_size(all_types[i]) <=
			    copyoffload_message_max_size(all_types[i]));
		assert_true(copyoffload_message_max_size(all_types[i]) <=
			    COPYOFFLOAD_MAX_MESSAGE_SIZE);
	}
	/* Everything a client sends fits the daemon's receive buffer. */
	assert_true(COPYOFFLOAD_HELLO_SIZE <= COPYOFFLOAD_MAX_REQUEST_SIZE);
	assert_true(COPYOFFLOAD_COPY_SIZE <= COPYOFFLOAD_MAX_REQUEST_SIZE);
	assert_true(COPYOFFLOAD_STATS_SIZE <= COPYOFFLOAD_MAX_REQUEST_SIZE);
	assert_true(COPYOFFLOAD_RELEASE_SIZE <= COPYOFFLOAD_MAX_REQUEST_SIZE);
	assert_true(COPYOFFLOAD_CLONED_SIZE <= COPYOFFLOAD_MAX_REQUEST_SIZE);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(copyoffload_method_name(COPYOFFLOAD_METHOD_CLONE), "clone");
	assert_string_equal(copyoffload_method_name(COPYOFFLOAD_METHOD_COPY_FILE_RANGE),
			    "copy_file_range");
	assert_string_equal(copyoffload_method_name(COPYOFFLOAD_METHOD_DEVICE), "device");
	assert_string_equal(copyoffload_method_name(COPYOFFLOAD_METHOD_READ_WRITE),
			    "read_write");
	assert_string_equal(copyoffload_method_name(COPYOFFLOAD_METHOD_COUNT), "unknown");

	for (int r = COPYOFFLOAD_DECODE_OK; r <= COPYOFFLOAD_DECODE_BAD_FIELD; r++) {
		const char *s = copyoffload_decode_result_string(
			(enum copyoffload_decode_result)r);
		assert_non_null(s);
		assert_string_not_equal(s, "unknown decode result");
	}
	assert_string_equal(copyoffload_decode_result_string(
				    (enum copyoffload_decode_result)99),
			    "unknown decode result");
}

static void test_range_fits(void **state)
{
	(void)state;
	assert_true(copyoffload_range_fits(0, 0));
	assert_true(copyoffload_range_fits(0, INT64_MAX));
	assert_true(copyoffload_range_fits(INT64_MAX, 0));
	assert_true(copyoffload_range_fits(INT64_MAX - 10, 10));
	assert_false(copyoffload_range_fits(INT64_MAX - 10, 11));
	assert_false(copyoffload_range_fits(INT64_MAX, 1));
	assert_false(copyoffload_range_fits(1, INT64_MAX));
	assert_false(copyoffload_range_fits((uint64_t)INT64_MAX + 1, 0));
	assert_false(copyoffload_range_fits(UINT64_MAX, 0));
	assert_false(copyoffload_range_fits(0, UINT64_MAX));
	assert_false(copyoffload_range_fits(UINT64_MAX, 1)); /* would wrap */
}

/* --- round trips ------------------------------------------------------ */

static void assert_header(const uint8_t *buf, enum copyoffload_msg_type type,
			  uint16_t version, uint64_t request_id)
{
	/* "COFF" in wire order */
	assert_memory_equal(buf, "COFF", 4);
	assert_int_equal(copyoffload_get16(buf + OFF_VERSION), version);
	assert_int_equal(copyoffload_get16(buf + OFF_TYPE), type);
	if (type != COPYOFFLOAD_MSG_STATS_REPLY) { /* variable: checked by the caller */
		assert_int_equal(copyoffload_get32(buf + OFF_LENGTH),
				 copyoffload_message_size(type));
	}
	assert_int_equal(copyoffload_get32(buf + OFF_RESERVED), 0);
	assert_true(copyoffload_get64(buf + OFF_REQUEST_ID) == request_id);
}

static void test_hello_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_hello out;
	struct copyoffload_header h;
	(void)state;

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(copyoffload_encode_hello(buf, &sample_hello), COPYOFFLOAD_HELLO_SIZE);
	/* A HELLO announces the newest version it speaks in its header. */
	assert_header(buf, COPYOFFLOAD_MSG_HELLO, 3, sample_hello.request_id);
	assert_int_equal(copyoffload_get16(buf + 24), 1);
	assert_int_equal(copyoffload_get16(buf + 26), 3);
	assert_int_equal(copyoffload_get32(buf + 28), 0);

	assert_int_equal(copyoffload_decode_header(buf, COPYOFFLOAD_HELLO_SIZE, &h),
			 COPYOFFLOAD_DECODE_OK);
	assert_int_equal(h.type, COPYOFFLOAD_MSG_HELLO);
	assert_int_equal(copyoffload_decode_hello(buf, COPYOFFLOAD_HELLO_SIZE, &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(out.request_id == sample_hello.request_id);
	assert_int_equal(out.min_version, 1);
	assert_int_equal(out.max_version, 3);
}

static void test_hello_reply_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_HELLO_REPLY_SIZE];
	struct copyoffload_hello_reply out;
	struct copyoffload_hello_reply ok = {.request_id = 0, .status = 0, .version = 1};
	(void)state;

	assert_int_equal(copyoffload_encode_hello_reply(buf, &sample_hello_reply),
			 COPYOFFLOAD_HELLO_REPLY_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_HELLO_REPLY, COPYOFFLOAD_PROTOCOL_VERSION,
		      sample_hello_reply.request_id);
	assert_int_equal(copyoffload_decode_hello_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(out.request_id == sample_hello_reply.request_id);
	assert_int_equal(out.status, EPROTONOSUPPORT);
	assert_int_equal(out.version, 1);

	copyoffload_encode_hello_reply(buf, &ok);
	assert_int_equal(copyoffload_decode_hello_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_int_equal(out.status, 0);
}

static void test_copy_request_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request out;
	(void)state;

	memset(&out, 0, sizeof(out)); /* in case the struct has padding */
	assert_int_equal(copyoffload_encode_copy_request(buf, &sample_copy),
			 COPYOFFLOAD_COPY_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_COPY, COPYOFFLOAD_PROTOCOL_VERSION, UINT64_MAX);
	assert_true(copyoffload_get64(buf + 24) == sample_copy.src_offset);
	assert_true(copyoffload_get64(buf + 32) == sample_copy.dst_offset);
	assert_true(copyoffload_get64(buf + 40) == sample_copy.length);
	assert_int_equal(copyoffload_get32(buf + 48), COPYOFFLOAD_METHODS_ALL);
	assert_int_equal(copyoffload_get32(buf + 52), COPYOFFLOAD_COPY_CLONE_ONLY);
	assert_int_equal(copyoffload_get32(buf + 56), 0xfffffffeu);
	assert_int_equal(copyoffload_get32(buf + 60), 0x80000001u);

	assert_int_equal(copyoffload_decode_copy_request(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_memory_equal(&out, &sample_copy, sizeof(out));
}

static void test_copy_request_edge_values_accepted(void **state)
{
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request in = {
		.request_id = 0, .src_offset = INT64_MAX, .dst_offset = INT64_MAX,
		.length = 0, .methods = COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_READ_WRITE),
		.flags = 0,
	};
	struct copyoffload_copy_request out;
	(void)state;

	/* Zero length at the very end of off_t. */
	copyoffload_encode_copy_request(buf, &in);
	assert_int_equal(copyoffload_decode_copy_request(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);

	/* The largest range ending exactly at INT64_MAX. */
	in.length = COPYOFFLOAD_MAX_COPY_LENGTH;
	in.src_offset = (uint64_t)INT64_MAX - in.length;
	in.dst_offset = 0;
	copyoffload_encode_copy_request(buf, &in);
	assert_int_equal(copyoffload_decode_copy_request(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(out.length == COPYOFFLOAD_MAX_COPY_LENGTH);

	/* Each single method bit is valid on its own. */
	for (unsigned m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
		in.methods = COPYOFFLOAD_METHOD_BIT(m);
		copyoffload_encode_copy_request(buf, &in);
		assert_int_equal(copyoffload_decode_copy_request(buf, sizeof(buf), &out),
				 COPYOFFLOAD_DECODE_OK);
		assert_int_equal(out.methods, 1u << m);
	}
}

static void test_copy_reply_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_COPY_REPLY_SIZE];
	struct copyoffload_copy_reply out;
	struct copyoffload_copy_reply full = {
		.request_id = 7, .status = 0,
		.bytes_done = COPYOFFLOAD_MAX_COPY_LENGTH,
		.bytes_by_method = {0, COPYOFFLOAD_MAX_COPY_LENGTH, 0, 0},
	};
	(void)state;

	assert_int_equal(copyoffload_encode_copy_reply(buf, &sample_copy_reply),
			 COPYOFFLOAD_COPY_REPLY_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_COPY_REPLY, COPYOFFLOAD_PROTOCOL_VERSION, 42);
	assert_int_equal(copyoffload_get32(buf + 24), ENOSPC);
	assert_int_equal(copyoffload_get32(buf + 28), COPYOFFLOAD_REPLY_BUSY);
	assert_true(copyoffload_get64(buf + 32) == 1027);
	for (unsigned i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		assert_true(copyoffload_get64(buf + 40 + 8 * i) ==
			    sample_copy_reply.bytes_by_method[i]);
	}
	assert_int_equal(copyoffload_decode_copy_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	/* Field by field: the struct has padding after status. */
	assert_true(out.request_id == sample_copy_reply.request_id);
	assert_int_equal(out.status, sample_copy_reply.status);
	assert_int_equal(out.flags, COPYOFFLOAD_REPLY_BUSY);
	assert_true(out.bytes_done == sample_copy_reply.bytes_done);
	for (unsigned i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		assert_true(out.bytes_by_method[i] == sample_copy_reply.bytes_by_method[i]);
	}

	copyoffload_encode_copy_reply(buf, &full);
	assert_int_equal(copyoffload_decode_copy_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(out.bytes_done == COPYOFFLOAD_MAX_COPY_LENGTH);
}

static void test_hello_acceptable(void **state)
{
	struct copyoffload_hello h = {.request_id = 0};
	(void)state;

	/*
	 * Version 5 only: 1 lacks descriptor handles and RELEASE, 2 CLONED,
	 * 3 the reply flags, 4 the share flags.
	 */
	h.min_version = 5; h.max_version = 5;
	assert_true(copyoffload_hello_acceptable(&h));
	h.min_version = 1; h.max_version = 9;
	assert_true(copyoffload_hello_acceptable(&h));
	h.min_version = 1; h.max_version = 4;
	assert_false(copyoffload_hello_acceptable(&h));
	h.min_version = 6; h.max_version = 7;
	assert_false(copyoffload_hello_acceptable(&h));
	h.min_version = 0; h.max_version = 0;
	assert_false(copyoffload_hello_acceptable(&h));
}

/* --- rejection -------------------------------------------------------- */

static void test_truncated(void **state)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_header h;
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		size_t size = encode_sample(all_types[t], buf);
		for (size_t len = 0; len < size; len++) {
			enum copyoffload_decode_result expected =
				truncated_result(all_types[t], len);
			assert_int_equal(decode_as(all_types[t], buf, len), expected);
			assert_int_equal(copyoffload_decode_header(buf, len, &h), expected);
		}
	}
}

static void test_longer_than_type(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE + 8];
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		memset(buf, 0, sizeof(buf));
		size_t size = encode_sample(all_types[t], buf);
		assert_int_equal(decode_as(all_types[t], buf, size + 1),
				 COPYOFFLOAD_DECODE_BAD_LENGTH);
		assert_int_equal(decode_as(all_types[t], buf, sizeof(buf)),
				 COPYOFFLOAD_DECODE_BAD_LENGTH);
	}
}

static void test_bad_magic(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static const uint32_t magics[] = {0, 0x434f4646u /* byte-swapped */,
					  COPYOFFLOAD_MAGIC ^ 1, UINT32_MAX};
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (size_t i = 0; i < ARRAY_SIZE(magics); i++) {
			size_t size = encode_sample(all_types[t], buf);
			copyoffload_put32(buf + OFF_MAGIC, magics[i]);
			assert_int_equal(decode_as(all_types[t], buf, size),
					 COPYOFFLOAD_DECODE_BAD_MAGIC);
		}
	}
}

static void test_bad_version(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static const uint16_t versions[] = {0, 1, 2, 3, 4, 6, UINT16_MAX};
	struct copyoffload_hello hello = {0};
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
			size_t size = encode_sample(all_types[t], buf);
			copyoffload_put16(buf + OFF_VERSION, versions[i]);
			enum copyoffload_decode_result expected =
				all_types[t] == COPYOFFLOAD_MSG_HELLO
					? COPYOFFLOAD_DECODE_OK /* HELLO negotiates */
					: COPYOFFLOAD_DECODE_BAD_VERSION;
			assert_int_equal(decode_as(all_types[t], buf, size), expected);
		}
	}

	/* A HELLO offering only newer versions decodes, but is not acceptable. */
	struct copyoffload_hello newer = {.request_id = 1, .min_version = 6,
					  .max_version = 7};
	copyoffload_encode_hello(buf, &newer);
	assert_int_equal(copyoffload_decode_hello(buf, COPYOFFLOAD_HELLO_SIZE, &hello),
			 COPYOFFLOAD_DECODE_OK);
	assert_false(copyoffload_hello_acceptable(&hello));
}

static void test_unknown_type(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static const uint16_t types[] = {0, 10, 11, 0x100, UINT16_MAX};
	struct copyoffload_header h;
	(void)state;

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		size_t size = encode_sample(COPYOFFLOAD_MSG_COPY, buf);
		copyoffload_put16(buf + OFF_TYPE, types[i]);
		assert_int_equal(copyoffload_decode_header(buf, size, &h),
				 COPYOFFLOAD_DECODE_BAD_TYPE);
		assert_int_equal(decode_as(COPYOFFLOAD_MSG_COPY, buf, size),
				 COPYOFFLOAD_DECODE_BAD_TYPE);
	}
}

static void test_wrong_type_for_decoder(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	(void)state;

	/* A valid message of one type is rejected by every other decoder. */
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		size_t size = encode_sample(all_types[t], buf);
		for (size_t d = 0; d < ARRAY_SIZE(all_types); d++) {
			enum copyoffload_decode_result r = decode_as(all_types[d], buf, size);
			if (d == t) {
				assert_int_equal(r, COPYOFFLOAD_DECODE_OK);
			} else {
				assert_int_equal(r, COPYOFFLOAD_DECODE_BAD_TYPE);
			}
		}
	}
}

static void test_length_field_mismatch(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		size_t size = encode_sample(all_types[t], buf);
		const uint32_t lengths[] = {0, COPYOFFLOAD_HEADER_SIZE, (uint32_t)size - 1,
					    (uint32_t)size + 1, UINT32_MAX};
		for (size_t i = 0; i < ARRAY_SIZE(lengths); i++) {
			encode_sample(all_types[t], buf);
			copyoffload_put32(buf + OFF_LENGTH, lengths[i]);
			assert_int_equal(decode_as(all_types[t], buf, size),
					 COPYOFFLOAD_DECODE_BAD_LENGTH);
		}
	}

	/* A length field that matches a shorter buffer than the type needs. */
	size_t size = encode_sample(COPYOFFLOAD_MSG_COPY, buf);
	copyoffload_put32(buf + OFF_LENGTH, COPYOFFLOAD_HEADER_SIZE);
	assert_int_equal(decode_as(COPYOFFLOAD_MSG_COPY, buf, COPYOFFLOAD_HEADER_SIZE),
			 COPYOFFLOAD_DECODE_TRUNCATED);
	(void)size;
}

static void test_reserved_nonzero(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	(void)state;

	/* The header's reserved word, in every message type. */
	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		for (unsigned bit = 0; bit < 32; bit += 7) {
			size_t size = encode_sample(all_types[t], buf);
			copyoffload_put32(buf + OFF_RESERVED, 1u << bit);
			assert_int_equal(decode_as(all_types[t], buf, size),
					 COPYOFFLOAD_DECODE_BAD_FIELD);
		}
	}

	/* Padding inside bodies: HELLO 28..31, HELLO_REPLY 30..31, SHARE
	 * 52..55, STATS 28..31, STATS_REPLY 36..39, RELEASE 28..31. (COPY
	 * 60..63 was padding in version 1; it is the handle. COPY_REPLY 28..31
	 * was padding before version 4; it holds flags, whose unknown bits are
	 * refused like padding.) */
	struct { enum copyoffload_msg_type type; size_t offset; } padding[] = {
		{COPYOFFLOAD_MSG_HELLO, 28}, {COPYOFFLOAD_MSG_HELLO, 31},
		{COPYOFFLOAD_MSG_HELLO_REPLY, 30}, {COPYOFFLOAD_MSG_HELLO_REPLY, 31},
		{COPYOFFLOAD_MSG_RELEASE, 28}, {COPYOFFLOAD_MSG_RELEASE, 31},
		{COPYOFFLOAD_MSG_COPY_REPLY, 28}, {COPYOFFLOAD_MSG_COPY_REPLY, 31},
		{COPYOFFLOAD_MSG_SHARE, 52}, {COPYOFFLOAD_MSG_SHARE, 55},
		{COPYOFFLOAD_MSG_STATS, 28}, {COPYOFFLOAD_MSG_STATS, 31},
		{COPYOFFLOAD_MSG_STATS_REPLY, 36}, {COPYOFFLOAD_MSG_STATS_REPLY, 39},
	};
	for (size_t i = 0; i < ARRAY_SIZE(padding); i++) {
		size_t size = encode_sample(padding[i].type, buf);
		buf[padding[i].offset] = 0x80;
		assert_int_equal(decode_as(padding[i].type, buf, size),
				 COPYOFFLOAD_DECODE_BAD_FIELD);
	}
}

static void test_hello_bad_versions(void **state)
{
	uint8_t buf[COPYOFFLOAD_HELLO_SIZE];
	struct copyoffload_hello out;
	struct copyoffload_hello in = {.request_id = 5};
	(void)state;

	in.min_version = 0; in.max_version = 1; /* 0 is no version */
	copyoffload_encode_hello(buf, &in);
	assert_int_equal(copyoffload_decode_hello(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_BAD_FIELD);

	in.min_version = 3; in.max_version = 2; /* empty range */
	copyoffload_encode_hello(buf, &in);
	assert_int_equal(copyoffload_decode_hello(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static enum copyoffload_decode_result
decode_modified_copy(uint64_t src, uint64_t dst, uint64_t length, uint32_t methods,
		     uint32_t flags)
{
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request in = {
		.request_id = 9, .src_offset = src, .dst_offset = dst,
		.length = length, .methods = methods, .flags = flags,
	};
	struct copyoffload_copy_request out;

	copyoffload_encode_copy_request(buf, &in);
	return copyoffload_decode_copy_request(buf, sizeof(buf), &out);
}

static void test_copy_overflowing_ranges(void **state)
{
	const uint32_t all = COPYOFFLOAD_METHODS_ALL;
	const uint64_t big = (uint64_t)INT64_MAX + 1;
	(void)state;

	assert_int_equal(decode_modified_copy(INT64_MAX, 0, 1, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, INT64_MAX, 1, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(big, 0, 0, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, big, 0, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	/* Would wrap around 2^64 if summed naively. */
	assert_int_equal(decode_modified_copy(UINT64_MAX - 5, 0, 10, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, UINT64_MAX, 1, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(INT64_MAX - 100, 0, 101, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(INT64_MAX - 100, 0, 100, all, 0),
			 COPYOFFLOAD_DECODE_OK);
}

static void test_copy_length_over_limit(void **state)
{
	const uint32_t all = COPYOFFLOAD_METHODS_ALL;
	(void)state;

	assert_int_equal(decode_modified_copy(0, 0, COPYOFFLOAD_MAX_COPY_LENGTH, all, 0),
			 COPYOFFLOAD_DECODE_OK);
	assert_int_equal(decode_modified_copy(0, 0, COPYOFFLOAD_MAX_COPY_LENGTH + 1, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, UINT64_MAX, all, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static void test_copy_bad_methods(void **state)
{
	(void)state;
	assert_int_equal(decode_modified_copy(0, 0, 1, 0, 0), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, 1, 1u << COPYOFFLOAD_METHOD_COUNT, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, 1, COPYOFFLOAD_METHODS_ALL | 0x80000000u, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, 1, UINT32_MAX, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static void test_copy_unknown_flags(void **state)
{
	const uint32_t all = COPYOFFLOAD_METHODS_ALL;
	(void)state;
	assert_int_equal(decode_modified_copy(0, 0, 1, all, COPYOFFLOAD_COPY_CLONE_ONLY),
			 COPYOFFLOAD_DECODE_OK);
	assert_int_equal(decode_modified_copy(0, 0, 1, all, 0x2), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, 1, all, 0x80000000u),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_copy(0, 0, 1, all, UINT32_MAX),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static enum copyoffload_decode_result
decode_modified_reply(int32_t status, uint64_t done, uint64_t m0, uint64_t m1,
		      uint64_t m2, uint64_t m3)
{
	uint8_t buf[COPYOFFLOAD_COPY_REPLY_SIZE];
	struct copyoffload_copy_reply in = {
		.request_id = 3, .status = status, .bytes_done = done,
		.bytes_by_method = {m0, m1, m2, m3},
	};
	struct copyoffload_copy_reply out;

	copyoffload_encode_copy_reply(buf, &in);
	return copyoffload_decode_copy_reply(buf, sizeof(buf), &out);
}

static void test_copy_reply_inconsistent_bytes(void **state)
{
	const uint64_t max = COPYOFFLOAD_MAX_COPY_LENGTH;
	(void)state;

	assert_int_equal(decode_modified_reply(0, 10, 1, 2, 3, 4), COPYOFFLOAD_DECODE_OK);
	assert_int_equal(decode_modified_reply(0, 11, 1, 2, 3, 4), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(0, 9, 1, 2, 3, 4), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(0, 0, 0, 0, 0, 1), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(EIO, 5, 0, 0, 0, 0), COPYOFFLOAD_DECODE_BAD_FIELD);
	/* Values that wrap to the right sum in 64 bits are still refused. */
	assert_int_equal(decode_modified_reply(0, 4, UINT64_MAX, 5, 0, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	/* Over the per-request limit, in total or per method. */
	assert_int_equal(decode_modified_reply(0, max + 1, max, 1, 0, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(0, max, max, 0, 0, 0), COPYOFFLOAD_DECODE_OK);
	assert_int_equal(decode_modified_reply(0, max + 1, 0, max + 1, 0, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static void test_negative_status(void **state)
{
	uint8_t buf[COPYOFFLOAD_HELLO_REPLY_SIZE];
	struct copyoffload_hello_reply out;
	struct copyoffload_hello_reply in = {.request_id = 1, .version = 1};
	(void)state;

	assert_int_equal(decode_modified_reply(-1, 0, 0, 0, 0, 0), COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(INT32_MIN, 0, 0, 0, 0, 0),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	assert_int_equal(decode_modified_reply(INT32_MAX, 0, 0, 0, 0, 0), COPYOFFLOAD_DECODE_OK);

	in.status = -EPROTONOSUPPORT;
	copyoffload_encode_hello_reply(buf, &in);
	assert_int_equal(copyoffload_decode_hello_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
	in.status = INT32_MIN;
	copyoffload_encode_hello_reply(buf, &in);
	assert_int_equal(copyoffload_decode_hello_reply(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

/* --- COPY share id ---------------------------------------------------- */

static void test_release_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_RELEASE_SIZE];
	struct copyoffload_release out = {0};
	(void)state;

	assert_int_equal(copyoffload_encode_release(buf, &sample_release),
			 COPYOFFLOAD_RELEASE_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_RELEASE, COPYOFFLOAD_PROTOCOL_VERSION,
		      sample_release.request_id);
	assert_true(copyoffload_get32(buf + 24) == sample_release.handle);
	assert_int_equal(copyoffload_decode_release(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_memory_equal(&out, &sample_release, sizeof(out));

	/* Handle 0 names nothing. */
	struct copyoffload_release none = sample_release;
	none.handle = 0;
	copyoffload_encode_release(buf, &none);
	assert_int_equal(copyoffload_decode_release(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_BAD_FIELD);
}

static void test_cloned_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_CLONED_SIZE];
	struct copyoffload_cloned out = {0}, bad;
	(void)state;

	assert_int_equal(copyoffload_encode_cloned(buf, &sample_cloned),
			 COPYOFFLOAD_CLONED_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_CLONED, COPYOFFLOAD_PROTOCOL_VERSION,
		      sample_cloned.request_id);
	assert_true(copyoffload_get32(buf + 24) == sample_cloned.share_id);
	assert_true(copyoffload_get32(buf + 28) == sample_cloned.copies);
	assert_true(copyoffload_get64(buf + 32) == sample_cloned.bytes);
	assert_int_equal(copyoffload_decode_cloned(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_memory_equal(&out, &sample_cloned, sizeof(out));

	/* The largest batch: every clone at a copy's limit. */
	bad = sample_cloned;
	bad.copies = 2;
	bad.bytes = 2 * COPYOFFLOAD_MAX_COPY_LENGTH;
	copyoffload_encode_cloned(buf, &bad);
	assert_int_equal(copyoffload_decode_cloned(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);

	/* No share, no clone, fewer bytes than clones, or more than a copy
	 * can move per clone. */
	const struct { uint32_t share_id, copies; uint64_t bytes; } refused[] = {
		{0, 1, 1},
		{1, 0, 0},
		{1, 0, 1},
		{1, 2, 1},
		{1, 1, COPYOFFLOAD_MAX_COPY_LENGTH + 1},
		{1, 1, UINT64_MAX},
	};
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		bad = sample_cloned;
		bad.share_id = refused[i].share_id;
		bad.copies = refused[i].copies;
		bad.bytes = refused[i].bytes;
		copyoffload_encode_cloned(buf, &bad);
		assert_int_equal(copyoffload_decode_cloned(buf, sizeof(buf), &out),
				 COPYOFFLOAD_DECODE_BAD_FIELD);
	}
}

/* Share id @56 and descriptor handle @60 take any value, 0 (none) included. */
static void test_copy_share_id(void **state)
{
	uint8_t buf[COPYOFFLOAD_COPY_SIZE];
	struct copyoffload_copy_request in = sample_copy, out;
	(void)state;

	for (unsigned i = 0; i < 3; i++) {
		in.share_id = (uint32_t[]){0, 1, UINT32_MAX}[i];
		in.handle = (uint32_t[]){UINT32_MAX, 0, 1}[i];
		copyoffload_encode_copy_request(buf, &in);
		assert_true(copyoffload_get32(buf + 56) == in.share_id);
		assert_true(copyoffload_get32(buf + 60) == in.handle);
		assert_int_equal(copyoffload_decode_copy_request(buf, sizeof(buf), &out),
				 COPYOFFLOAD_DECODE_OK);
		assert_int_equal(out.share_id, in.share_id);
		assert_int_equal(out.handle, in.handle);
	}
}

/* --- share names ------------------------------------------------------ */

static void test_utf8_length(void **state)
{
	static const struct {
		const char *bytes;
		size_t avail, expected;
	} cases[] = {
		{"a", 1, 1},
		{"\x7f", 1, 1},
		{"\xc3\xa4", 2, 2},            /* U+00E4 */
		{"\xc3\xa4", 1, 0},            /* cut */
		{"\xc0\x80", 2, 0},            /* overlong NUL */
		{"\xc1\xbf", 2, 0},            /* overlong */
		{"\xe2\x82\xac", 3, 3},        /* U+20AC */
		{"\xe0\x9f\xbf", 3, 0},        /* overlong */
		{"\xed\xa0\x80", 3, 0},        /* surrogate */
		{"\xef\xbf\xbf", 3, 3},        /* U+FFFF */
		{"\xf0\x9f\x98\x80", 4, 4},    /* U+1F600 */
		{"\xf0\x8f\xbf\xbf", 4, 0},    /* overlong */
		{"\xf4\x90\x80\x80", 4, 0},    /* above U+10FFFF */
		{"\xf5\x80\x80\x80", 4, 0},
		{"\x80", 1, 0},                /* stray continuation */
		{"\xe2\x82", 4, 0},            /* NUL where a continuation belongs */
		{"\xff", 1, 0},
		{"a", 0, 0},
	};
	(void)state;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t n = copyoffload_utf8_length((const uint8_t *)cases[i].bytes,
						   cases[i].avail);
		if (n != cases[i].expected) {
			fail_msg("case %zu: %zu, expected %zu", i, n, cases[i].expected);
		}
	}
}

static void assert_name_valid(const char *name, bool allow_empty, bool expected)
{
	uint8_t field[COPYOFFLOAD_SHARE_NAME_SIZE] = {0};
	size_t length = strlen(name);

	assert_true(length < sizeof(field));
	memcpy(field, name, length);
	if (copyoffload_share_name_valid(field, allow_empty) != expected) {
		fail_msg("\"%s\": expected %s", name, expected ? "valid" : "invalid");
	}
}

static void test_share_name_valid(void **state)
{
	uint8_t field[COPYOFFLOAD_SHARE_NAME_SIZE];
	(void)state;

	assert_name_valid("share", false, true);
	assert_name_valid("my share $", false, true);
	assert_name_valid("\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80", false, true);
	assert_name_valid("", false, false);
	assert_name_valid("", true, true);
	assert_name_valid("tab\there", false, false);
	assert_name_valid("nl\n", false, false);
	assert_name_valid("del\x7f", false, false);
	assert_name_valid("bad\xc3", false, false);
	assert_name_valid("bad\xed\xa0\x80", false, false);

	/* 127 bytes and the terminating NUL: the longest name. */
	memset(field, 'x', sizeof(field));
	field[COPYOFFLOAD_SHARE_NAME_SIZE - 1] = 0;
	assert_true(copyoffload_share_name_valid(field, false));
	/* No NUL at all. */
	memset(field, 'x', sizeof(field));
	assert_false(copyoffload_share_name_valid(field, false));
	/* Garbage after the terminating NUL. */
	memset(field, 0, sizeof(field));
	field[0] = 'a';
	field[100] = 'b';
	assert_false(copyoffload_share_name_valid(field, false));
}

static void test_share_name_set(void **state)
{
	char field[COPYOFFLOAD_SHARE_NAME_SIZE];
	char longer[300];
	(void)state;

	assert_true(copyoffload_share_name_set(field, "projects"));
	assert_string_equal(field, "projects");
	for (size_t i = strlen(field); i < sizeof(field); i++) {
		assert_int_equal(field[i], 0);
	}
	assert_true(copyoffload_share_name_set(field, "\xc3\xa4rger"));
	assert_string_equal(field, "\xc3\xa4rger");

	assert_false(copyoffload_share_name_set(field, "a\tb\x7f" "c"));
	assert_string_equal(field, "a?b?c");
	assert_false(copyoffload_share_name_set(field, "x\xc3(\xff"));
	assert_string_equal(field, "x?(?");
	assert_false(copyoffload_share_name_set(field, ""));
	assert_string_equal(field, "?");

	/* 127 bytes fit exactly; 128 are cut to 127. */
	memset(longer, 'n', 127);
	longer[127] = 0;
	assert_true(copyoffload_share_name_set(field, longer));
	assert_int_equal(strlen(field), 127);
	longer[127] = 'n';
	longer[128] = 0;
	assert_false(copyoffload_share_name_set(field, longer));
	assert_int_equal(strlen(field), 127);

	/* A 3-byte character straddling byte 127 is dropped whole. */
	memset(longer, 'n', 125);
	memcpy(longer + 125, "\xe2\x82\xac" "z", 5);
	assert_false(copyoffload_share_name_set(field, longer));
	assert_int_equal(strlen(field), 125);

	/* Whatever goes in, what comes out is valid. */
	for (unsigned c = 1; c < 256; c++) {
		char name[4] = {(char)c, (char)c, 'a', 0};
		copyoffload_share_name_set(field, name);
		assert_true(copyoffload_share_name_valid((const uint8_t *)field, false));
	}
}

/* --- SHARE ------------------------------------------------------------ */

static void test_share_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_SHARE_SIZE];
	struct copyoffload_share out;
	(void)state;

	memset(&out, 0, sizeof(out)); /* in case the struct has padding */
	assert_int_equal(copyoffload_encode_share(buf, &sample_share), COPYOFFLOAD_SHARE_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_SHARE, COPYOFFLOAD_PROTOCOL_VERSION,
		      sample_share.request_id);
	assert_int_equal(copyoffload_get32(buf + 24), 7);
	assert_int_equal(buf[28], COPYOFFLOAD_METHOD_COPY_FILE_RANGE);
	assert_int_equal(buf[29], COPYOFFLOAD_METHOD_CLONE);
	assert_int_equal(buf[30], 0xff);
	assert_int_equal(buf[31], 0xff);
	assert_true(copyoffload_get64(buf + 32) == 1 << 20);
	assert_true(copyoffload_get64(buf + 40) == 100 << 20);
	assert_int_equal(copyoffload_get32(buf + 48), 3);
	assert_int_equal(copyoffload_get32(buf + 52), COPYOFFLOAD_SHARE_NO_PREALLOCATE);
	assert_memory_equal(buf + 56, sample_share.name, COPYOFFLOAD_SHARE_NAME_SIZE);

	assert_int_equal(copyoffload_decode_share(buf, sizeof(buf), &out), COPYOFFLOAD_DECODE_OK);
	assert_memory_equal(&out, &sample_share, sizeof(out));
	assert_int_equal(copyoffload_method_order_mask(out.method_order),
			 COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE) |
				 COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_COPY_FILE_RANGE));
}

static enum copyoffload_decode_result decode_modified_share(struct copyoffload_share in)
{
	uint8_t buf[COPYOFFLOAD_SHARE_SIZE];
	struct copyoffload_share out;

	copyoffload_encode_share(buf, &in);
	return copyoffload_decode_share(buf, sizeof(buf), &out);
}

static void test_share_fields(void **state)
{
	const uint8_t none = COPYOFFLOAD_METHOD_NONE;
	struct copyoffload_share m = sample_share;
	(void)state;

	m.share_id = 0;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);
	m.share_id = UINT32_MAX;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);

	/* Method orders. */
	static const struct {
		uint8_t order[COPYOFFLOAD_METHOD_COUNT];
		bool valid;
	} orders[] = {
		{{0, 1, 2, 3}, true},
		{{3, 2, 1, 0}, true},
		{{3, 0xff, 0xff, 0xff}, true},
		{{0xff, 0xff, 0xff, 0xff}, false}, /* empty */
		{{1, 1, 0xff, 0xff}, false},       /* duplicate */
		{{0, 0xff, 1, 0xff}, false},       /* gap */
		{{4, 0xff, 0xff, 0xff}, false},    /* unknown method */
		{{0, 1, 2, 0xfe}, false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(orders); i++) {
		m = sample_share;
		memcpy(m.method_order, orders[i].order, sizeof(m.method_order));
		assert_int_equal(copyoffload_method_order_valid(m.method_order), orders[i].valid);
		assert_int_equal(decode_modified_share(m),
				 orders[i].valid ? COPYOFFLOAD_DECODE_OK
						 : COPYOFFLOAD_DECODE_BAD_FIELD);
	}
	uint8_t reversed[COPYOFFLOAD_METHOD_COUNT] = {3, 2, none, none};
	assert_int_equal(copyoffload_method_order_mask(reversed), 0xc);

	/* Largest segment: 0 (defaults) or 64 KiB .. 1 GiB. */
	static const struct { uint64_t value; bool valid; } segments[] = {
		{0, true}, {1, false}, {COPYOFFLOAD_MIN_SEGMENT - 1, false},
		{COPYOFFLOAD_MIN_SEGMENT, true}, {COPYOFFLOAD_MAX_SEGMENT, true},
		{COPYOFFLOAD_MAX_SEGMENT + 1, false}, {UINT64_MAX, false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(segments); i++) {
		m = sample_share;
		m.max_segment = segments[i].value;
		assert_int_equal(decode_modified_share(m),
				 segments[i].valid ? COPYOFFLOAD_DECODE_OK
						   : COPYOFFLOAD_DECODE_BAD_FIELD);
	}

	m = sample_share;
	m.max_bytes_per_second = 0;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);
	m.max_bytes_per_second = COPYOFFLOAD_MAX_BYTES_PER_SECOND;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);
	m.max_bytes_per_second = COPYOFFLOAD_MAX_BYTES_PER_SECOND + 1;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);

	m = sample_share;
	m.max_concurrent = 0;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);
	m.max_concurrent = COPYOFFLOAD_MAX_CONCURRENT;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);
	m.max_concurrent = COPYOFFLOAD_MAX_CONCURRENT + 1;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);

	m = sample_share;
	m.flags = 0;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_OK);
	m.flags = COPYOFFLOAD_SHARE_FLAGS_ALL << 1;
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);

	/* Names: empty, control characters, no terminator. */
	m = sample_share;
	memset(m.name, 0, sizeof(m.name));
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);
	strcpy(m.name, "a\nb");
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);
	memset(m.name, 'z', sizeof(m.name));
	assert_int_equal(decode_modified_share(m), COPYOFFLOAD_DECODE_BAD_FIELD);
}

/* --- STATS ------------------------------------------------------------ */

static void test_stats_request_round_trip(void **state)
{
	uint8_t buf[COPYOFFLOAD_STATS_SIZE];
	struct copyoffload_stats_request out;
	(void)state;

	assert_int_equal(copyoffload_encode_stats_request(buf, &sample_stats),
			 COPYOFFLOAD_STATS_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_STATS, COPYOFFLOAD_PROTOCOL_VERSION, 99);
	assert_int_equal(copyoffload_get32(buf + 24), 0x01020304u);
	assert_int_equal(copyoffload_decode_stats_request(buf, sizeof(buf), &out),
			 COPYOFFLOAD_DECODE_OK);
	assert_true(out.request_id == 99);
	assert_int_equal(out.cursor, 0x01020304u);
}

static void assert_stats_equal(const struct copyoffload_stats_reply *a,
			       const struct copyoffload_stats_reply *b)
{
	assert_true(a->request_id == b->request_id);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->count, b->count);
	assert_int_equal(a->next_cursor, b->next_cursor);
	for (uint32_t r = 0; r < a->count; r++) {
		assert_memory_equal(a->records[r].name, b->records[r].name,
				    COPYOFFLOAD_SHARE_NAME_SIZE);
		assert_int_equal(a->records[r].in_flight, b->records[r].in_flight);
		assert_int_equal(a->records[r].running, b->records[r].running);
		assert_memory_equal(a->records[r].slots, b->records[r].slots,
				    sizeof(a->records[r].slots));
	}
}

static void test_stats_reply_round_trip(void **state)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static struct copyoffload_stats_reply out, full;
	(void)state;

	size_t size = copyoffload_encode_stats_reply(buf, sizeof(buf), &sample_stats_reply);
	assert_int_equal(size, 40 + 2 * 416);
	assert_header(buf, COPYOFFLOAD_MSG_STATS_REPLY, COPYOFFLOAD_PROTOCOL_VERSION, 12);
	assert_int_equal(copyoffload_get32(buf + OFF_LENGTH), size);
	assert_int_equal(copyoffload_get32(buf + 24), 0);
	assert_int_equal(copyoffload_get32(buf + 28), 2);
	assert_int_equal(copyoffload_get32(buf + 32), 2);
	assert_int_equal(copyoffload_get32(buf + 36), 0);
	/* First record: name, in flight, running, then 5 slots of 7 counters. */
	assert_memory_equal(buf + 40, "share\0", 6);
	assert_int_equal(copyoffload_get32(buf + 40 + 128), 5);
	assert_int_equal(copyoffload_get32(buf + 40 + 132), 2);
	assert_true(copyoffload_get64(buf + 40 + 136) == 10);      /* clone requests */
	assert_true(copyoffload_get64(buf + 40 + 136 + 48) == 31); /* clone max */
	const size_t total = 40 + 136 + COPYOFFLOAD_STATS_TOTAL * 56;
	assert_true(copyoffload_get64(buf + total) == 12);
	assert_true(copyoffload_get64(buf + total + 8) == 2);
	assert_true(copyoffload_get64(buf + total + 16) == 1024);
	assert_true(copyoffload_get64(buf + total + 24) == 100);
	assert_true(copyoffload_get64(buf + total + 48) == 400);
	assert_int_equal(buf[40 + 416], 0); /* second record: unattributed */

	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out), COPYOFFLOAD_DECODE_OK);
	assert_stats_equal(&out, &sample_stats_reply);

	/* No record at all, and the error form. */
	struct copyoffload_stats_reply empty = {.request_id = 1};
	size = copyoffload_encode_stats_reply(buf, sizeof(buf), &empty);
	assert_int_equal(size, COPYOFFLOAD_STATS_REPLY_MIN_SIZE);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out), COPYOFFLOAD_DECODE_OK);
	assert_int_equal(out.count, 0);
	empty.status = EPERM;
	size = copyoffload_encode_stats_reply(buf, sizeof(buf), &empty);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out), COPYOFFLOAD_DECODE_OK);
	assert_int_equal(out.status, EPERM);

	/* A full page. */
	memset(&full, 0, sizeof(full));
	full.count = COPYOFFLOAD_STATS_MAX_RECORDS;
	full.next_cursor = 1000;
	for (uint32_t r = 0; r < full.count; r++) {
		snprintf(full.records[r].name, sizeof(full.records[r].name), "share%u", r);
		full.records[r].in_flight = r;
		full.records[r].slots[COPYOFFLOAD_METHOD_DEVICE] =
			(struct copyoffload_method_stats){.requests = r, .bytes = r};
		full.records[r].slots[COPYOFFLOAD_STATS_TOTAL] =
			(struct copyoffload_method_stats){.requests = r, .bytes = r};
	}
	size = copyoffload_encode_stats_reply(buf, sizeof(buf), &full);
	assert_int_equal(size, COPYOFFLOAD_STATS_REPLY_MAX_SIZE);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out), COPYOFFLOAD_DECODE_OK);
	assert_stats_equal(&out, &full);

	/* The encoder refuses what does not fit. */
	assert_int_equal(copyoffload_encode_stats_reply(buf, size - 1, &full), 0);
	full.count = COPYOFFLOAD_STATS_MAX_RECORDS + 1;
	assert_int_equal(copyoffload_encode_stats_reply(buf, sizeof(buf), &full), 0);
}

static enum copyoffload_decode_result
decode_modified_stats(const struct copyoffload_stats_reply *in)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static struct copyoffload_stats_reply out;
	size_t size = copyoffload_encode_stats_reply(buf, sizeof(buf), in);

	assert_true(size > 0);
	return copyoffload_decode_stats_reply(buf, size, &out);
}

static void test_stats_reply_fields(void **state)
{
	static struct copyoffload_stats_reply m;
	struct copyoffload_method_stats *clone, *total;
	(void)state;

#define EXPECT_BAD(change)                                                     \
	do {                                                                   \
		m = sample_stats_reply;                                        \
		clone = &m.records[0].slots[COPYOFFLOAD_METHOD_CLONE];         \
		total = &m.records[0].slots[COPYOFFLOAD_STATS_TOTAL];          \
		(void)clone;                                                   \
		(void)total;                                                   \
		change;                                                        \
		assert_int_equal(decode_modified_stats(&m),                    \
				 COPYOFFLOAD_DECODE_BAD_FIELD);                \
	} while (0)

	assert_int_equal(decode_modified_stats(&sample_stats_reply), COPYOFFLOAD_DECODE_OK);
	EXPECT_BAD(m.status = -1);
	EXPECT_BAD(m.status = EIO);                 /* an error with records */
	EXPECT_BAD((m.count = 0, m.next_cursor = 5)); /* no records, yet more */
	EXPECT_BAD(strcpy(m.records[1].name, "a\tb"));
	EXPECT_BAD(memset(m.records[0].name, 'x', COPYOFFLOAD_SHARE_NAME_SIZE));
	EXPECT_BAD(m.records[0].running = 6);       /* more running than in flight */
	EXPECT_BAD(clone->errors = 11);             /* more errors than requests */
	EXPECT_BAD(clone->latency_p50_us = 21);     /* percentiles out of order */
	EXPECT_BAD(clone->latency_p90_us = 31);
	EXPECT_BAD(clone->latency_p99_us = 32);
	EXPECT_BAD((clone->requests = 13, total->bytes = 1024)); /* more than the share */
	EXPECT_BAD(clone->errors = 3);              /* more errors than the share */
	EXPECT_BAD(clone->bytes = 999);             /* methods do not add up */
	EXPECT_BAD(total->bytes = 1025);
	EXPECT_BAD((clone->bytes = UINT64_MAX, total->bytes = 1000 + 24 - 1 - 0)); /* wraps */
	EXPECT_BAD((m.records[1].slots[0] = (struct copyoffload_method_stats){.bytes = 1})); /* bytes without requests */
	EXPECT_BAD((m.records[1].slots[0] = (struct copyoffload_method_stats){.latency_max_us = 1}));
#undef EXPECT_BAD

	/* The record count must match the size. */
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static struct copyoffload_stats_reply out;
	size_t size = copyoffload_encode_stats_reply(buf, sizeof(buf), &sample_stats_reply);
	copyoffload_put32(buf + 28, 1);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out),
			 COPYOFFLOAD_DECODE_BAD_LENGTH);
	copyoffload_put32(buf + 28, 3);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out),
			 COPYOFFLOAD_DECODE_BAD_LENGTH);
	copyoffload_put32(buf + 28, UINT32_MAX);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size, &out),
			 COPYOFFLOAD_DECODE_BAD_LENGTH);
	/* A size between whole records. */
	copyoffload_put32(buf + 28, 2);
	copyoffload_put32(buf + OFF_LENGTH, (uint32_t)size - 100);
	assert_int_equal(copyoffload_decode_stats_reply(buf, size - 100, &out),
			 COPYOFFLOAD_DECODE_BAD_LENGTH);
}

/* Re-encodes a decoded message of `type` from buf into out. */
static void reencode(enum copyoffload_msg_type type, const uint8_t *buf, size_t len,
		     uint8_t *out)
{
	static union fuzz_message m;
	const struct fuzz_message_kind *kind = fuzz_kind_for_type(type);

	assert_non_null(kind);
	assert_int_equal(kind->decode(buf, len, &m), COPYOFFLOAD_DECODE_OK);
	assert_int_equal(kind->encode(out, COPYOFFLOAD_MAX_MESSAGE_SIZE, &m), len);
	if (type == COPYOFFLOAD_MSG_HELLO) {
		/* The HELLO header's version is free; the encoder uses max_version. */
		copyoffload_put16(out + OFF_VERSION, copyoffload_get16(buf + OFF_VERSION));
	}
}

/*
 * Every single-byte corruption of every message is either rejected or
 * decodes to something that re-encodes to exactly the same bytes: the
 * decoder accepts no message it would not itself produce.
 */
static void test_every_byte_corruption(void **state)
{
	static uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static uint8_t again[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	unsigned accepted = 0, rejected = 0;
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		size_t size = encode_sample(all_types[t], buf);
		for (size_t pos = 0; pos < size; pos++) {
			for (unsigned value = 0; value < 256; value++) {
				encode_sample(all_types[t], buf);
				buf[pos] = (uint8_t)value;
				if (decode_as(all_types[t], buf, size) != COPYOFFLOAD_DECODE_OK) {
					rejected++;
					continue;
				}
				accepted++;
				reencode(all_types[t], buf, size, again);
				assert_memory_equal(buf, again, size);
			}
		}
	}
	assert_true(accepted > 0);
	assert_true(rejected > 0);
}

int main(void)
{
	init_sample_stats_reply();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_little_endian_accessors),
		cmocka_unit_test(test_kind_table),
		cmocka_unit_test(test_message_sizes),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_range_fits),
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_reply_round_trip),
		cmocka_unit_test(test_copy_request_round_trip),
		cmocka_unit_test(test_copy_request_edge_values_accepted),
		cmocka_unit_test(test_copy_reply_round_trip),
		cmocka_unit_test(test_hello_acceptable),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_longer_than_type),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_wrong_type_for_decoder),
		cmocka_unit_test(test_length_field_mismatch),
		cmocka_unit_test(test_reserved_nonzero),
		cmocka_unit_test(test_hello_bad_versions),
		cmocka_unit_test(test_copy_overflowing_ranges),
		cmocka_unit_test(test_copy_length_over_limit),
		cmocka_unit_test(test_copy_bad_methods),
		cmocka_unit_test(test_copy_unknown_flags),
		cmocka_unit_test(test_copy_reply_inconsistent_bytes),
		cmocka_unit_test(test_negative_status),
		cmocka_unit_test(test_copy_share_id),
		cmocka_unit_test(test_release_round_trip),
		cmocka_unit_test(test_cloned_round_trip),
		cmocka_unit_test(test_utf8_length),
		cmocka_unit_test(test_share_name_valid),
		cmocka_unit_test(test_share_name_set),
		cmocka_unit_test(test_share_round_trip),
		cmocka_unit_test(test_share_fields),
		cmocka_unit_test(test_stats_request_round_trip),
		cmocka_unit_test(test_stats_reply_round_trip),
		cmocka_unit_test(test_stats_reply_fields),
		cmocka_unit_test(test_every_byte_corruption),
	};
	return cmocka_run_group_tests_name("copyoffload_protocol", tests, NULL, NULL);
}
