// SPDX-License-Identifier: Apache-2.0
/* Tests of CLBlast's GEMM parameters in the tuning database (`clattn tune --clblast`). `--unit` runs the parts that
 * need no device: the section's parser and writer, and the kernels' constraints. Without it, a short real tune on
 * the device stores a section; a new context applies a section (seen through its log callback and the tuning
 * lookup) and a GEMM through CLBlast is still right afterwards; malformed and stale sections are logged and apply
 * nothing. */
#include "test_util.h"

#include <math.h>
#include <unistd.h>

#include "blas.h"
#include "tuning.h"

static const char *const good_xgemm =
    "\"Xgemm\":{\"precision\":32,\"params\":{\"GEMMK\":0,\"KREG\":1,\"KWG\":32,\"KWI\":2,\"MDIMA\":8,\"MDIMC\":8,"
    "\"MWG\":64,\"NDIMB\":8,\"NDIMC\":8,\"NWG\":64,\"SA\":0,\"SB\":0,\"STRM\":1,\"STRN\":1,\"VWM\":8,\"VWN\":8}}";

static clattn_device_info fake_device(void) {
    clattn_device_info d;
    memset(&d, 0, sizeof d);
    d.type = CLATTN_DEVICE_TYPE_GPU;
    d.max_work_group_size = 256;
    d.max_work_item_sizes[0] = d.max_work_item_sizes[1] = 256;
    d.local_mem_bytes = 32768;
    return d;
}

static void section_round_trip(void **state) {
    (void)state;
    char text[2048], why[256];
    snprintf(text, sizeof text,
             "{\"version\":\"1.5.3\",\"shapes\":\"64x64x64\",\"ms\":1.5,\"default_ms\":2,%s,"
             "\"GemmRoutine\":{\"params\":{\"XGEMM_MIN_INDIRECT_SIZE\":1}}}",
             good_xgemm);
    cla_clblast_section s;
    assert_true(cla_clblast_section_parse(text, &s, why, sizeof why));
    assert_true(s.given[CLA_CLBLAST_XGEMM] && !s.given[CLA_CLBLAST_XGEMM_DIRECT] &&
                s.given[CLA_CLBLAST_GEMM_ROUTINE]);
    assert_int_equal(s.values[CLA_CLBLAST_XGEMM][14], 8);
    assert_int_equal(s.values[CLA_CLBLAST_GEMM_ROUTINE][0], 1);
    char *json = cla_clblast_section_to_json(&s);
    assert_non_null(json);
    cla_clblast_section back;
    assert_true(cla_clblast_section_parse(json, &back, why, sizeof why));
    assert_memory_equal(&s, &back, sizeof s);
    free(json);
    const clattn_device_info d = fake_device();
    assert_null(cla_clblast_check(CLA_CLBLAST_XGEMM, s.values[CLA_CLBLAST_XGEMM], &d));
    /* Kept through the database's parser and writer untouched. */
    char db_text[4096];
    snprintf(db_text, sizeof db_text,
             "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"1\",\"entries\":[],\"clblast\":%s}",
             text);
    cla_tuning_db db;
    memset(&db, 0, sizeof db);
    assert_true(cla_tuning_db_parse(db_text, strlen(db_text), &db, why, sizeof why));
    assert_non_null(db.clblast);
    char *out = cla_tuning_db_to_json(&db);
    assert_non_null(strstr(out, "\"XGEMM_MIN_INDIRECT_SIZE\""));
    free(out);
    cla_tuning_db_clear(&db);
}

