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
#include <string.h>

#include "copyoffload_protocol.h"

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
};

static const struct copyoffload_copy_reply sample_copy_reply = {
	.request_id = 42,
	.status = ENOSPC,
	.bytes_done = 1000 + 20 + 3 + 4,
	.bytes_by_method = {1000, 20, 3, 4},
};

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
	}
	fail_msg("unknown type %d", type);
	return 0;
}

/* Decodes buf as `type` with the matching full decoder. */
static enum copyoffload_decode_result
decode_as(enum copyoffload_msg_type type, const uint8_t *buf, size_t len)
{
	struct copyoffload_hello hello = {0};
	struct copyoffload_hello_reply hello_reply = {0};
	struct copyoffload_copy_request copy = {0};
	struct copyoffload_copy_reply copy_reply = {0};

	switch (type) {
	case COPYOFFLOAD_MSG_HELLO:
		return copyoffload_decode_hello(buf, len, &hello);
	case COPYOFFLOAD_MSG_HELLO_REPLY:
		return copyoffload_decode_hello_reply(buf, len, &hello_reply);
	case COPYOFFLOAD_MSG_COPY:
		return copyoffload_decode_copy_request(buf, len, &copy);
	case COPYOFFLOAD_MSG_COPY_REPLY:
		return copyoffload_decode_copy_reply(buf, len, &copy_reply);
	}
	fail_msg("unknown type %d", type);
	return COPYOFFLOAD_DECODE_OK;
}

static const enum copyoffload_msg_type all_types[] = {
	COPYOFFLOAD_MSG_HELLO,
	COPYOFFLOAD_MSG_HELLO_REPLY,
	COPYOFFLOAD_MSG_COPY,
	COPYOFFLOAD_MSG_COPY_REPLY,
};

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

static void test_message_sizes(void **state)
{
	(void)state;
	assert_int_equal(COPYOFFLOAD_HEADER_SIZE, 24);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_HELLO), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_HELLO_REPLY), 32);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_COPY), 56);
	assert_int_equal(copyoffload_message_size(COPYOFFLOAD_MSG_COPY_REPLY), 72);
	assert_int_equal(copyoffload_message_size(0), 0);
	assert_int_equal(copyoffload_message_size(5), 0);
	assert_int_equal(copyoffload_message_size(0xffff), 0);
	assert_int_equal(COPYOFFLOAD_MAX_MESSAGE_SIZE, 72);
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		assert_true(copyoffload_message_size(all_types[i]) <=
			    COPYOFFLOAD_MAX_MESSAGE_SIZE);
	}
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
	assert_int_equal(copyoffload_get32(buf + OFF_LENGTH),
			 copyoffload_message_size(type));
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

	assert_int_equal(copyoffload_encode_copy_request(buf, &sample_copy),
			 COPYOFFLOAD_COPY_SIZE);
	assert_header(buf, COPYOFFLOAD_MSG_COPY, COPYOFFLOAD_PROTOCOL_VERSION, UINT64_MAX);
	assert_true(copyoffload_get64(buf + 24) == sample_copy.src_offset);
	assert_true(copyoffload_get64(buf + 32) == sample_copy.dst_offset);
	assert_true(copyoffload_get64(buf + 40) == sample_copy.length);
	assert_int_equal(copyoffload_get32(buf + 48), COPYOFFLOAD_METHODS_ALL);
	assert_int_equal(copyoffload_get32(buf + 52), COPYOFFLOAD_COPY_CLONE_ONLY);

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
	assert_int_equal(copyoffload_get32(buf + 28), 0);
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

	h.min_version = 1; h.max_version = 1;
	assert_true(copyoffload_hello_acceptable(&h));
	h.min_version = 1; h.max_version = 9;
	assert_true(copyoffload_hello_acceptable(&h));
	h.min_version = 2; h.max_version = 3;
	assert_false(copyoffload_hello_acceptable(&h));
	h.min_version = 0; h.max_version = 0;
	assert_false(copyoffload_hello_acceptable(&h));
}

/* --- rejection -------------------------------------------------------- */

