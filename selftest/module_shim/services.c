/*
 * The smbd services module_shim/includes.h replaces, for the tests that
 * compile the module's helper_client.c without smbd.
 */
#include "includes.h"

#include <stdarg.h>

static int root_depth;
/* Stands still unless moved: no second boundary decides a test. */
static time_t shim_clock = 1000000000;

void become_root(void)
{
	root_depth++;
}

void unbecome_root(void)
{
	if (root_depth <= 0) {
		fprintf(stderr, "unbecome_root() without become_root()\n");
		abort();
	}
	root_depth--;
}

int copyoffload_shim_root_depth(void)
{
	return root_depth;
}

const char *lp_parm_const_string(int snum, const char *type, const char *option,
				 const char *def)
{
	(void)snum;
	(void)type;
	(void)option;
	return def;
}

time_t copyoffload_shim_time(time_t *t)
{
	if (t != NULL) {
		*t = shim_clock;
	}
	return shim_clock;
}

void copyoffload_shim_advance_clock(time_t seconds)
{
	shim_clock += seconds;
}

void copyoffload_shim_debug(int level, const char *format, ...)
{
	static int verbose = -1;
	char line[1024];
	va_list ap;

	va_start(ap, format);
	vsnprintf(line, sizeof(line), format, ap);
	va_end(ap);
	if (verbose < 0) {
		verbose = getenv("COPYOFFLOAD_SHIM_VERBOSE") != NULL;
	}
	if (verbose) {
		fprintf(stderr, "[module %d] %s", level, line);
	}
}
