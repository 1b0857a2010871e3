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

static enum copyoffload_helper_down load_helper_down(int snum)
{
	const char *value = lp_parm_const_string(snum, MODULE, "helper down",
						 "next");

	if (strequal(value, "next")) {
		return COPYOFFLOAD_HELPER_DOWN_NEXT;
	}
	if (strequal(value, "fail")) {
		return COPYOFFLOAD_HELPER_DOWN_FAIL;
	}
	DBG_ERR("copyoffload: share %s: \"copyoffload:helper down = %s\" is "
		"not one of next, fail; using next\n",
		lp_const_servicename(snum), value);
	return COPYOFFLOAD_HELPER_DOWN_NEXT;
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
	config->helper_down = load_helper_down(snum);
	return config;
}
