// SPDX-License-Identifier: Apache-2.0
/* Two devices (CTest runs this with POCL_DEVICES="pthread pthread"): both are listed, each is selected by P:D, and
 * contexts on both compile and keep separate program caches; one context per device, each driven by its own thread
 * (the scheme README.md describes for applications with their own multi-device split), runs attention concurrently
 * with results identical to each other. One context over both devices (clattn_context_options.devices) splits
 * attention and multi-head calls over them, bitwise equal to a one-device context, through sub-buffers or
 * temporaries, under fault injection, and after a user event. Run with "mixed" (and POCL_DEVICES="basic pthread")
 * it checks that two different device models are refused in one context. */
#include "test_util.h"

#include "dtype.h"
#include "internal.h"

#include <pthread.h>
#include <time.h>

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
        clattn_sdpa_host_desc d = test_host_desc(B, HQ, HKV, LQ, LK, D);
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

/* Lists the devices into infos[8], requiring at least two. */
static void list_two_devices(clattn_device_info *infos) {
    size_t n = 0;
    assert_status(clattn_devices_list(infos, 8, &n, NULL, 0), CLATTN_SUCCESS);
    assert_true(n >= 2);
}

static void one_context_per_device_runs_concurrently_with_identical_results(void **state) {
    (void)state;
    clattn_device_info infos[8];
    list_two_devices(infos);
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

/* ---- one context over both devices ---- */

static char one_spec[16], two_spec[32];
static clattn_context *one_ctx, *two_ctx; /* device 0 alone; devices 0 and 1 together */

/* The two-device context's last debug message about a split ("" when the last call did not split). */
static char split_log[512];

static void capture_log(void *user, clattn_log_level level, const char *message) {
    (void)user;
    (void)level;
    if (strstr(message, "split over")) cla_strlcpy(split_log, message, sizeof split_log);
}

static int make_contexts(void **state) {
    (void)state;
    clattn_device_info infos[8];
    size_t n = 0;
    if (clattn_devices_list(infos, 8, &n, NULL, 0) != CLATTN_SUCCESS || n < 2) return -1;
    snprintf(one_spec, sizeof one_spec, "%u:0", infos[0].platform_index);
    snprintf(two_spec, sizeof two_spec, "%u:0,%u:1", infos[0].platform_index, infos[0].platform_index);
    char message[1024] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = one_spec;
    o.error_message = message;
    o.error_message_size = sizeof message;
    if (clattn_context_create_with_options(&o, &one_ctx) != CLATTN_SUCCESS) {
        fprintf(stderr, "one-device context: %s\n", message);
        return -1;
    }
    o.device = NULL;
    o.devices = two_spec;
    o.log = capture_log;
    if (clattn_context_create_with_options(&o, &two_ctx) != CLATTN_SUCCESS) {
        fprintf(stderr, "two-device context: %s\n", message);
        return -1;
    }
    return 0;
}

static int free_contexts(void **state) {
    (void)state;
    clattn_context_free(one_ctx);
    clattn_context_free(two_ctx);
    return 0;
}

static clattn_status create_with_devices(const char *devices, clattn_context **ctx, char *message, size_t size) {
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.devices = devices;
    o.error_message = message;
    o.error_message_size = size;
    return clattn_context_create_with_options(&o, ctx);
}

static void multi_device_context_reports_its_devices(void **state) {
    (void)state;
    assert_int_equal(clattn_context_device_count(two_ctx), 2);
    assert_int_equal(clattn_context_device_count(one_ctx), 1);
    assert_int_equal(clattn_context_device_count(NULL), 0);
    clattn_device_info a, b, primary;
    assert_status(clattn_context_device_info_at(two_ctx, 0, &a), CLATTN_SUCCESS);
    assert_status(clattn_context_device_info_at(two_ctx, 1, &b), CLATTN_SUCCESS);
    assert_status(clattn_context_device_info(two_ctx, &primary), CLATTN_SUCCESS);
    assert_int_equal(a.device_index, 0);
    assert_int_equal(b.device_index, 1);
    assert_int_equal(primary.device_index, 0);
    assert_status(clattn_context_device_info_at(two_ctx, 2, &a), CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(two_ctx), "2 devices"));
    assert_ptr_equal(clattn_context_cl_device_at(two_ctx, 0), clattn_context_cl_device(two_ctx));
    assert_ptr_not_equal(clattn_context_cl_device_at(two_ctx, 1), clattn_context_cl_device(two_ctx));
    assert_null(clattn_context_cl_device_at(two_ctx, 2));
    cl_uint ndev = 0;
    assert_int_equal(
        clGetContextInfo(clattn_context_cl_context(two_ctx), CL_CONTEXT_NUM_DEVICES, sizeof ndev, &ndev, NULL),
        CL_SUCCESS);
    assert_int_equal(ndev, 2);

    /* The shorthand, a list of one, and lists that cannot be right. */
    char message[1024];
    clattn_context *ctx = NULL;
    assert_status(create_with_devices("all:cpu", &ctx, message, sizeof message), CLATTN_SUCCESS);
    assert_int_equal(clattn_context_device_count(ctx), 2);
    clattn_context_free(ctx);
    assert_status(create_with_devices("all", &ctx, message, sizeof message), CLATTN_SUCCESS);
    assert_int_equal(clattn_context_device_count(ctx), 2);
    clattn_context_free(ctx);
    char spec[32];
    snprintf(spec, sizeof spec, " %s ", one_spec + 0);
    spec[strlen(spec) - 2] = '1'; /* " P:1 " */
    assert_status(create_with_devices(spec, &ctx, message, sizeof message), CLATTN_SUCCESS);
    assert_int_equal(clattn_context_device_count(ctx), 1);
    assert_status(clattn_context_device_info(ctx, &a), CLATTN_SUCCESS);
    assert_int_equal(a.device_index, 1);
    clattn_context_free(ctx);
    static const struct {
        const char *spec;
        clattn_status status;
        const char *says;
    } bad[] = {{"0:0,0:0", CLATTN_ERROR_INVALID_DEVICE_SPEC, "twice"},
               {"0:0,", CLATTN_ERROR_INVALID_DEVICE_SPEC, "comma"},
               {"0:0,,0:1", CLATTN_ERROR_INVALID_DEVICE_SPEC, "empty item"},
               {"0:0,0:9", CLATTN_ERROR_NO_DEVICE, "No OpenCL device"},
               {"all:banana", CLATTN_ERROR_INVALID_DEVICE_SPEC, "all:"},
               {"all:gpu", CLATTN_ERROR_NO_DEVICE, "No OpenCL device"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        message[0] = '\0';
        ctx = NULL;
        clattn_status st = create_with_devices(bad[i].spec, &ctx, message, sizeof message);
        if (st != bad[i].status || !strstr(message, bad[i].says))
            fail_msg("devices '%s': status %d, message '%s'", bad[i].spec, (int)st, message);
        assert_null(ctx);
    }
}

static void multi_device_programs_share_one_cache_entry(void **state) {
    (void)state;
    /* Options no earlier run has built, so the first context compiles and the others load its binary. */
    char options[96];
    snprintf(options, sizeof options, "-DMULTI_DEVICE_CACHE=%ld%ld", (long)time(NULL), (long)clock());
    char message[1024];
    clattn_context *a = NULL, *b = NULL, *single = NULL;
    assert_status(create_with_devices(two_spec, &a, message, sizeof message), CLATTN_SUCCESS);
    cl_program pa = NULL;
    assert_status(cla_program_get(a, "common", options, &pa), CLATTN_SUCCESS);
    cl_uint ndev = 0;
    assert_int_equal(clGetProgramInfo(pa, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL), CL_SUCCESS);
    assert_int_equal(ndev, 2);
    clattn_cache_stats s;
    clattn_context_cache_stats(a, &s);
    if (a->disk_cache_enabled) {
        assert_int_equal(s.builds, 1);
        assert_int_equal(s.disk_writes, 1);
        assert_status(create_with_devices(two_spec, &b, message, sizeof message), CLATTN_SUCCESS);
        cl_program pb = NULL;
        assert_status(cla_program_get(b, "common", options, &pb), CLATTN_SUCCESS);
        clattn_context_cache_stats(b, &s);
        assert_int_equal(s.builds, 0);
        assert_int_equal(s.disk_hits, 1);
        /* A one-device context of the same model finds the same entry. */
        assert_status(clattn_context_create(one_spec, &single), CLATTN_SUCCESS);
        cl_program ps = NULL;
        assert_status(cla_program_get(single, "common", options, &ps), CLATTN_SUCCESS);
        clattn_context_cache_stats(single, &s);
        assert_int_equal(s.builds, 0);
        assert_int_equal(s.disk_hits, 1);
    }
    clattn_context_free(a);
    clattn_context_free(b);
    clattn_context_free(single);
}

/* One attention call, run the same way on either context. */
typedef struct md_case {
    size_t B, Hq, Hkv, Lq, Lk, D, Dv;
    clattn_dtype dtype;
    clattn_causal causal;
    clattn_window_align window_align; /* with window_left 3 when not DEFAULT */
    clattn_impl impl;
    bool lse, weights, mask, key_lengths;
    bool mods;         /* softcap, and per-head sinks and ALiBi slopes (each part gets its heads' values) */
    bool out_blhd;     /* out stored [B, L, H, D]: with B = 1, the heads' regions interleave */
    size_t out_offset; /* elements before the view in its buffer */
    /* With mask: the mask's sizes, each 1 or the full size, stored as F16 (all 0: [B, 1, Lq, Lk] in F32). */
    size_t mask_size[4];
} md_case;

/* The leading fields of an md_case initialiser: the implementation (AUTO, FUSED or UNFUSED) and the shape. */
#define MD_CASE(impl_, B_, Hq_, Hkv_, Lq_, Lk_, D_, Dv_)                                                           \
    .impl = CLATTN_IMPL_##impl_, .B = (B_), .Hq = (Hq_), .Hkv = (Hkv_), .Lq = (Lq_), .Lk = (Lk_), .D = (D_),       \
    .Dv = (Dv_)

/* The whole output buffers after a call (poisoned with NaN bits before it, so that bytes outside the views, and
 * any element left unwritten, must match too), and the temporary memory the call allocated. */
typedef struct md_result {
    unsigned char *out, *lse, *weights;
    size_t out_bytes, lse_bytes, weights_bytes;
    uint64_t temp_bytes;
} md_result;

static void md_result_free(md_result *r) {
    free(r->out);
    free(r->lse);
    free(r->weights);
    memset(r, 0, sizeof *r);
}

static float md_value(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
}

static cl_mem md_upload(clattn_context *ctx, size_t n, clattn_dtype dt, uint32_t seed) {
    const size_t es = clattn_dtype_size(dt);
    float *f = malloc(n * sizeof *f);
    unsigned char *bytes = malloc(n * es + 4);
    assert_true(f && bytes);
    for (size_t i = 0; i < n; ++i) f[i] = md_value(&seed);
    cla_convert_to_storage(f, bytes, n, dt);
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, n * es + 4, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(
        clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, n * es, bytes, 0, NULL, NULL),
        CL_SUCCESS);
    free(f);
    free(bytes);
    return m;
}

