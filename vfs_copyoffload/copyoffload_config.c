/*
 * copyoffload: per-share options (smb.conf "copyoffload:<name>").
 *
 * Copyright (C) 2026 The copyoffload authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */

#include "includes.h"
#include <sys/un.h>
#include "copyoffload_protocol.h"
#include "copyoffload_config.h"
#include "copyoffload_config_parse.h"

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_VFS

#define MODULE "copyoffload"

/* Device copy applies only to copies between two block devices. */
#define DEFAULT_METHODS "clone, copy_file_range, device, read_write"

static const char *load_helper_socket(int snum)
{
	struct sockaddr_un sun;
	const char *path = lp_parm_const_string(snum, MODULE, "helper socket",
						COPYOFFLOAD_DEFAULT_SOCKET);

	if (path[0] != '/' || strlen(path) >= sizeof(sun.sun_path)) {
		DBG_ERR("copyoffload: share %s: \"copyoffload:helper socket = "
			"%s\" must be an absolute path shorter than %zu "
			"bytes; using %s\n",
			lp_const_servicename(snum), path,
			sizeof(sun.sun_path), COPYOFFLOAD_DEFAULT_SOCKET);
		return COPYOFFLOAD_DEFAULT_SOCKET;
	}
	return path;
}

/*
 * Reads an option whose value must be one of choices (NULL-terminated);
 * returns the index of the value, or of default_choice after logging.
 */
static int load_choice(int snum, const char *option,
		       const char *const *choices, int default_choice)
{
	const char *value = lp_parm_const_string(snum, MODULE, option,
						 choices[default_choice]);
	char *valid = NULL;
	int i;

	for (i = 0; choices[i] != NULL; i++) {
		if (strequal(value, choices[i])) {
			return i;
		}
	}
	valid = str_list_join(talloc_tos(), (const char **)choices, ',');
	DBG_ERR("copyoffload: share %s: \"copyoffload:%s = %s\" is not one "
		"of %s; using %s\n",
		lp_const_servicename(snum), option, value,
		valid != NULL ? valid : "?", choices[default_choice]);
	TALLOC_FREE(valid);
	return default_choice;
}

static bool load_bool(int snum, const char *option, bool default_value)
{
	const char *value = lp_parm_const_string(snum, MODULE, option, NULL);
	bool result;

	if (value == NULL) {
		return default_value;
	}
	if (!set_boolean(value, &result)) {
		DBG_ERR("copyoffload: share %s: \"copyoffload:%s = %s\" is not "
			"a boolean; using %s\n",
			lp_const_servicename(snum), option, value,
			default_value ? "yes" : "no");
		return default_value;
	}
	return result;
}

struct rejected_method_context {
	int snum;
	const char *value;
};

static void log_rejected_method(const char *word, size_t length,
				const char *why, void *private_data)
{
	const struct rejected_method_context *ctx = private_data;

	DBG_ERR("copyoffload: share %s: \"copyoffload:methods = %s\": "
		"\"%.*s\" dropped: %s (known: clone, copy_file_range, "
		"device, read_write)\n",
		lp_const_servicename(ctx->snum), ctx->value, (int)length, word,
		why);
}

static void load_methods(int snum, uint8_t order[COPYOFFLOAD_METHOD_COUNT])
{
	const char *value = lp_parm_const_string(snum, MODULE, "methods",
						 DEFAULT_METHODS);
	struct rejected_method_context ctx = { .snum = snum, .value = value };
	size_t count;

	count = copyoffload_parse_methods(value, order, log_rejected_method,
					  &ctx);
	if (count > 0 &&
	    copyoffload_method_order_mask(order) ==
		    COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_DEVICE)) {
		DBG_WARNING("copyoffload: share %s: \"copyoffload:methods = "
			    "%s\" names only device: the helper copies block "
			    "devices, and refuses copies of files\n",
			    lp_const_servicename(snum), value);
	}
	if (count > 0) {
		return;
	}
	DBG_ERR("copyoffload: share %s: \"copyoffload:methods = %s\" names "
		"no method; using %s\n",
		lp_const_servicename(snum), value, DEFAULT_METHODS);
	copyoffload_parse_methods(DEFAULT_METHODS, order, NULL, NULL);
}

/*
 * Reads a byte count (with K, M, G, T suffixes) that must be 0 or lie in
 * [min, max]; logs and returns default_value otherwise.
 */
