// SPDX-License-Identifier: Apache-2.0
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
/* A host attention call's description at its defaults but for the shape: batch, query heads, key/value heads,
 * query length, key length and head dimension. */
clattn_sdpa_host_desc test_host_desc(size_t batch, size_t q_heads, size_t kv_heads, size_t q_len, size_t kv_len,
                                     size_t head_dim);
/* Context options at their defaults whose error message is written to msg[size]. */
void test_context_options(clattn_context_options *o, char *msg, size_t size);
/* A context made with the options *o (their error message is set here); fails the test, with the library's
 * message, if none can be made. */
clattn_context *test_context_with(clattn_context_options *o);

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
/* The group `teardown` that runs the statements `body`. TEST_CONTEXT_TEARDOWN(var) frees the context `var`;
 * TEST_TEMP_DIR_TEARDOWN(var) removes the temporary directory `var` (made by test_make_temp_dir) with all it holds
 * and frees its name. */
#define TEST_TEARDOWN(body)                                                                                        \
    static int teardown(void **state) {                                                                            \
        (void)state;                                                                                               \
        body;                                                                                                      \
        return 0;                                                                                                  \
    }                                                                                                              \
    extern int test_teardown_defined
#define TEST_CONTEXT_TEARDOWN(var)  TEST_TEARDOWN(clattn_context_free(var))
#define TEST_TEMP_DIR_TEARDOWN(var) TEST_TEARDOWN(test_remove_tree(var); free(var))

/* ---- tensors far into large buffers ---- */

/* The window of a tensor's buffer that a test stages on the host: the view with `margin` elements of canary on
 * either side (fewer before it when the offset is smaller). A view at an offset past 2^31 bytes then costs host
 * memory for its window alone; the rest of the buffer is never written or read. In elements: the window is
 * [*first, *first + *count) of a buffer of *total elements (the view's end plus the margin). */
void test_view_window(const clattn_tensor *t, size_t margin, size_t *first, size_t *count, size_t *total);
/* A buffer of total_bytes whose bytes [first_byte, first_byte + window_bytes) are `window`; the others are left as
 * the driver gives them. NULL if it cannot be made. */
cl_mem test_upload_window(clattn_context *ctx, size_t total_bytes, size_t first_byte, const void *window,
                          size_t window_bytes);
/* Reads bytes [first_byte, first_byte + bytes) of a buffer (blocking); 0, or -1 on failure. */
int test_read_window(clattn_context *ctx, cl_mem buffer, size_t first_byte, size_t bytes, void *dst);

/* A read-write buffer of `bytes` bytes, each `fill`; fails the test if it cannot be made. */
cl_mem test_filled_buffer(clattn_context *ctx, size_t bytes, int fill);

/* Fails the test unless the first `bytes` bytes of buffer `m` all still hold `fill` (an output that a failing call
 * must not have written). */
void test_expect_unwritten(clattn_context *ctx, cl_mem m, size_t bytes, int fill);

/* Whether the device of `ctx` allows buffers of `bytes` (CL_DEVICE_MAX_MEM_ALLOC_SIZE); if not, prints why and
 * skips the current test. */
bool test_device_allows(clattn_context *ctx, size_t bytes, const char *what);

/* ---- sampled rows ---- */

/* About `want` rows of `slices` slices of `len` rows each, as flat indices slice * len + row, sorted and distinct,
 * for checking a large result against a reference on a sample: every slice gives max(1, want / slices) rows, its
 * first and last among them when it gives two or more, the others at seeded random places (a slice giving one row
 * gives its first, its last, or a random one, in turn). Returns the count; *rows is malloc'd. */
size_t test_sample_rows(size_t slices, size_t len, size_t want, unsigned seed, size_t **rows);

#define assert_status(expr, expected)                                                                              \
    do {                                                                                                           \
        clattn_status st_ = (expr);                                                                                \
        if (st_ != (expected))                                                                                     \
            fail_msg("%s returned %d (%s), expected %d (%s)", #expr, (int)st_, clattn_status_string(st_),          \
                     (int)(expected), clattn_status_string(expected));                                             \
    } while (0)

#endif