static cl_mem md_poisoned(clattn_context *ctx, size_t bytes) {
    unsigned char *p = malloc(bytes);
    assert_non_null(p);
    memset(p, 0xff, bytes);
    cl_int err = CL_SUCCESS;
    cl_mem m =
        clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, p, &err);
    assert_int_equal(err, CL_SUCCESS);
    free(p);
    return m;
}

static unsigned char *md_read(clattn_context *ctx, cl_mem m, size_t bytes) {
    unsigned char *p = malloc(bytes);
    assert_non_null(p);
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, p, 0, NULL, NULL),
                     CL_SUCCESS);
    return p;
}

/* Runs case c on ctx (the call waits for `gate` if not NULL) and returns the status; on success fills r. */
static clattn_status md_run(clattn_context *ctx, const md_case *c, cl_event gate, md_result *r) {
    const size_t es = clattn_dtype_size(c->dtype);
    const size_t nq = c->B * c->Hq * c->Lq * c->D, nk = c->B * c->Hkv * c->Lk * c->D;
    const size_t nv = c->B * c->Hkv * c->Lk * c->Dv, no = c->B * c->Hq * c->Lq * c->Dv;
    cl_mem q = md_upload(ctx, nq, c->dtype, 11), k = md_upload(ctx, nk, c->dtype, 22);
    cl_mem v = md_upload(ctx, nv, c->dtype, 33);
    memset(r, 0, sizeof *r);
    r->out_bytes = (c->out_offset + no + 16) * es;
    cl_mem out = md_poisoned(ctx, r->out_bytes);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.causal = c->causal;
    d.impl = c->impl;
    d.window_align = c->window_align;
    if (c->window_align) d.window_left = 3;
    cl_mem mask = NULL, lengths = NULL, lse = NULL, weights = NULL, sinks = NULL, slopes = NULL;
    if (c->mods) {
        d.softcap = 3.0f;
        sinks = md_upload(ctx, c->Hq, CLATTN_DTYPE_F32, 55);
        slopes = md_upload(ctx, 2 * c->Hq, CLATTN_DTYPE_F32, 66);
        d.sinks = clattn_tensor_bhld(sinks, CLATTN_DTYPE_F32, 1, c->Hq, 1, 1);
        d.alibi_slopes = clattn_tensor_bhld(slopes, CLATTN_DTYPE_F32, 1, c->Hq, 1, 1);
        d.alibi_slopes.stride[1] = 2; /* every other value, to check the parts' strides */
    }
    if (c->mask && c->mask_size[0]) { /* a broadcast shape of the case's choice */
        const size_t *ms = c->mask_size;
        mask = md_upload(ctx, ms[0] * ms[1] * ms[2] * ms[3], CLATTN_DTYPE_F16, 45);
        d.mask = clattn_tensor_bhld(mask, CLATTN_DTYPE_F16, ms[0], ms[1], ms[2], ms[3]);
    } else if (c->mask) { /* additive, per batch item, broadcast over heads */
        mask = md_upload(ctx, c->B * c->Lq * c->Lk, CLATTN_DTYPE_F32, 44);
        d.mask = clattn_tensor_bhld(mask, CLATTN_DTYPE_F32, c->B, 1, c->Lq, c->Lk);
    }
    if (c->key_lengths) {
        int32_t kl[16];
        for (size_t b = 0; b < c->B; ++b) kl[b] = (int32_t)(c->Lk - (b * 5) % c->Lk);
        cl_int err = CL_SUCCESS;
        lengths = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                 c->B * sizeof(int32_t), kl, &err);
        assert_int_equal(err, CL_SUCCESS);
        d.key_lengths = lengths;
    }
    if (c->lse) {
        r->lse_bytes = (c->B * c->Hq * c->Lq + 8) * sizeof(float);
        lse = md_poisoned(ctx, r->lse_bytes);
        d.lse = clattn_tensor_bhld(lse, CLATTN_DTYPE_F32, c->B, c->Hq, c->Lq, 1);
    }
    if (c->weights) {
        r->weights_bytes = (c->B * c->Hq * c->Lq * c->Lk + 8) * sizeof(float);
        weights = md_poisoned(ctx, r->weights_bytes);
        d.weights = clattn_tensor_bhld(weights, CLATTN_DTYPE_F32, c->B, c->Hq, c->Lq, c->Lk);
    }
    clattn_tensor tq = clattn_tensor_bhld(q, c->dtype, c->B, c->Hq, c->Lq, c->D);
    clattn_tensor tk = clattn_tensor_blhd(k, c->dtype, c->B, c->Hkv, c->Lk, c->D);
    clattn_tensor tv = clattn_tensor_bhld(v, c->dtype, c->B, c->Hkv, c->Lk, c->Dv);
    clattn_tensor to = c->out_blhd ? clattn_tensor_blhd(out, c->dtype, c->B, c->Hq, c->Lq, c->Dv)
                                   : clattn_tensor_bhld(out, c->dtype, c->B, c->Hq, c->Lq, c->Dv);
    to.offset = c->out_offset;
    cl_event done = NULL;
    clattn_status st = clattn_sdpa(ctx, &d, &tq, &tk, &tv, &to, clattn_context_cl_queue(ctx), gate ? 1 : 0,
                                   gate ? &gate : NULL, &done);
    if (st == CLATTN_SUCCESS && gate) {
        /* Nothing may have run yet: the event is pending and the output still holds its poison, as a queue of
         * the test's own (which waits for nothing) reads it. */
        cl_int status = CL_COMPLETE;
        assert_int_equal(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL),
                         CL_SUCCESS);
        assert_true(status > CL_COMPLETE);
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
        cl_int err = CL_SUCCESS;
        cl_command_queue spy =
            clCreateCommandQueue(clattn_context_cl_context(ctx), clattn_context_cl_device(ctx), 0, &err);
        assert_int_equal(err, CL_SUCCESS);
        unsigned char *now = malloc(r->out_bytes);
        assert_non_null(now);
        assert_int_equal(clEnqueueReadBuffer(spy, out, CL_TRUE, 0, r->out_bytes, now, 0, NULL, NULL), CL_SUCCESS);
        for (size_t i = 0; i < r->out_bytes; ++i)
            if (now[i] != 0xff) fail_msg("output byte %zu was written before the wait-list event was set", i);
        free(now);
        clReleaseCommandQueue(spy);
        assert_int_equal(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    }
    if (st == CLATTN_SUCCESS) {
        assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
        clReleaseEvent(done);
        clattn_memory_stats ms;
        clattn_context_memory_stats(ctx, &ms);
        r->temp_bytes = ms.last_call_bytes;
        r->out = md_read(ctx, out, r->out_bytes);
        if (lse) r->lse = md_read(ctx, lse, r->lse_bytes);
        if (weights) r->weights = md_read(ctx, weights, r->weights_bytes);
    }
    /* A failed call may have left parts enqueued: let every queue drain before the buffers go. */
    for (size_t i = 0; i < ctx->device_count; ++i) clFinish(ctx->queues[i]);
    cl_mem all[] = {q, k, v, out, mask, lengths, lse, weights, sinks, slopes};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (all[i]) clReleaseMemObject(all[i]);
    return st;
}

