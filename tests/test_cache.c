// SPDX-License-Identifier: Apache-2.0
/* The on-disk program cache: a second context hits it, corrupt and mismatched entries are detected and rebuilt,
 * CLATTN_CACHE=0 writes nothing, and the directory is private to the user. */
#include "test_util.h"

#include "internal.h"

#include <sys/stat.h>
#include <unistd.h>

static char *cache_dir;

static int setup(void **state) {
    (void)state;
    cache_dir = test_make_temp_dir("cache");
    char sub[1024];
    /* A directory that does not exist yet: clattn must create it (and its parents) itself. */
    snprintf(sub, sizeof sub, "%s/nested/clattn", cache_dir);
    setenv("CLATTN_CACHE_DIR", sub, 1);
    unsetenv("CLATTN_CACHE");
    return 0;
}

TEST_TEMP_DIR_TEARDOWN(cache_dir);

static clattn_cache_stats build_once(const char *options) {
    clattn_context *ctx = test_context();
    cl_program p = NULL;
    clattn_status st = cla_program_get(ctx, "common", options, &p);
    if (st != CLATTN_SUCCESS) fail_msg("%s", clattn_context_last_error(ctx));
    clattn_cache_stats s;
    clattn_context_cache_stats(ctx, &s);
    clattn_context_free(ctx);
    return s;
}

/* The path of the disk-cache entry of "common" with these options, after making sure it exists. */
static char *entry_path(const char *options) {
    build_once(options);
    clattn_context *ctx = test_context();
    char *key = cla_program_cache_key(ctx, "common", options);
    assert_non_null(key);
    char *path = cla_disk_cache_path(ctx, key);
    assert_non_null(path);
    free(key);
    clattn_context_free(ctx);
    return path;
}

static void second_context_hits_the_disk_cache(void **state) {
    (void)state;
    clattn_cache_stats first = build_once("-DCACHE_TEST=1");
    assert_int_equal(first.builds, 1);
    assert_int_equal(first.disk_writes, 1);
    assert_int_equal(first.disk_hits, 0);
    clattn_cache_stats second = build_once("-DCACHE_TEST=1");
    assert_int_equal(second.builds, 0);
    assert_int_equal(second.disk_hits, 1);
    assert_int_equal(second.disk_writes, 0);
    /* Different options are a different key. */
    clattn_cache_stats other = build_once("-DCACHE_TEST=2");
    assert_int_equal(other.builds, 1);

    struct stat st;
    assert_int_equal(stat(getenv("CLATTN_CACHE_DIR"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void corrupt_entry_is_detected_and_rebuilt(void **state) {
    (void)state;
    char *path = entry_path("-DCACHE_TEST=3");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    /* 1: flip one byte in the binary (the checksum catches it). */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, st.st_size - 10, SEEK_SET);
    int c = fgetc(f);
    fseek(f, st.st_size - 10, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    clattn_cache_stats s = build_once("-DCACHE_TEST=3");
    assert_int_equal(s.disk_rejects, 1);
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.disk_writes, 1);
    /* The rebuilt entry is good again. */
    s = build_once("-DCACHE_TEST=3");
    assert_int_equal(s.disk_hits, 1);
    assert_int_equal(s.disk_rejects, 0);

    /* 2: truncate it. */
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    s = build_once("-DCACHE_TEST=3");
    assert_int_equal(s.disk_rejects, 1);
    assert_int_equal(s.builds, 1);

    /* 3: garbage of the right size. */
    f = fopen(path, "wb");
    for (off_t i = 0; i < st.st_size; ++i) fputc((int)(i * 7), f);
    fclose(f);
    s = build_once("-DCACHE_TEST=3");
    assert_int_equal(s.disk_rejects, 1);
    assert_int_equal(s.builds, 1);

    /* 4: an empty file. */
    f = fopen(path, "wb");
    fclose(f);
    s = build_once("-DCACHE_TEST=3");
    assert_int_equal(s.disk_rejects, 1);
    free(path);
}

static void entry_under_another_key_is_not_trusted(void **state) {
    (void)state;
    /* Copy a valid entry onto the file name of another key: the stored key text does not match. */
    char *a = entry_path("-DCACHE_TEST=4");
    char *b = entry_path("-DCACHE_TEST=5");
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", a, b);
    assert_int_equal(system(cmd), 0);
    clattn_cache_stats s = build_once("-DCACHE_TEST=5");
    assert_int_equal(s.disk_rejects, 1);
    assert_int_equal(s.builds, 1);
    free(a);
    free(b);
}

static void cache_off_writes_nothing(void **state) {
    (void)state;
    char *dir = test_make_temp_dir("nocache");
    char *old = strdup(getenv("CLATTN_CACHE_DIR"));
    setenv("CLATTN_CACHE_DIR", dir, 1);
    setenv("CLATTN_CACHE", "0", 1);
    clattn_cache_stats s = build_once("-DCACHE_TEST=6");
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.disk_writes, 0);
    s = build_once("-DCACHE_TEST=6");
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.disk_hits, 0);
    assert_int_equal(test_count_dir_entries(dir), 0);
    unsetenv("CLATTN_CACHE");
    setenv("CLATTN_CACHE_DIR", old, 1);
    test_remove_tree(dir);
    free(dir);
    free(old);
}

static int warnings;
static void count_warnings(void *user, clattn_log_level level, const char *message) {
    (void)user;
    (void)message;
    if (level == CLATTN_LOG_WARNING) ++warnings;
}

static void shared_writable_directory_is_refused(void **state) {
    (void)state;
    char *dir = test_make_temp_dir("shared");
    assert_int_equal(chmod(dir, 0777), 0);
    char *old = strdup(getenv("CLATTN_CACHE_DIR"));
    setenv("CLATTN_CACHE_DIR", dir, 1);
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = test_device_spec();
    o.log = count_warnings;
    warnings = 0;
    clattn_context *ctx = NULL;
    assert_status(clattn_context_create_with_options(&o, &ctx), CLATTN_SUCCESS);
    assert_int_equal(warnings, 1);
    cl_program p;
    assert_status(cla_program_get(ctx, "common", "-DCACHE_TEST=7", &p), CLATTN_SUCCESS);
    clattn_context_free(ctx);
    assert_int_equal(test_count_dir_entries(dir), 0);
    setenv("CLATTN_CACHE_DIR", old, 1);
    test_remove_tree(dir);
    free(dir);
    free(old);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(second_context_hits_the_disk_cache),
        cmocka_unit_test(corrupt_entry_is_detected_and_rebuilt),
        cmocka_unit_test(entry_under_another_key_is_not_trusted),
        cmocka_unit_test(cache_off_writes_nothing),
        cmocka_unit_test(shared_writable_directory_is_refused),
    };
    return cmocka_run_group_tests_name("cache", tests, setup, teardown);
}