static uint64_t load_size(int snum, const char *option, uint64_t min,
			  uint64_t max, uint64_t default_value)
{
	const char *value = lp_parm_const_string(snum, MODULE, option, NULL);
	uint64_t bytes;

	if (value == NULL) {
		return default_value;
	}
	if (copyoffload_parse_size(value, &bytes) &&
	    (bytes == 0 || (bytes >= min && bytes <= max))) {
		return bytes;
	}
	DBG_ERR("copyoffload: share %s: \"copyoffload:%s = %s\" is not 0 or a "
		"size from %" PRIu64 " to %" PRIu64 " bytes (K, M, G, T "
		"suffixes allowed); using %" PRIu64 "\n",
		lp_const_servicename(snum), option, value, min, max,
		default_value);
	return default_value;
}

static uint64_t load_count(int snum, const char *option, uint64_t max,
			   uint64_t default_value)
{
	const char *value = lp_parm_const_string(snum, MODULE, option, NULL);
	uint64_t count;

	if (value == NULL) {
		return default_value;
	}
	if (copyoffload_parse_count(value, max, &count)) {
		return count;
	}
	DBG_ERR("copyoffload: share %s: \"copyoffload:%s = %s\" is not a "
		"number from 0 to %" PRIu64 "; using %" PRIu64 "\n",
		lp_const_servicename(snum), option, value, max, default_value);
	return default_value;
}

static void load_share_policy(int snum, struct copyoffload_share *share)
{
	const char *name = lp_const_servicename(snum);

	if (!copyoffload_share_name_set(share->name, name)) {
		DBG_NOTICE("copyoffload: share %s is known to the helper as "
			   "\"%s\" (names are cut to %d bytes of UTF-8 "
			   "without control characters)\n",
			   name, share->name, COPYOFFLOAD_SHARE_NAME_SIZE - 1);
	}
	load_methods(snum, share->method_order);
	share->max_segment = load_size(snum, "max segment",
				       COPYOFFLOAD_MIN_SEGMENT,
				       COPYOFFLOAD_MAX_SEGMENT, 0);
	share->max_bytes_per_second = load_size(
		snum, "max bytes per second", 1,
		COPYOFFLOAD_MAX_BYTES_PER_SECOND, 0);
	share->max_concurrent = (uint32_t)load_count(
		snum, "max concurrent copies", COPYOFFLOAD_MAX_CONCURRENT, 0);
	share->flags = load_bool(snum, "preallocate", true)
			       ? 0
			       : COPYOFFLOAD_SHARE_NO_PREALLOCATE;
}

uint32_t copyoffload_config_methods(const struct copyoffload_config *config)
{
	return copyoffload_method_order_mask(config->share.method_order);
}

struct copyoffload_config *copyoffload_config_load(TALLOC_CTX *mem_ctx,
						   int snum)
{
	struct copyoffload_config *config = NULL;

	config = talloc_zero(mem_ctx, struct copyoffload_config);
	if (config == NULL) {
		return NULL;
	}
	config->helper_socket = talloc_strdup(config, load_helper_socket(snum));
	if (config->helper_socket == NULL) {
		TALLOC_FREE(config);
		return NULL;
	}
	config->helper_down = load_choice(
		snum, "helper down",
		(const char *const[]) { "next", "fail", NULL },
		COPYOFFLOAD_HELPER_DOWN_NEXT);
	config->block_refcounting = load_choice(
		snum, "block refcounting",
		(const char *const[]) { "auto", "yes", "no", NULL },
		COPYOFFLOAD_BLOCK_REFCOUNTING_AUTO);
	config->dup_extents_fallback = load_bool(snum, "dup extents fallback",
						 false);
	config->inline_clone = load_bool(snum, "inline clone", true);
	config->merge_chunks = load_bool(snum, "merge chunks", true);
	load_share_policy(snum, &config->share);
	if (config->block_refcounting == COPYOFFLOAD_BLOCK_REFCOUNTING_YES &&
	    (copyoffload_config_methods(config) &
	     COPYOFFLOAD_METHOD_BIT(COPYOFFLOAD_METHOD_CLONE)) == 0) {
		DBG_ERR("copyoffload: share %s: \"copyoffload:block refcounting "
			"= yes\" needs clone in copyoffload:methods; block "
			"refcounting is not advertised\n",
			lp_const_servicename(snum));
		config->block_refcounting = COPYOFFLOAD_BLOCK_REFCOUNTING_NO;
	}
	return config;
}
