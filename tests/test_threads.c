// SPDX-License-Identifier: Apache-2.0
/* Separate contexts on separate threads run attention concurrently without interfering: each thread creates its own
 * context, runs a series of cases (fused and unfused, different shapes per thread) and checks every result against
 * the reference; a failure in any thread fails the test. */
#include "sdpa_case.h"

#include <pthread.h>

#define THREADS 4
#define ROUNDS  3

typedef struct worker {
    int id;
    int failed;
    char message[512];
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(test_device_spec(), &ctx);
    if (st != CLATTN_SUCCESS) {
        w->failed = 1;
        snprintf(w->message, sizeof w->message, "context: %s", clattn_status_string(st));
        return NULL;
    }
    for (int round = 0; round < ROUNDS && !w->failed; ++round) {
        sdpa_case c = sdpa_case_of((round + w->id) % 2 ? CLATTN_IMPL_UNFUSED : CLATTN_IMPL_FUSED, 1, 2, 1,
                                   17 + (size_t)w->id * 5, 31 + (size_t)round * 7, w->id % 2 ? 32 : 24);
        c.causal = (clattn_causal)(round % 3);
        c.want_lse = true;
        c.seed = (unsigned)(w->id * 100 + round);
        /* sdpa_case_run fails through cmocka, which is not thread-safe; check_case reports instead. */
        if (sdpa_case_check(ctx, &c, w->message, sizeof w->message) != 0) w->failed = 1;
    }
    clattn_context_free(ctx);
    return NULL;
}

static void separate_contexts_run_concurrently(void **state) {
    (void)state;
    pthread_t threads[THREADS];
    worker workers[THREADS];
    for (int i = 0; i < THREADS; ++i) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].id = i;
        assert_int_equal(pthread_create(&threads[i], NULL, run_worker, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; ++i) assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < THREADS; ++i)
        if (workers[i].failed) fail_msg("thread %d: %s", i, workers[i].message);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(separate_contexts_run_concurrently)};
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