/* The view's elements of an F32 output are numbers (not the NaN poison). */
static void expect_written(const md_case *c, const md_result *r) {
    if (c->dtype != CLATTN_DTYPE_F32) return;
    const float *o = (const float *)(const void *)r->out;
    for (size_t b = 0; b < c->B; ++b)
        for (size_t h = 0; h < c->Hq; ++h)
            for (size_t l = 0; l < c->Lq; ++l)
                for (size_t d = 0; d < c->Dv; ++d) {
                    size_t i = c->out_blhd ? ((b * c->Lq + l) * c->Hq + h) * c->Dv + d
                                           : ((b * c->Hq + h) * c->Lq + l) * c->Dv + d;
                    float x = o[c->out_offset + i];
                    if (x != x) fail_msg("out[%zu, %zu, %zu, %zu] was not written", b, h, l, d);
                }
}

/* Runs a case on both contexts and requires the same bytes everywhere; `sub_buffers` says which path the split
 * must take for out (fused calls without key splits allocate nothing else). */
static void expect_split_equal(const md_case *c, int sub_buffers) {
    md_result one, two;
    assert_status(md_run(one_ctx, c, NULL, &one), CLATTN_SUCCESS);
    split_log[0] = '\0';
    clattn_status st = md_run(two_ctx, c, NULL, &two);
    if (st != CLATTN_SUCCESS) fail_msg("two devices: %s", clattn_context_last_error(two_ctx));
    expect_written(c, &two);
    assert_memory_equal(one.out, two.out, one.out_bytes);
    if (c->lse) assert_memory_equal(one.lse, two.lse, one.lse_bytes);
    if (c->weights) assert_memory_equal(one.weights, two.weights, one.weights_bytes);
    const bool splits = c->B >= 2 || c->Hkv >= 2;
    if (splits != (strstr(split_log, "split over 2 devices") != NULL))
        fail_msg("the call should%s split: log '%s'", splits ? "" : " not", split_log);
    if (sub_buffers == 1) assert_int_equal(two.temp_bytes, one.temp_bytes);
    if (sub_buffers == 0) assert_true(two.temp_bytes > one.temp_bytes);
    if (splits && sub_buffers >= 0 &&
        !strstr(split_log, sub_buffers ? "through sub-buffers" : "through temporaries"))
        fail_msg("out should go through %s: log '%s'", sub_buffers ? "sub-buffers" : "temporaries", split_log);
    md_result_free(&one);
    md_result_free(&two);
}

