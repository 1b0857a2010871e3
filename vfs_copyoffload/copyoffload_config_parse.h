/*
 * copyoffload: parsing of smb.conf option values, free of Samba so that it
 * can be unit-tested on its own. copyoffload_config.c reads the options and
 * logs what these functions refuse.
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#ifndef COPYOFFLOAD_CONFIG_PARSE_H
#define COPYOFFLOAD_CONFIG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "copyoffload_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Told about each word of a method list that is dropped, and why. */
typedef void (*copyoffload_rejected_method_fn)(const char *word, size_t length,
					       const char *why, void *private_data);

/*
 * Parses a method list such as "clone, copy_file_range, read_write":
 * method names (copyoffload_method_name), case-insensitive, separated by
 * commas and/or blanks, most preferred first. Fills order (unused slots
 * COPYOFFLOAD_METHOD_NONE) and returns how many methods it kept. Unknown
 * names and repeats are dropped and passed to rejected (may be NULL).
 */
size_t copyoffload_parse_methods(const char *text,
				 uint8_t order[COPYOFFLOAD_METHOD_COUNT],
				 copyoffload_rejected_method_fn rejected,
				 void *private_data);

/*
 * Writes a method order as "clone, copy_file_range" (the form the parser
 * reads) into buf; truncated to fit size bytes, always NUL-terminated.
 */
void copyoffload_format_methods(const uint8_t order[COPYOFFLOAD_METHOD_COUNT],
				char *buf, size_t size);

/*
 * Parses a byte count: decimal digits, optionally followed by K, M, G or T
 * (powers of 1024, either case, optionally followed by "B" or "iB"), with
 * optional blanks around. False for anything else and on overflow.
 */
bool copyoffload_parse_size(const char *text, uint64_t *bytes);

/* Parses a plain decimal number no larger than max, blanks around. */
bool copyoffload_parse_count(const char *text, uint64_t max, uint64_t *value);

#ifdef __cplusplus
}
#endif

#endif
