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

#define MODULE "copyoffload"

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
	return config;
}