static void split_fused_batch_through_sub_buffers(void **state) {
    (void)state;
    /* B = 3 over two devices: items [0, 1) and [1, 3); each item's output is 4 KiB, so the regions align. */
    md_case c = {MD_CASE(FUSED, 3, 4, 4, 8, 40, 32, 32)};
    expect_split_equal(&c, 1);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.lse = true;
    c.Hkv = 2; /* GQA */
    expect_split_equal(&c, 1);
}

static void split_fused_heads_through_temporaries(void **state) {
    (void)state;
    /* B = 1: the key/value head groups split (3 groups of 2 query heads); out stored [B, L, H, D] interleaves the
     * devices' heads within every row, so each part writes a temporary that is copied into place. */
    md_case c = {MD_CASE(FUSED, 1, 6, 3, 17, 45, 24, 24), .causal = CLATTN_CAUSAL_BOTTOM_RIGHT, .out_blhd = true,
                 .lse = true};
    expect_split_equal(&c, 0);
    /* The same with [B, H, L, D]: contiguous per head group, but 17 x 24 x 4 bytes per head does not align. */
    c.out_blhd = false;
    expect_split_equal(&c, 0);
}

static void split_odd_shapes_and_misaligned_outputs(void **state) {
    (void)state;
    /* fp16, odd sizes, Dv != D, an output offset that no sub-buffer can start at, a mask and key lengths. */
    md_case c = {MD_CASE(FUSED, 3, 3, 1, 7, 13, 5, 9), .dtype = CLATTN_DTYPE_F16, .out_offset = 3, .mask = true,
                 .key_lengths = true};
    expect_split_equal(&c, 0);
    c.dtype = CLATTN_DTYPE_BF16;
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    expect_split_equal(&c, 0);
    /* One batch item and a single key/value head: nothing to split, one device runs it. */
    md_case one = {MD_CASE(FUSED, 1, 4, 1, 5, 9, 8, 8)};
    expect_split_equal(&one, 1);
}

