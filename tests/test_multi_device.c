/* Two devices (CTest runs this with POCL_DEVICES="pthread pthread"): both are listed, each is selected by P:D, and
 * contexts on both compile and keep separate program caches; one context per device, each driven by its own thread
 * (the scheme README.md describes for applications with their own multi-device split), runs attention concurrently
 * with results identical to each other. */
#include "test_util.h"

#include "internal.h"

#include <pthread.h>

static void two_devices_are_listed_and_selectable(void **state) {
    (void)state;
    size_t n = 0;
    assert_status(clattn_devices_list(NULL, 0, &n, NULL, 0), CLATTN_SUCCESS);
    assert_true(n >= 2);
    clattn_device_info infos[8];
    assert_status(clattn_devices_list(infos, 8, &n, NULL, 0), CLATTN_SUCCESS);
    assert_int_equal(infos[0].platform_index, infos[1].platform_index);
    assert_int_equal(infos[0].device_index, 0);
    assert_int_equal(infos[1].device_index, 1);
    assert_true(infos[0].is_default);
    assert_false(infos[1].is_default);

    clattn_context *a = NULL, *b = NULL;
    char spec_a[16], spec_b[16];
    snprintf(spec_a, sizeof spec_a, "%u:0", infos[0].platform_index);
    snprintf(spec_b, sizeof spec_b, "%u:1", infos[1].platform_index);
    assert_status(clattn_context_create(spec_a, &a), CLATTN_SUCCESS);
    assert_status(clattn_context_create(spec_b, &b), CLATTN_SUCCESS);
    assert_ptr_not_equal(clattn_context_cl_device(a), clattn_context_cl_device(b));
    clattn_device_info ia, ib;
    clattn_context_device_info(a, &ia);
    clattn_context_device_info(b, &ib);
    assert_int_equal(ia.device_index, 0);
    assert_int_equal(ib.device_index, 1);

    cl_program pa = NULL, pb = NULL;
    assert_status(cla_program_get(a, "common", "-DMULTI=1", &pa), CLATTN_SUCCESS);
    assert_status(cla_program_get(b, "common", "-DMULTI=1", &pb), CLATTN_SUCCESS);
    assert_ptr_not_equal(pa, pb);
    clattn_context_free(a);
    clattn_context_free(b);
}

/* One device's share of the work: its own context, the same calls as the other device. */
typedef struct device_worker {
    char spec[16];
    const float *q, *k, *v;
    float *out[3];
    clattn_status status;
    char message[1024];
} device_worker;

enum { B = 2, HQ = 4, HKV = 2, LQ = 33, LK = 70, D = 32 };

static void *run_on_device(void *arg) {
    device_worker *w = arg;
    clattn_context *ctx = NULL;
    w->status = clattn_context_create(w->spec, &ctx);
    if (w->status != CLATTN_SUCCESS) {
        snprintf(w->message, sizeof w->message, "context on %s: %s", w->spec, clattn_status_string(w->status));
        return NULL;
    }
    /* Fused without and with causal masking, and unfused (whose CLBlast calls the library serialises). */
    for (int i = 0; i < 3 && w->status == CLATTN_SUCCESS; ++i) {
        clattn_sdpa_host_desc d;
        clattn_sdpa_host_desc_init(&d);
        d.batch = B;
        d.q_heads = HQ;
        d.kv_heads = HKV;
        d.q_len = LQ;
        d.kv_len = LK;
        d.head_dim = D;
        d.causal = i == 1 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
        d.impl = i == 2 ? CLATTN_IMPL_UNFUSED : CLATTN_IMPL_FUSED;
        w->status = clattn_sdpa_host(ctx, &d, w->q, w->k, w->v, w->out[i]);
        if (w->status != CLATTN_SUCCESS)
            snprintf(w->message, sizeof w->message, "call %d on %s: %s: %s", i, w->spec,
                     clattn_status_string(w->status), clattn_context_last_error(ctx));
    }
    clattn_context_free(ctx);
    return NULL;
}

static void one_context_per_device_runs_concurrently_with_identical_results(void **state) {
    (void)state;
    clattn_device_info infos[8];
    size_t n = 0;
    assert_status(clattn_devices_list(infos, 8, &n, NULL, 0), CLATTN_SUCCESS);
    assert_true(n >= 2);
    const size_t nq = (size_t)B * HQ * LQ * D, nk = (size_t)B * HKV * LK * D;
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    assert_true(q && k && v);
    uint32_t s = 12345;
    float *all[3] = {q, k, v};
    size_t sizes[3] = {nq, nk, nk};
    for (int a = 0; a < 3; ++a)
        for (size_t i = 0; i < sizes[a]; ++i) {
            s = s * 1664525u + 1013904223u;
            all[a][i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
        }
    device_worker w[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; ++t) {
        memset(&w[t], 0, sizeof w[t]);
        snprintf(w[t].spec, sizeof w[t].spec, "%u:%d", infos[0].platform_index, t);
        w[t].q = q;
        w[t].k = k;
        w[t].v = v;
        for (int i = 0; i < 3; ++i) {
            w[t].out[i] = malloc(nq * sizeof(float));
            assert_non_null(w[t].out[i]);
            memset(w[t].out[i], 0xff, nq * sizeof(float)); /* NaN poison: an unwritten element cannot match */
        }
    }
    for (int t = 0; t < 2; ++t) assert_int_equal(pthread_create(&threads[t], NULL, run_on_device, &w[t]), 0);
    for (int t = 0; t < 2; ++t) assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (int t = 0; t < 2; ++t)
        if (w[t].status != CLATTN_SUCCESS) fail_msg("%s", w[t].message);
    for (int i = 0; i < 3; ++i) {
        for (size_t j = 0; j < nq; ++j)
            if (!(w[0].out[i][j] == w[0].out[i][j])) fail_msg("call %d: output %zu is NaN", i, j);
        assert_memory_equal(w[0].out[i], w[1].out[i], nq * sizeof(float));
    }
    for (int t = 0; t < 2; ++t)
        for (int i = 0; i < 3; ++i) free(w[t].out[i]);
    free(q);
    free(k);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_devices_are_listed_and_selectable),
        cmocka_unit_test(one_context_per_device_runs_concurrently_with_identical_results),
    };
    return cmocka_run_group_tests_name("multi_device", tests, NULL, NULL);
}