static void section_rejects_bad_input(void **state) {
    (void)state;
    const char *const bad[] = {
        "[]",
        "{\"shapes\":\"1x1x1\"}",                                      /* no version */
        "{\"version\":\"1.5.3\",\"Xgemm\":{\"params\":{\"KWG\":32}}}", /* incomplete */
        "{\"version\":\"1.5.3\",\"Xgemmm\":{}}",                       /* unknown kernel */
        "{\"version\":\"1.5.3\",\"GemmRoutine\":{\"params\":{\"XGEMM_MIN_INDIRECT_SIZE\":-1}}}",
        "{\"version\":\"1.5.3\",\"GemmRoutine\":{\"precision\":64,\"params\":{\"XGEMM_MIN_INDIRECT_SIZE\":1}}}",
        "{\"version\":\"1.5.3\",\"ms\":\"fast\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        cla_clblast_section s;
        char why[256] = "";
        if (cla_clblast_section_parse(bad[i], &s, why, sizeof why)) fail_msg("accepted: %s", bad[i]);
        assert_true(why[0] != '\0');
    }
    /* Sets that break a kernel's rules or the device's limits. */
    const clattn_device_info d = fake_device();
    size_t x[16] = {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 8, 8};
    assert_null(cla_clblast_check(CLA_CLBLAST_XGEMM, x, &d));
    x[3] = 3; /* KWG not a multiple of KWI */
    assert_non_null(cla_clblast_check(CLA_CLBLAST_XGEMM, x, &d));
    size_t big[16] = {0, 1, 32, 2, 32, 32, 128, 32, 32, 128, 1, 1, 0, 0, 4, 4}; /* 1024 work-items */
    assert_non_null(cla_clblast_check(CLA_CLBLAST_XGEMM, big, &d));
    size_t local[16] = {0, 1, 64, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4}; /* 64 KiB of tiles */
    assert_non_null(cla_clblast_check(CLA_CLBLAST_XGEMM, local, &d));
    size_t direct[10] = {2, 8, 8, 8, 8, 1, 1, 4, 4, 32};
    assert_null(cla_clblast_check(CLA_CLBLAST_XGEMM_DIRECT, direct, &d));
    direct[9] = 48; /* WGD not a multiple of MDIMCD*VWMD */
    assert_non_null(cla_clblast_check(CLA_CLBLAST_XGEMM_DIRECT, direct, &d));
}

/* ---- on the device ---- */

static char tmpdir[256];

static char *db_file(clattn_context *ctx) {
    clattn_device_info info;
    assert_int_equal(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    return cla_tuning_file(tmpdir, &info);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = calloc(1, 1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    (void)n;
    fclose(f);
    return text;
}

/* Replaces the database's "clblast" section (NULL: removes it), keeping the rest. */
static void set_section(clattn_context *ctx, const char *section) {
    char *path = db_file(ctx);
    char *text = read_text(path);
    assert_non_null(text);
    cla_tuning_db db;
    memset(&db, 0, sizeof db);
    char why[256];
    assert_true(cla_tuning_db_parse(text, strlen(text), &db, why, sizeof why));
    free(db.clblast);
    db.clblast = section ? strdup(section) : NULL;
    db.path = path;
    assert_true(cla_tuning_db_save(&db, why, sizeof why));
    cla_tuning_db_clear(&db); /* frees path */
    free(text);
}

static clattn_tuning_choice lookup(clattn_context *ctx, const char *operation) {
    clattn_tuning_query q;
    clattn_tuning_query_init(&q);
    q.operation = operation;
    clattn_tuning_choice ch;
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    return ch;
}

/* C = A B through the library's CLBlast doorway, against a double product. Sizes off CLBlast's tile multiples, so
 * that its padding kernels run too. */
static void gemm_is_right(clattn_context *ctx) {
    const size_t m = 70, n = 45, k = 67;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c = malloc(m * n * sizeof *c);
    assert_true(a && b && c);
    unsigned seed = 7;
    for (size_t i = 0; i < m * k; ++i) a[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 1023) / 256 - 2;
    for (size_t i = 0; i < k * n; ++i) b[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 1023) / 256 - 2;
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue q = clattn_context_cl_queue(ctx);
    cl_int err = 0;
    cl_mem da = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, m * k * sizeof *a, a, &err);
    cl_mem db = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, k * n * sizeof *b, b, &err);
    cl_mem dc = clCreateBuffer(cl, CL_MEM_READ_WRITE, m * n * sizeof *c, NULL, &err);
    assert_true(da && db && dc);
    const cla_gemm g = {.m = m,
                        .n = n,
                        .k = k,
                        .batch = 1,
                        .alpha = 1.0f,
                        .a = da,
                        .b = db,
                        .c = dc,
                        .a_ld = k,
                        .b_ld = n,
                        .c_ld = n};
    CLBlastStatusCode st = cla_blas_gemm(&g, &q, NULL);
    assert_int_equal(st, CLBlastSuccess);
    assert_int_equal(clEnqueueReadBuffer(q, dc, CL_TRUE, 0, m * n * sizeof *c, c, 0, NULL, NULL), CL_SUCCESS);
    for (size_t r = 0; r < m; ++r)
        for (size_t col = 0; col < n; ++col) {
            double ref = 0, mag = 0;
            for (size_t j = 0; j < k; ++j) {
                ref += (double)a[r * k + j] * b[j * n + col];
                mag += fabs((double)a[r * k + j] * b[j * n + col]);
            }
            if (fabs(c[r * n + col] - ref) > 8.0 * (1 + k) * 1.2e-7 * mag + 1e-5)
                fail_msg("C[%zu,%zu] = %g, expected %g", r, col, (double)c[r * n + col], ref);
        }
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    free(a);
    free(b);
    free(c);
}