static void split_unfused_with_weights_and_lse(void **state) {
    (void)state;
    md_case c = {MD_CASE(UNFUSED, 3, 4, 2, 11, 19, 16, 8), .lse = true, .weights = true, .mask = true,
                 .key_lengths = true};
    expect_split_equal(&c, -1);
    c.B = 1; /* heads split; the [1, 4, 11, 19] weights split per head group */
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.out_blhd = true;
    expect_split_equal(&c, -1);
}

/* Masks broadcast over other dimensions than heads: each part's slice of the mask keeps its size-1 dimensions, so
 * the parts read what one device reads, split by batch items ([B, 1, 1, Lk], [1, 1, Lq, 1]) or by head groups
 * ([1, Hq, 1, Lk]), fused and unfused. */
static void split_broadcast_masks(void **state) {
    (void)state;
    for (int impl = 0; impl < 2; ++impl) {
        md_case c = {MD_CASE(FUSED, 3, 4, 2, 9, 23, 16, 16), .mask = true, .lse = true};
        if (impl) c.impl = CLATTN_IMPL_UNFUSED;
        const size_t padding[4] = {3, 1, 1, 23}, rows[4] = {1, 1, 9, 1}, heads[4] = {1, 4, 1, 23};
        memcpy(c.mask_size, padding, sizeof padding);
        expect_split_equal(&c, -1);
        memcpy(c.mask_size, rows, sizeof rows);
        expect_split_equal(&c, -1);
        c.B = 1; /* the head groups split */
        memcpy(c.mask_size, heads, sizeof heads);
        expect_split_equal(&c, -1);
    }
}

