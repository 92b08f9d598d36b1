/* Helpers shared by the test programs: the device under test, temporary directories and files. */
#ifndef CLATTN_TEST_UTIL_H
#define CLATTN_TEST_UTIL_H

#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clattn_advanced.h" /* with clattn.h: tests reach the experimental calls too */

/* The device spec tests run on: CLATTN_DEVICE, or the library's default. */
static inline const char *test_device_spec(void) {
    const char *s = getenv("CLATTN_DEVICE");
    return s ? s : "";
}

/* A fresh private temporary directory (malloc'd path). */
char *test_make_temp_dir(const char *tag);
/* rm -rf; only for directories the test made. */
void test_remove_tree(const char *path);
void test_write_file(const char *path, const char *text);
/* Number of entries in a directory, not counting . and .. */
int test_count_dir_entries(const char *path);
/* A context on the device under test; fails the test (with the library's message) if none can be made. */
clattn_context *test_context(void);

/* The log messages of the last context test_logged_context() made, one per line. */
extern char test_log_messages[16384];
/* A context on the device under test whose log messages collect in test_log_messages (emptied first). */
clattn_context *test_logged_context(void);

/* The group fixture of a test program whose tests share one context on the device under test: defines the
 * context `var` and a `setup` for cmocka_run_group_tests that creates it; TEST_CONTEXT_TEARDOWN(var) defines the
 * `teardown` that frees it, for programs with nothing else to tear down. Each ends in a declaration, so that its
 * use takes a semicolon. */
#define TEST_CONTEXT_SETUP(var)                                                                                    \
    static clattn_context *var;                                                                                    \
    static int setup(void **state) {                                                                               \
        (void)state;                                                                                               \
        var = test_context();                                                                                      \
        return 0;                                                                                                  \
    }                                                                                                              \
    extern int test_context_setup_defined
#define TEST_CONTEXT_TEARDOWN(var)                                                                                 \
    static int teardown(void **state) {                                                                            \
        (void)state;                                                                                               \
        clattn_context_free(var);                                                                                  \
        return 0;                                                                                                  \
    }                                                                                                              \
    extern int test_context_teardown_defined

#define assert_status(expr, expected)                                                                              \
    do {                                                                                                           \
        clattn_status st_ = (expr);                                                                                \
        if (st_ != (expected))                                                                                     \
            fail_msg("%s returned %d (%s), expected %d (%s)", #expr, (int)st_, clattn_status_string(st_),          \
                     (int)(expected), clattn_status_string(expected));                                             \
    } while (0)

#endif
