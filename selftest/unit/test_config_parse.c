/*
 * Unit tests of the module's option value parsing
 * (vfs_copyoffload/copyoffload_config_parse.c): method lists, sizes and
 * counts, good and bad values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "copyoffload_config_parse.h"

#define NONE COPYOFFLOAD_METHOD_NONE
#define CLONE COPYOFFLOAD_METHOD_CLONE
#define CFR COPYOFFLOAD_METHOD_COPY_FILE_RANGE
#define DEVICE COPYOFFLOAD_METHOD_DEVICE
#define RW COPYOFFLOAD_METHOD_READ_WRITE

struct rejections {
	char text[256];
	unsigned count;
};

static void collect(const char *word, size_t length, const char *why, void *private_data)
{
	struct rejections *r = private_data;
	size_t used = strlen(r->text);
	snprintf(r->text + used, sizeof(r->text) - used, "%s%.*s (%s)", used ? "; " : "",
		 (int)length, word, why);
	r->count++;
}

static void expect_methods(const char *text, size_t count, const uint8_t expected[4],
			   const char *rejected)
{
	uint8_t order[COPYOFFLOAD_METHOD_COUNT];
	struct rejections r = {.text = ""};

	memset(order, 0x55, sizeof(order));
	size_t kept = copyoffload_parse_methods(text, order, collect, &r);
	if (kept != count || memcmp(order, expected, sizeof(order)) != 0) {
		fail_msg("\"%s\": kept %zu {%u,%u,%u,%u}, expected %zu {%u,%u,%u,%u}", text, kept,
			 order[0], order[1], order[2], order[3], count, expected[0], expected[1],
			 expected[2], expected[3]);
	}
	if (strcmp(r.text, rejected) != 0) {
		fail_msg("\"%s\": rejected \"%s\", expected \"%s\"", text, r.text, rejected);
	}
	if (count > 0) {
		assert_true(copyoffload_method_order_valid(order));
	}
}

static void test_method_lists(void **state)
{
	(void)state;
	expect_methods("clone, copy_file_range, read_write", 3,
		       (uint8_t[]){CLONE, CFR, RW, NONE}, "");
	/* The order is the preference. */
	expect_methods("read_write,copy_file_range", 2, (uint8_t[]){RW, CFR, NONE, NONE}, "");
	expect_methods("  copy_file_range  clone\t", 2, (uint8_t[]){CFR, CLONE, NONE, NONE}, "");
	expect_methods("CLONE,,Read_Write", 2, (uint8_t[]){CLONE, RW, NONE, NONE}, "");
	expect_methods("device read_write clone copy_file_range", 4,
		       (uint8_t[]){DEVICE, RW, CLONE, CFR}, "");
	/* Unknown names and repeats are dropped and reported. */
	expect_methods("clone, reflink, copy_file_range", 2,
		       (uint8_t[]){CLONE, CFR, NONE, NONE}, "reflink (unknown method)");
	expect_methods("clone clone clones", 1, (uint8_t[]){CLONE, NONE, NONE, NONE},
		       "clone (listed twice); clones (unknown method)");
	expect_methods("clon", 0, (uint8_t[]){NONE, NONE, NONE, NONE}, "clon (unknown method)");
	expect_methods("copy_file_range;read_write", 0, (uint8_t[]){NONE, NONE, NONE, NONE},
		       "copy_file_range;read_write (unknown method)");
	/* Nothing at all. */
	expect_methods("", 0, (uint8_t[]){NONE, NONE, NONE, NONE}, "");
	expect_methods(" , ,", 0, (uint8_t[]){NONE, NONE, NONE, NONE}, "");

	/* No callback: still parsed. */
	uint8_t order[COPYOFFLOAD_METHOD_COUNT];
	assert_int_equal(copyoffload_parse_methods("x, read_write", order, NULL, NULL), 1);
	assert_int_equal(order[0], RW);
}