/* Heads past the fused kernels' bound under AUTO: every part runs the unfused path, bitwise what one device does.
 */
static void split_wide_heads_under_auto(void **state) {
    (void)state;
    md_case c = {MD_CASE(AUTO, 2, 2, 1, 6, 21, 640, 600), .lse = true, .key_lengths = true};
    expect_split_equal(&c, -1);
}

/* The score modifiers split with the heads: each part reads its own heads' sinks and slopes, and the results are
 * bitwise one device's, fused (batch and head-group splits, decode key splits) and unfused. */
static void split_score_modifiers(void **state) {
    (void)state;
    md_case c = {MD_CASE(FUSED, 1, 6, 3, 17, 45, 24, 16), .causal = CLATTN_CAUSAL_BOTTOM_RIGHT, .lse = true,
                 .mods = true};
    expect_split_equal(&c, -1);
    c.B = 2;
    c.Lq = 1;
    c.Lk = 900;
    expect_split_equal(&c, -1);
    md_case u = {MD_CASE(UNFUSED, 1, 4, 2, 11, 19, 16, 8), .lse = true, .weights = true, .mods = true,
                 .mask = true};
    expect_split_equal(&u, -1);
    /* The window and ALiBi aligned bottom-right without causal masking: every part must align them so. */
    c.window_align = u.window_align = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    c.causal = CLATTN_CAUSAL_NONE;
    expect_split_equal(&c, -1);
    expect_split_equal(&u, -1);
}

static void split_waits_for_the_wait_list(void **state) {
    (void)state;
    md_case cases[2] = {{MD_CASE(FUSED, 2, 4, 4, 8, 40, 32, 32)},
                        {MD_CASE(UNFUSED, 1, 4, 2, 9, 20, 8, 8), .weights = true, .out_blhd = true}};
    for (int i = 0; i < 2; ++i) {
        cl_int err = CL_SUCCESS;
        cl_event gate = clCreateUserEvent(clattn_context_cl_context(two_ctx), &err);
        assert_int_equal(err, CL_SUCCESS);
        md_result one, two;
        assert_status(md_run(one_ctx, &cases[i], NULL, &one), CLATTN_SUCCESS);
        assert_status(md_run(two_ctx, &cases[i], gate, &two), CLATTN_SUCCESS);
        assert_memory_equal(one.out, two.out, one.out_bytes);
        if (cases[i].weights) assert_memory_equal(one.weights, two.weights, one.weights_bytes);
        clReleaseEvent(gate);
        md_result_free(&one);
        md_result_free(&two);
    }
}