static void test_truncated(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_header h;
	(void)state;

	for (size_t t = 0; t < ARRAY_SIZE(all_types); t++) {
		size_t size = encode_sample(all_types[t], buf);
		for (size_t len = 0; len < size; len++) {
			assert_int_equal(decode_as(all_types[t], buf, len),
					 COPYOFFLOAD_DECODE_TRUNCATED);
			assert_int_equal(copyoffload_decode_header(buf, len, &h),
					 COPYOFFLOAD_DECODE_TRUNCATED);
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
	static const uint16_t versions[] = {0, 2, UINT16_MAX};
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
	struct copyoffload_hello newer = {.request_id = 1, .min_version = 2,
					  .max_version = 4};
	copyoffload_encode_hello(buf, &newer);
	assert_int_equal(copyoffload_decode_hello(buf, COPYOFFLOAD_HELLO_SIZE, &hello),
			 COPYOFFLOAD_DECODE_OK);
	assert_false(copyoffload_hello_acceptable(&hello));
}

static void test_unknown_type(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static const uint16_t types[] = {0, 5, 6, 0x100, UINT16_MAX};
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

	/* Padding inside bodies: HELLO 28..31, HELLO_REPLY 30..31, COPY_REPLY 28..31. */
	struct { enum copyoffload_msg_type type; size_t offset; } padding[] = {
		{COPYOFFLOAD_MSG_HELLO, 28}, {COPYOFFLOAD_MSG_HELLO, 31},
		{COPYOFFLOAD_MSG_HELLO_REPLY, 30}, {COPYOFFLOAD_MSG_HELLO_REPLY, 31},
		{COPYOFFLOAD_MSG_COPY_REPLY, 28}, {COPYOFFLOAD_MSG_COPY_REPLY, 31},
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

/* Re-encodes a decoded message of `type` from buf into out. */
static void reencode(enum copyoffload_msg_type type, const uint8_t *buf, size_t len,
		     uint8_t *out)
{
	struct copyoffload_hello hello = {0};
	struct copyoffload_hello_reply hello_reply = {0};
	struct copyoffload_copy_request copy = {0};
	struct copyoffload_copy_reply copy_reply = {0};

	switch (type) {
	case COPYOFFLOAD_MSG_HELLO:
		assert_int_equal(copyoffload_decode_hello(buf, len, &hello), COPYOFFLOAD_DECODE_OK);
		copyoffload_encode_hello(out, &hello);
		/* The HELLO header's version is free; the encoder uses max_version. */
		copyoffload_put16(out + OFF_VERSION, copyoffload_get16(buf + OFF_VERSION));
		break;
	case COPYOFFLOAD_MSG_HELLO_REPLY:
		assert_int_equal(copyoffload_decode_hello_reply(buf, len, &hello_reply),
				 COPYOFFLOAD_DECODE_OK);
		copyoffload_encode_hello_reply(out, &hello_reply);
		break;
	case COPYOFFLOAD_MSG_COPY:
		assert_int_equal(copyoffload_decode_copy_request(buf, len, &copy),
				 COPYOFFLOAD_DECODE_OK);
		copyoffload_encode_copy_request(out, &copy);
		break;
	case COPYOFFLOAD_MSG_COPY_REPLY:
		assert_int_equal(copyoffload_decode_copy_reply(buf, len, &copy_reply),
				 COPYOFFLOAD_DECODE_OK);
		copyoffload_encode_copy_reply(out, &copy_reply);
		break;
	}
}

/*
 * Every single-byte corruption of every message is either rejected or
 * decodes to something that re-encodes to exactly the same bytes: the
 * decoder accepts no message it would not itself produce.
 */
static void test_every_byte_corruption(void **state)
{
	uint8_t buf[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	uint8_t again[COPYOFFLOAD_MAX_MESSAGE_SIZE];
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
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_little_endian_accessors),
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
		cmocka_unit_test(test_every_byte_corruption),
	};
	return cmocka_run_group_tests_name("copyoffload_protocol", tests, NULL, NULL);
}
