// SPDX-License-Identifier: Apache-2.0
/* Kernel compilation: every embedded source builds, CLATTN_KERNEL_DIR overrides the embedded copies, a kernel with
 * a deliberate error gives CLATTN_ERROR_BUILD_FAILED with the build log, and built programs are reused. */
#include "test_util.h"

#include "internal.h"

static void every_embedded_source_builds(void **state) {
    (void)state;
    setenv("CLATTN_CACHE", "0", 1);
    clattn_context *ctx = test_context();
    int n = 0;
    for (const char *const *name = cla_source_names(); *name; ++name, ++n) {
        cl_program p = NULL;
        clattn_status st = cla_program_get(ctx, *name, "", &p);
        if (st != CLATTN_SUCCESS)
            fail_msg("%s: %s\n%s", *name, clattn_status_string(st), clattn_context_last_error(ctx));
        assert_non_null(p);
    }
    assert_true(n >= 1);
    clattn_cache_stats s;
    clattn_context_cache_stats(ctx, &s);
    assert_int_equal(s.builds, (uint64_t)n);
    assert_int_equal(s.disk_hits, 0);
    clattn_context_free(ctx);
}

static void memory_cache_reuses_programs_per_options(void **state) {
    (void)state;
    setenv("CLATTN_CACHE", "0", 1);
    clattn_context *ctx = test_context();
    cl_program a = NULL, b = NULL, c = NULL;
    assert_status(cla_program_get(ctx, "common", "-DQ_DTYPE=0", &a), CLATTN_SUCCESS);
    assert_status(cla_program_get(ctx, "common", "-DQ_DTYPE=0", &b), CLATTN_SUCCESS);
    assert_status(cla_program_get(ctx, "common", "-DQ_DTYPE=1", &c), CLATTN_SUCCESS);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    clattn_cache_stats s;
    clattn_context_cache_stats(ctx, &s);
    assert_int_equal(s.memory_hits, 1);
    assert_int_equal(s.builds, 2);
    clattn_context_free(ctx);
}

/* Writes common.cl (copied from the source tree) and the given kernel file into a new kernel directory. */
static char *kernel_dir_with(const char *name, const char *text) {
    char *dir = test_make_temp_dir("kernels");
    char path[1024];
    FILE *in = fopen(CLATTN_SOURCE_KERNEL_DIR "/common.cl", "rb");
    assert_non_null(in);
    static char common[1 << 16];
    size_t len = fread(common, 1, sizeof common - 1, in);
    fclose(in);
    common[len] = '\0';
    snprintf(path, sizeof path, "%s/common.cl", dir);
    test_write_file(path, common);
    snprintf(path, sizeof path, "%s/%s.cl", dir, name);
    test_write_file(path, text);
    return dir;
}

/* A context (without the disk cache) whose kernel directory is a new one holding the given kernel; *dir names it.
 */
static clattn_context *context_with_kernel(const char *name, const char *text, char **dir) {
    setenv("CLATTN_CACHE", "0", 1);
    *dir = kernel_dir_with(name, text);
    setenv("CLATTN_KERNEL_DIR", *dir, 1);
    clattn_context *ctx = test_context();
    unsetenv("CLATTN_KERNEL_DIR");
    return ctx;
}

static void free_context_and_dir(clattn_context *ctx, char *dir) {
    clattn_context_free(ctx);
    test_remove_tree(dir);
    free(dir);
}

/* The two kernels the tests write: one that runs, one that does not compile. */
static const char twice_cl[] = "__kernel void twice(__global float *x) {\n"
                               "    size_t i = get_global_id(0);\n"
                               "    x[i] = LOAD(Q_DTYPE, x, i) * 2.0f;\n"
                               "}\n";
static const char broken_cl[] = "__kernel void broken(__global float *x) {\n"
                                "    x[0] = undeclared_identifier_here;\n"
                                "}\n";

static void kernel_dir_overrides_and_kernels_run(void **state) {
    (void)state;
    char *dir = NULL;
    clattn_context *ctx = context_with_kernel("twice", twice_cl, &dir);
    cl_kernel k = NULL;
    assert_status(cla_kernel_get(ctx, "twice", "", "twice", &k), CLATTN_SUCCESS);
    cl_kernel again = NULL;
    assert_status(cla_kernel_get(ctx, "twice", "", "twice", &again), CLATTN_SUCCESS);
    assert_ptr_equal(k, again);

    float data[5] = {1, 2, 3, -4, 0.5f};
    cl_int err;
    cl_mem buf = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                sizeof data, data, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 0, sizeof buf, &buf), CL_SUCCESS);
    size_t global = 5;
    cl_command_queue q = clattn_context_cl_queue(ctx);
    assert_int_equal(clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(q, buf, CL_TRUE, 0, sizeof data, data, 0, NULL, NULL), CL_SUCCESS);
    assert_true(data[0] == 2.0f && data[3] == -8.0f && data[4] == 1.0f);
    clReleaseMemObject(buf);

    /* A function name the program lacks, and a source the directory lacks. */
    assert_status(cla_kernel_get(ctx, "twice", "", "thrice", &k), CLATTN_ERROR_KERNEL_NOT_FOUND);
    assert_non_null(strstr(clattn_context_last_error(ctx), "thrice"));
    cl_program p;
    assert_status(cla_program_get(ctx, "missing", "", &p), CLATTN_ERROR_KERNEL_NOT_FOUND);
    assert_non_null(strstr(clattn_context_last_error(ctx), "missing.cl"));
    free_context_and_dir(ctx, dir);
}

static void build_error_gives_status_and_build_log(void **state) {
    (void)state;
    char *dir = NULL;
    clattn_context *ctx = context_with_kernel("broken", broken_cl, &dir);
    cl_program p = NULL;
    assert_status(cla_program_get(ctx, "broken", "-DEXAMPLE=1", &p), CLATTN_ERROR_BUILD_FAILED);
    const char *msg = clattn_context_last_error(ctx);
    assert_non_null(strstr(msg, "broken"));
    assert_non_null(strstr(msg, "-DEXAMPLE=1"));
    assert_non_null(strstr(msg, "build log"));
    /* The compiler's own words, pointing into the kernel's file (not the prelude). */
    assert_non_null(strstr(msg, "undeclared_identifier_here"));
    assert_non_null(strstr(msg, "broken.cl"));
    /* The context stays usable after a failed build. */
    assert_status(cla_program_get(ctx, "common", "", &p), CLATTN_SUCCESS);
    free_context_and_dir(ctx, dir);
}

static void bad_build_options_are_a_build_failure(void **state) {
    (void)state;
    setenv("CLATTN_CACHE", "0", 1);
    clattn_context *ctx = test_context();
    cl_program p = NULL;
    clattn_status st = cla_program_get(ctx, "common", "-this-is-not-an-option", &p);
    assert_true(st == CLATTN_ERROR_BUILD_FAILED || st == CL_INVALID_BUILD_OPTIONS ||
                st == CL_INVALID_COMPILER_OPTIONS);
    assert_non_null(strstr(clattn_context_last_error(ctx), "-this-is-not-an-option"));
    clattn_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_embedded_source_builds),
        cmocka_unit_test(memory_cache_reuses_programs_per_options),
        cmocka_unit_test(kernel_dir_overrides_and_kernels_run),
        cmocka_unit_test(build_error_gives_status_and_build_log),
        cmocka_unit_test(bad_build_options_are_a_build_failure),
    };
    return cmocka_run_group_tests_name("program", tests, NULL, NULL);
}