static void split_fault_injection_leaves_no_temporaries(void **state) {
    (void)state;
    md_case cases[2] = {{MD_CASE(FUSED, 1, 4, 2, 9, 20, 8, 8), .lse = true, .out_blhd = true},
                        {MD_CASE(UNFUSED, 3, 2, 2, 8, 16, 16, 16), .weights = true}};
    for (int c = 0; c < 2; ++c) {
        long n = 1;
        for (;; ++n) {
            md_result r;
            cla_fault_inject(two_ctx, n);
            clattn_status st = md_run(two_ctx, &cases[c], NULL, &r);
            long left = two_ctx->fault_countdown;
            cla_fault_inject(two_ctx, 0);
            if (two_ctx->live_temps != 0)
                fail_msg("case %d, fault %ld: %ld temporaries left alive", c, n, two_ctx->live_temps);
            md_result_free(&r);
            if (st == CLATTN_SUCCESS) {
                if (left == 0) fail_msg("case %d: fault %ld was injected but the call succeeded", c, n);
                break;
            }
            clattn_device_info info;
            clattn_context_device_info(two_ctx, &info);
            if (strstr(clattn_context_last_error(two_ctx), info.name) == NULL)
                fail_msg("case %d, fault %ld: the message names no device: %s", c, n,
                         clattn_context_last_error(two_ctx));
            assert_true(n < 500);
        }
        assert_true(n > 4); /* the fork, each part, the join: several device operations were failed in turn */
        /* The context is still usable and still right. */
        expect_split_equal(&cases[c], -1);
    }
}

/* ---- multi-head attention over both devices ---- */

static void fill(float *p, size_t n, uint32_t seed, float scale) {
    for (size_t i = 0; i < n; ++i) p[i] = md_value(&seed) * scale;
}

static unsigned char *mha_run(clattn_context *ctx, const clattn_mha_config *cfg, const clattn_mha_weights_host *h,
                              const float *x, size_t batch, size_t L, size_t *bytes) {
    clattn_mha_weights *w = NULL;
    assert_status(clattn_mha_weights_create(ctx, cfg, h, &w), CLATTN_SUCCESS);
    const size_t n = batch * L * cfg->d_model;
    cl_int err = CL_SUCCESS;
    cl_mem xb = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               n * sizeof(float), (void *)x, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem ob = md_poisoned(ctx, n * sizeof(float));
    clattn_tensor tx = clattn_tensor_seq(xb, CLATTN_DTYPE_F32, batch, L, cfg->d_model);
    clattn_tensor to = clattn_tensor_seq(ob, CLATTN_DTYPE_F32, batch, L, cfg->d_model);
    clattn_mha_desc d;
    clattn_mha_desc_init(&d);
    d.residual = 1;
    d.attention.causal = CLATTN_CAUSAL_TOP_LEFT;
    clattn_status st = clattn_mha(ctx, w, &d, &tx, NULL, &to, clattn_context_cl_queue(ctx), 0, NULL, NULL);
    if (st != CLATTN_SUCCESS) fail_msg("clattn_mha: %s", clattn_context_last_error(ctx));
    *bytes = n * sizeof(float);
    unsigned char *out = md_read(ctx, ob, *bytes);
    clReleaseMemObject(xb);
    clReleaseMemObject(ob);
    clattn_mha_weights_free(w);
    return out;
}

