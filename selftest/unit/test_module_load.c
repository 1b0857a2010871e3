/*
 * How smbd loads the built module: it names none of Samba's libraries (each
 * dlopen would walk their whole dependency tree again, docs/design.md), so
 * alone it cannot load, and beside libsmbd-base and its dependencies, which
 * smbd and every rpcd_* helper that loads VFS modules link, it must.
 * MODULE and SMBD_BASE are the paths meson passes.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char *path_from_env(const char *name)
{
	const char *path = getenv(name);

	if (path == NULL) {
		fail_msg("%s is not set", name);
	}
	return path;
}

/* Must run first: once libsmbd-base is global, the module would load. */
static void test_module_names_no_samba_library(void **state)
{
	void *module;
	const char *error;

	(void)state;
	module = dlopen(path_from_env("MODULE"), RTLD_NOW | RTLD_LOCAL);
	error = dlerror();
	if (module != NULL) {
		dlclose(module);
		fail_msg("the module loaded without smbd's libraries: it names them");
	}
	assert_non_null(error);
	/* Not a missing or broken file: an undefined symbol. */
	assert_non_null(strstr(error, "undefined symbol"));
}

static void test_module_loads_beside_smbd_base(void **state)
{
	void *smbd_base, *module;

	(void)state;
	smbd_base = dlopen(path_from_env("SMBD_BASE"), RTLD_NOW | RTLD_GLOBAL);
	if (smbd_base == NULL) {
		fail_msg("dlopen libsmbd-base: %s", dlerror());
	}
	module = dlopen(path_from_env("MODULE"), RTLD_NOW | RTLD_LOCAL);
	if (module == NULL) {
		fail_msg("dlopen module: %s", dlerror());
	}
	/* What smbd calls to register the module. */
	assert_non_null(dlsym(module, "samba_init_module"));
	dlclose(module);
	dlclose(smbd_base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_module_names_no_samba_library),
		cmocka_unit_test(test_module_loads_beside_smbd_base),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