static void tune_stores_and_context_applies(void **state) {
    (void)state;
    /* A real run, as short as it gets: CLBlast's default and one candidate, on one small shape. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' tune --shapes none --clblast --clblast-shapes 64x96x64 --budget 2 --repeat 3 --warmup 1 --quiet "
             ">/dev/null",
             CLATTN_CLI);
    assert_int_equal(system(cmd), 0);
    clattn_context *ctx = test_logged_context();
    char *path = db_file(ctx);
    char *text = read_text(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"clblast\""));
    assert_non_null(strstr(text, "\"64x96x64\""));
    free(text);
    free(path);
    /* What it found depends on the machine; a section with known parameters shows the application. */
    char section[2048];
    snprintf(section, sizeof section,
             "{\"version\":\"%s\",\"ms\":1,\"default_ms\":2,%s,\"GemmRoutine\":{\"precision\":32,\"params\":{"
             "\"XGEMM_MIN_INDIRECT_SIZE\":1}}}",
             cla_clblast_version(), good_xgemm);
    set_section(ctx, section);
    clattn_context_free(ctx);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "applied tuned CLBlast Xgemm parameters"));
    assert_non_null(strstr(test_log_messages, "applied tuned CLBlast GemmRoutine parameters"));
    clattn_tuning_choice ch = lookup(ctx, "clblast:Xgemm");
    assert_int_equal(ch.source, CLATTN_TUNING_EXACT);
    assert_non_null(strstr(ch.params, "VWM=8"));
    assert_true(ch.tuned_ms == 1.0 && ch.default_ms == 2.0);
    assert_int_equal(lookup(ctx, "clblast:XgemmDirect").source, CLATTN_TUNING_BUILTIN);
    /* GemmRoutine 1 sends even this small product to Xgemm with the applied parameters. */
    gemm_is_right(ctx);
    clattn_context_free(ctx);
}

static void bad_sections_apply_nothing(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    set_section(ctx, "{\"version\":\"1.5.3\",\"Xgemm\":{\"params\":{\"KWG\":32}}}");
    clattn_context_free(ctx);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "\"clblast\" section is malformed"));
    assert_null(strstr(test_log_messages, "applied tuned CLBlast"));
    assert_int_equal(lookup(ctx, "clblast:Xgemm").source, CLATTN_TUNING_BUILTIN);
    char section[1024];
    snprintf(section, sizeof section, "{\"version\":\"0.0.1\",%s}", good_xgemm);
    set_section(ctx, section);
    clattn_context_free(ctx);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "tuned with CLBlast 0.0.1"));
    assert_null(strstr(test_log_messages, "applied tuned CLBlast"));
    /* Work-groups beyond the device: 64 x 128 work-items. */
    snprintf(section, sizeof section,
             "{\"version\":\"%s\",\"Xgemm\":{\"params\":{\"GEMMK\":0,\"KREG\":1,\"KWG\":128,\"KWI\":2,\"MDIMA\":64,"
             "\"MDIMC\":64,\"MWG\":64,\"NDIMB\":128,\"NDIMC\":128,\"NWG\":128,\"SA\":0,\"SB\":0,\"STRM\":0,"
             "\"STRN\":0,\"VWM\":1,\"VWN\":1}}}",
             cla_clblast_version());
    set_section(ctx, section);
    clattn_context_free(ctx);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "cannot be used on this device"));
    assert_null(strstr(test_log_messages, "applied tuned CLBlast"));
    gemm_is_right(ctx); /* the section applied before this one is what CLBlast still has: still right */
    clattn_context_free(ctx);
}

int main(int argc, char **argv) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(section_round_trip),
        cmocka_unit_test(section_rejects_bad_input),
    };
    int failed = cmocka_run_group_tests_name("tuning_clblast_unit", unit, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "--unit") == 0) return failed;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clattn-test-clblast-%ld", (long)getpid());
    setenv("CLATTN_TUNING_DIR", tmpdir, 1);
    const struct CMUnitTest device[] = {
        cmocka_unit_test(tune_stores_and_context_applies),
        cmocka_unit_test(bad_sections_apply_nothing),
    };
    failed += cmocka_run_group_tests_name("tuning_clblast_device", device, NULL, NULL);
    test_remove_tree(tmpdir);
    return failed;
}