static void test_format_methods(void **state)
{
	char buf[80];
	uint8_t order[COPYOFFLOAD_METHOD_COUNT];
	(void)state;

	copyoffload_format_methods((uint8_t[]){CLONE, CFR, RW, NONE}, buf, sizeof(buf));
	assert_string_equal(buf, "clone, copy_file_range, read_write");
	copyoffload_format_methods((uint8_t[]){RW, NONE, NONE, NONE}, buf, sizeof(buf));
	assert_string_equal(buf, "read_write");
	copyoffload_format_methods((uint8_t[]){CLONE, CFR, RW, NONE}, buf, 8);
	assert_string_equal(buf, "clone, ");
	/* What it writes parses back to the same order. */
	copyoffload_format_methods((uint8_t[]){DEVICE, CFR, CLONE, RW}, buf, sizeof(buf));
	assert_int_equal(copyoffload_parse_methods(buf, order, NULL, NULL), 4);
	assert_memory_equal(order, ((uint8_t[]){DEVICE, CFR, CLONE, RW}), 4);
}

static void expect_size(const char *text, uint64_t expected)
{
	uint64_t bytes = 12345;
	if (!copyoffload_parse_size(text, &bytes) || bytes != expected) {
		fail_msg("\"%s\": %llu, expected %llu", text, (unsigned long long)bytes,
			 (unsigned long long)expected);
	}
}

static void expect_bad_size(const char *text)
{
	uint64_t bytes = 12345;
	if (copyoffload_parse_size(text, &bytes) || bytes != 12345) {
		fail_msg("\"%s\" accepted as %llu", text, (unsigned long long)bytes);
	}
}

static void test_sizes(void **state)
{
	(void)state;
	expect_size("0", 0);
	expect_size("65536", 65536);
	expect_size("64K", 64 << 10);
	expect_size("64k", 64 << 10);
	expect_size("8M", 8 << 20);
	expect_size("8 MiB", 8 << 20);
	expect_size("8MB", 8 << 20);
	expect_size(" 1G ", 1 << 30);
	expect_size("2T", 2ull << 40);
	expect_size("16777215T", 16777215ull << 40);
	expect_size("18446744073709551615", UINT64_MAX);

	expect_bad_size("");
	expect_bad_size(" ");
	expect_bad_size("M");
	expect_bad_size("-1");
	expect_bad_size("1.5M");
	expect_bad_size("8X");
	expect_bad_size("8 M B");
	expect_bad_size("8Mi");
	expect_bad_size("0x10");
	expect_bad_size("8M8");
	expect_bad_size("18446744073709551616");  /* 2^64 */
	expect_bad_size("16777216T");             /* 2^64 bytes */
	expect_bad_size("one");
}

static void test_counts(void **state)
{
	uint64_t value = 7;
	(void)state;

	assert_true(copyoffload_parse_count("0", 100, &value));
	assert_int_equal(value, 0);
	assert_true(copyoffload_parse_count(" 100 ", 100, &value));
	assert_int_equal(value, 100);
	assert_true(copyoffload_parse_count("65535", COPYOFFLOAD_MAX_CONCURRENT, &value));
	assert_int_equal(value, 65535);

	value = 7;
	assert_false(copyoffload_parse_count("101", 100, &value));
	assert_false(copyoffload_parse_count("65536", COPYOFFLOAD_MAX_CONCURRENT, &value));
	assert_false(copyoffload_parse_count("", 100, &value));
	assert_false(copyoffload_parse_count("-1", 100, &value));
	assert_false(copyoffload_parse_count("4K", 100000, &value));
	assert_false(copyoffload_parse_count("2 3", 100, &value));
	assert_false(copyoffload_parse_count("99999999999999999999999", UINT64_MAX, &value));
	assert_int_equal(value, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_method_lists),
		cmocka_unit_test(test_format_methods),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_counts),
	};
	return cmocka_run_group_tests_name("copyoffload_config_parse", tests, NULL, NULL);
}
