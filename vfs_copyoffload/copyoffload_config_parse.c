/*
 * copyoffload: parsing of smb.conf option values (see the header).
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#include "copyoffload_config_parse.h"

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool word_is(const char *word, size_t length, const char *name)
{
	size_t i;

	for (i = 0; i < length; i++) {
		if (name[i] == '\0' || ascii_lower(word[i]) != name[i]) {
			return false;
		}
	}
	return name[length] == '\0';
}

size_t copyoffload_parse_methods(const char *text,
				 uint8_t order[COPYOFFLOAD_METHOD_COUNT],
				 copyoffload_rejected_method_fn rejected,
				 void *private_data)
{
	size_t count = 0, length, i;
	uint32_t seen = 0;
	unsigned m;

	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT; i++) {
		order[i] = COPYOFFLOAD_METHOD_NONE;
	}
	while (*text != '\0') {
		if (*text == ',' || is_blank(*text)) {
			text++;
			continue;
		}
		for (length = 0; text[length] != '\0' && text[length] != ',' &&
				 !is_blank(text[length]);
		     length++) {
		}
		for (m = 0; m < COPYOFFLOAD_METHOD_COUNT; m++) {
			if (word_is(text, length, copyoffload_method_name(m))) {
				break;
			}
		}
		if (m == COPYOFFLOAD_METHOD_COUNT) {
			if (rejected != NULL) {
				rejected(text, length, "unknown method", private_data);
			}
		} else if ((seen & COPYOFFLOAD_METHOD_BIT(m)) != 0) {
			if (rejected != NULL) {
				rejected(text, length, "listed twice", private_data);
			}
		} else {
			seen |= COPYOFFLOAD_METHOD_BIT(m);
			order[count++] = (uint8_t)m;
		}
		text += length;
	}
	return count;
}

void copyoffload_format_methods(const uint8_t order[COPYOFFLOAD_METHOD_COUNT],
				char *buf, size_t size)
{
	size_t used = 0;
	unsigned i;

	if (size == 0) {
		return;
	}
	buf[0] = '\0';
	for (i = 0; i < COPYOFFLOAD_METHOD_COUNT &&
		    order[i] != COPYOFFLOAD_METHOD_NONE;
	     i++) {
		const char *parts[2] = { i == 0 ? "" : ", ",
					 copyoffload_method_name(order[i]) };
		unsigned p;

		for (p = 0; p < 2; p++) {
			const char *c;
			for (c = parts[p]; *c != '\0' && used + 1 < size; c++) {
				buf[used++] = *c;
			}
		}
	}
	buf[used] = '\0';
}

static const char *skip_blanks(const char *p)
{
	while (is_blank(*p)) {
		p++;
	}
	return p;
}

/* Digits at *p into *value (no overflow); advances *p. */
static bool parse_digits(const char **p, uint64_t *value)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9') {
		return false;
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned digit = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - digit) / 10) {
			return false;
		}
		v = v * 10 + digit;
	}
	*p = s;
	*value = v;
	return true;
}

bool copyoffload_parse_size(const char *text, uint64_t *bytes)
{
	const char *p = skip_blanks(text);
	const char *units = "kmgt";
	uint64_t value;
	unsigned shift = 0, i;

	if (!parse_digits(&p, &value)) {
		return false;
	}
	p = skip_blanks(p);
	for (i = 0; units[i] != '\0'; i++) {
		if (ascii_lower(*p) == units[i]) {
			shift = 10 * (i + 1);
			p++;
			if (ascii_lower(p[0]) == 'i' && ascii_lower(p[1]) == 'b') {
				p += 2;
			} else if (ascii_lower(*p) == 'b') {
				p++;
			}
			break;
		}
	}
	if (*skip_blanks(p) != '\0') {
		return false;
	}
	if (shift > 0 && value > (UINT64_MAX >> shift)) {
		return false;
	}
	*bytes = value << shift;
	return true;
}

bool copyoffload_parse_count(const char *text, uint64_t max, uint64_t *value)
{
	const char *p = skip_blanks(text);
	uint64_t v;

	if (!parse_digits(&p, &v) || *skip_blanks(p) != '\0' || v > max) {
		return false;
	}
	*value = v;
	return true;
}