static void split_mha_matches_one_device(void **state) {
    (void)state;
    clattn_mha_config cfg = {.d_model = 32, .heads = 4, .kv_heads = 2, .head_dim = 8};
    const size_t nq = 4 * 8, nkv = 2 * 8, nqkv = nq + 2 * nkv;
    float *w_qkv = malloc(32 * nqkv * sizeof(float)), *b_qkv = malloc(nqkv * sizeof(float));
    float *w_o = malloc(nq * 32 * sizeof(float)), *b_o = malloc(32 * sizeof(float));
    float *x = malloc(3 * 13 * 32 * sizeof(float));
    assert_true(w_qkv && b_qkv && w_o && b_o && x);
    clattn_mha_weights_host h;
    clattn_mha_weights_host_init(&h);
    fill(w_qkv, 32 * nqkv, 1, 0.2f);
    fill(b_qkv, nqkv, 2, 0.1f);
    fill(w_o, nq * 32, 3, 0.2f);
    fill(b_o, 32, 4, 0.1f);
    fill(x, 3 * 13 * 32, 5, 1.0f);
    h.w_qkv = w_qkv;
    h.b_qkv = b_qkv;
    h.w_o = w_o;
    h.b_o = b_o;
    /* B = 3 splits by batch items, B = 1 by key/value head groups (whose heads interleave in the layer's rows). */
    const size_t batches[2] = {3, 1};
    for (int i = 0; i < 2; ++i) {
        size_t a_bytes = 0, b_bytes = 0;
        unsigned char *a = mha_run(one_ctx, &cfg, &h, x, batches[i], 13, &a_bytes);
        unsigned char *b = mha_run(two_ctx, &cfg, &h, x, batches[i], 13, &b_bytes);
        assert_int_equal(a_bytes, b_bytes);
        for (size_t j = 0; j < a_bytes / 4; ++j) {
            float f;
            memcpy(&f, a + 4 * j, 4);
            if (f != f) fail_msg("B=%zu: out[%zu] is NaN", batches[i], j);
        }
        assert_memory_equal(a, b, a_bytes);
        free(a);
        free(b);
    }
    free(w_qkv);
    free(b_qkv);
    free(w_o);
    free(b_o);
    free(x);
}

/* ---- devices that may not share a context ---- */

static void device_compatibility_rule(void **state) {
    (void)state;
    clattn_device_info a;
    memset(&a, 0, sizeof a);
    strcpy(a.platform_name, "P");
    strcpy(a.name, "Model X");
    strcpy(a.driver_version, "1.0");
    strcpy(a.device_version, "OpenCL 3.0");
    clattn_device_info b = a;
    char why[256] = "";
    assert_true(cla_devices_compatible(&a, &b, why, sizeof why));
    strcpy(b.driver_version, "1.1");
    assert_false(cla_devices_compatible(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "driver version"));
    b = a;
    strcpy(b.name, "Model Y");
    assert_false(cla_devices_compatible(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "name"));
}

/* Run with POCL_DEVICES="basic pthread": two models of one platform. */
static void mixed_devices_are_refused(void **state) {
    (void)state;
    clattn_device_info infos[8];
    list_two_devices(infos);
    if (strcmp(infos[0].name, infos[1].name) == 0) skip(); /* needs two different device models */
    char spec[32], message[1024] = "";
    snprintf(spec, sizeof spec, "%u:0,%u:1", infos[0].platform_index, infos[1].platform_index);
    clattn_context *ctx = NULL;
    assert_status(create_with_devices(spec, &ctx, message, sizeof message), CLATTN_ERROR_UNSUPPORTED);
    assert_null(ctx);
    assert_non_null(strstr(message, "one context per device"));
    assert_non_null(strstr(message, infos[1].name));
    /* One device of each, separately, is fine. */
    assert_status(create_with_devices("0:1", &ctx, message, sizeof message), CLATTN_SUCCESS);
    clattn_context_free(ctx);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "mixed") == 0) {
        const struct CMUnitTest mixed[] = {cmocka_unit_test(mixed_devices_are_refused)};
        return cmocka_run_group_tests_name("multi_device_mixed", mixed, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_devices_are_listed_and_selectable),
        cmocka_unit_test(one_context_per_device_runs_concurrently_with_identical_results),
        cmocka_unit_test(device_compatibility_rule),
    };
    const struct CMUnitTest split[] = {
        cmocka_unit_test(multi_device_context_reports_its_devices),
        cmocka_unit_test(multi_device_programs_share_one_cache_entry),
        cmocka_unit_test(split_fused_batch_through_sub_buffers),
        cmocka_unit_test(split_fused_heads_through_temporaries),
        cmocka_unit_test(split_odd_shapes_and_misaligned_outputs),
        cmocka_unit_test(split_unfused_with_weights_and_lse),
        cmocka_unit_test(split_wide_heads_under_auto),
        cmocka_unit_test(split_broadcast_masks),
        cmocka_unit_test(split_score_modifiers),
        cmocka_unit_test(split_waits_for_the_wait_list),
        cmocka_unit_test(split_fault_injection_leaves_no_temporaries),
        cmocka_unit_test(split_mha_matches_one_device),
    };
    int failed = cmocka_run_group_tests_name("multi_device", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("multi_device_split", split, make_contexts, free_contexts);
    return failed;
}
