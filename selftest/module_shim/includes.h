/*
 * Stands in for Samba's source3 "includes.h" so that the module's real
 * vfs_copyoffload/helper_client.c compiles without smbd, into the fuzz
 * target and the unit test of its connection handling: talloc and tevent
 * are the real libraries, lib/util/dlinklist.h and lib/util/tevent_unix.h
 * come from the configured Samba tree (and tevent_req_is_unix_error from
 * libtevent-util); only the few smbd services below are replaced, in
 * services.c. If helper_client.c starts using another one, add it there.
 */
#ifndef COPYOFFLOAD_MODULE_SHIM_INCLUDES_H
#define COPYOFFLOAD_MODULE_SHIM_INCLUDES_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/types.h>

#include <talloc.h>
#include <tevent.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

/* Samba's debug macros: every message is formatted (so bad format
 * arguments show up under the sanitizers), then dropped unless
 * COPYOFFLOAD_SHIM_VERBOSE is set. */
void copyoffload_shim_debug(int level, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
#define DBG_ERR(...) copyoffload_shim_debug(0, __VA_ARGS__)
#define DBG_WARNING(...) copyoffload_shim_debug(1, __VA_ARGS__)
#define DBG_NOTICE(...) copyoffload_shim_debug(3, __VA_ARGS__)
#define DBG_INFO(...) copyoffload_shim_debug(5, __VA_ARGS__)
#define DBG_DEBUG(...) copyoffload_shim_debug(10, __VA_ARGS__)

/* smbd's root context switch: unbecome_root() without a become_root()
 * aborts, and copyoffload_shim_root_depth() lets a test check the rest. */
void become_root(void);
void unbecome_root(void);
int copyoffload_shim_root_depth(void);

/* Parametric options: the default. */
const char *lp_parm_const_string(int snum, const char *type, const char *option,
				 const char *def);
#ifndef GLOBAL_SECTION_SNUM
#define GLOBAL_SECTION_SNUM (-1)
#endif

/* The wall clock the client's reconnect pauses and bypasses are counted
 * on: a clock that stands still until copyoffload_shim_advance_clock()
 * moves it, so a test decides when a pause ends. (tevent's timers, and
 * so the reply timeout, run on the real clock.) */
time_t copyoffload_shim_time(time_t *t);
void copyoffload_shim_advance_clock(time_t seconds);
#define time(t) copyoffload_shim_time(t)

#endif
