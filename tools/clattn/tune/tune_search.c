// SPDX-License-Identifier: Apache-2.0
/* The search strategies of `clattn tune` over an operation's space (its description in src/tuning/tuning.c, pruned by the
 * device's limits before anything is built): exhaustive, random sampling, and a local search (coordinate descent
 * from the best of a small random sample, along one parameter's whole line at a time), which needs a fraction of
 * the evaluations of the exhaustive search because good tile shapes sit near each other, then times its few fastest
 * contenders again before it chooses, because single timings on a shared machine are noisy. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support_compare.h"
#include "tune.h"

/* A neighbour must beat the current point by this much to be taken: timings of a shared machine are noisy, and
 * chasing noise costs evaluations. */
#define LOCAL_MIN_GAIN 0.01
/* Coordinate-descent passes at most; each pass after the first mostly revisits points already measured. */
#define LOCAL_MAX_PASSES 3
/* Contenders the local search measures again before it chooses, and how many more times. */
#define LOCAL_RETIME        4
#define LOCAL_RETIME_ROUNDS 2
/* A contender's first timing is within this factor of the fastest: about twice the spread of timings of one
 * configuration on a busy 2-core machine. */
#define LOCAL_RETIME_MARGIN 1.3

bool tune_space_build(tune_space *sp, const clattn_tune_op *op, const char *spec, const clattn_device_info *d,
                      const clattn_tuning_query *p, char *why, size_t why_size) {
    memset(sp, 0, sizeof *sp);
    clattn_tune_op_space(op, &sp->space);
    const char *s = spec ? spec : "";
    while (*s) {
        size_t len = strcspn(s, ",");
        char item[256];
        if (len >= sizeof item) len = sizeof item - 1;
        memcpy(item, s, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        int idx = eq ? (*eq = '\0', clattn_tune_space_param_index(&sp->space, item)) : -1;
        if (idx < 0) {
            snprintf(why, why_size, "--space: '%s' is not NAME=V1:V2:... with a parameter of %s", item,
                     sp->space.name);
            return false;
        }
        clattn_tune_param *pr = &sp->space.params[idx];
        const clattn_tune_param whole = *pr; /* what the family accepts, before the narrowing empties the list */
        pr->count = 0;
        for (char *v = strtok(eq + 1, ":"); v; v = strtok(NULL, ":")) {
            if (pr->count == CLATTN_TUNE_MAX_VALUES ||
                clattn_tune_param_value(&whole, v, &pr->values[pr->count]) != CLATTN_SUCCESS) {
                snprintf(why, why_size, "--space: bad value '%s' for %s (at most %d values)", v, pr->name,
                         CLATTN_TUNE_MAX_VALUES);
                return false;
            }
            ++pr->count;
        }
        if (pr->count == 0) {
            snprintf(why, why_size, "--space: no values for %s", pr->name);
            return false;
        }
        s += len;
        if (*s == ',') ++s;
    }
    const size_t total = clattn_tune_space_size(&sp->space);
    sp->points = malloc((total ? total : 1) * sizeof *sp->points);
    if (!sp->points) {
        snprintf(why, why_size, "out of host memory for the space");
        return false;
    }
    for (size_t i = 0; i < total; ++i) {
        clattn_tune_config c;
        clattn_tune_space_point(&sp->space, i, &c);
        if (clattn_tune_op_check(op, d, p, &c))
            ++sp->pruned;
        else
            sp->points[sp->count++] = c;
    }
    return true;
}

void tune_space_free(tune_space *sp) {
    free(sp->points);
    sp->points = NULL;
    sp->count = 0;
}

/* A small generator of our own, so that a seed gives the same order everywhere. */
static unsigned next_random(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

static void shuffle(size_t *order, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i) order[i] = i;
    for (size_t i = n; i > 1; --i) {
        size_t j = ((size_t)next_random(&seed) << 15 | next_random(&seed)) % i;
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

/* Position of a value in a parameter's list: the exact one, else the nearest value. */
static int value_index(const clattn_tune_param *pr, int value) {
    int best = 0;
    for (int i = 0; i < pr->count; ++i)
        if (abs(pr->values[i] - value) < abs(pr->values[best] - value)) best = i;
    return best;
}

/* The point of the space whose parameter `p` is `target` and whose other parameters are closest to c's (the same
 * ones when that point is valid, else the nearest valid repair, which is how a move to another kernel variant finds
 * that variant's parameters). */
static bool point_with(const tune_space *sp, const clattn_tune_config *c, int p, int target,
                       clattn_tune_config *out) {
    long best = -1;
    for (size_t i = 0; i < sp->count; ++i) {
        const clattn_tune_config *x = &sp->points[i];
        if (x->v[p] != target) continue;
        long dist = 0;
        for (int j = 0; j < sp->space.param_count; ++j)
            if (j != p)
                dist +=
                    abs(value_index(&sp->space.params[j], x->v[j]) - value_index(&sp->space.params[j], c->v[j]));
        if (best < 0 || dist < best) {
            best = dist;
            *out = *x;
        }
    }
    return best >= 0;
}

static double time_of(const tune_result *r) {
    return r->status == TUNE_OK ? r->ms : INFINITY;
}

/* Coordinate descent from `start`: along each parameter in turn, every value of it (with the others kept, or
 * repaired to the nearest valid point), moving to any that is faster by LOCAL_MIN_GAIN; passes repeat until one
 * moves nowhere. Whole lines rather than single steps, because on a noisy machine a step-by-step walk stops at the
 * first small bump that noise makes, while tile parameters that interact still have their best values along a
 * line through a good point. Returns false when the run must stop. */
static bool descend(tune_session *s, const tune_space *sp, const clattn_tune_config *start) {
    clattn_tune_config cur = *start;
    tune_result r;
    if (!tune_evaluate(s, &cur, &r)) return false;
    double cur_ms = time_of(&r);
    for (int pass = 0; pass < LOCAL_MAX_PASSES; ++pass) {
        bool moved = false;
        for (int p = 0; p < sp->space.param_count; ++p) {
            const clattn_tune_param *pr = &sp->space.params[p];
            for (int i = 0; i < pr->count; ++i) {
                clattn_tune_config nb;
                if (pr->values[i] == cur.v[p] || !point_with(sp, &cur, p, pr->values[i], &nb) ||
                    clattn_tune_config_equal(&sp->space, &nb, &cur))
                    continue;
                if (!tune_evaluate(s, &nb, &r)) return false;
                if (time_of(&r) < cur_ms * (1.0 - LOCAL_MIN_GAIN)) {
                    cur = nb;
                    cur_ms = time_of(&r);
                    moved = true;
                }
            }
        }
        if (!moved) break;
    }
    return true;
}

/* The exploration of the local strategy: a few random points besides the default, then a descent from the
 * fastest of them (a sample of the space keeps one noisy basin from deciding the result), and with a budget left,
 * further descents from random points that were never evaluated. */
static void explore_local(tune_session *s, const tune_space *sp, const clattn_tune_config *start, unsigned seed,
                          size_t *order) {
    tune_result r;
    shuffle(order, sp->count, seed);
    /* An eighth of a small space, 12 points of a large one: the descent starts from the best of them, so that it
     * starts in a good basin rather than wherever the default sits. */
    size_t sample = sp->count / 8 < 4 ? 4 : sp->count / 8 > 12 ? 12 : sp->count / 8;
    if (sample > sp->count) sample = sp->count;
    if (!tune_evaluate(s, start, &r)) return;
    for (size_t i = 0; i < sample; ++i)
        if (!tune_evaluate(s, &sp->points[order[i]], &r)) return;
    clattn_tune_config from = s->have_best ? s->best : *start;
    if (!descend(s, sp, &from)) return;
    for (size_t i = 0; s->budget > 0 && i < sp->count && !s->stopped; ++i) {
        bool seen = false;
        for (size_t j = 0; j < s->record_count && !seen; ++j)
            seen = clattn_tune_config_equal(&sp->space, &s->records[j].config, &sp->points[order[i]]);
        if (!seen && !descend(s, sp, &sp->points[order[i]])) return;
    }
}

/* Measures the LOCAL_RETIME fastest configurations the search visited LOCAL_RETIME_ROUNDS more times, in turn, and
 * takes the best by the median of each one's timings. The search moves on single timings, and on a shared machine
 * the fastest of a few dozen noisy timings is often a lucky one (a burst of other work inflates whatever runs
 * during it); timing the few contenders again, round-robin so that a burst hits them alike, costs a handful of
 * evaluations and keeps a lucky outlier from being stored. */
static void retime_best(tune_session *s) {
    if (s->deadline > 0 && tune_now() >= s->deadline) return;
    s->stopped = false; /* the exploration's budget, not the run's */
    clattn_tune_config top[LOCAL_RETIME];
    double times[LOCAL_RETIME][1 + LOCAL_RETIME_ROUNDS];
    int n = 0;
    for (int k = 0; k < LOCAL_RETIME; ++k) {
        const tune_record *pick = NULL;
        for (size_t i = 0; i < s->record_count; ++i) {
            const tune_record *x = &s->records[i];
            if (!x->visited || x->result.status != TUNE_OK || (pick && x->result.ms >= pick->result.ms)) continue;
            bool taken = false;
            for (int j = 0; j < n && !taken; ++j) taken = clattn_tune_config_equal(s->space, &top[j], &x->config);
            if (!taken) pick = x;
        }
        /* One clearly slower is no contender: noise does not make up that much. */
        if (!pick || (n > 0 && pick->result.ms > LOCAL_RETIME_MARGIN * times[0][0])) break;
        top[n] = pick->config;
        times[n++][0] = pick->result.ms;
    }
    if (n < 2) return; /* nothing to choose between */
    int rounds = 0;
    for (; rounds < LOCAL_RETIME_ROUNDS; ++rounds)
        for (int k = 0; k < n; ++k) {
            tune_result r;
            s->retime = true;
            const bool ran = tune_evaluate(s, &top[k], &r);
            s->retime = false;
            if (!ran) return; /* out of time or budget: the best of the single timings stands */
            times[k][1 + rounds] = r.status == TUNE_OK ? r.ms : INFINITY;
        }
    int best = -1;
    double best_ms = INFINITY;
    for (int k = 0; k < n; ++k) {
        const double median = support_sort_median(times[k], (size_t)(1 + rounds));
        /* The record keeps the median, so that the final table and the database agree. */
        for (size_t i = 0; i < s->record_count; ++i)
            if (clattn_tune_config_equal(s->space, &s->records[i].config, &top[k]) &&
                s->records[i].result.status == TUNE_OK)
                s->records[i].result.ms = median;
        if (median < best_ms) best = k, best_ms = median;
    }
    if (best >= 0) {
        s->best = top[best];
        s->best_ms = best_ms;
        s->have_best = true;
    }
}

void tune_search(tune_session *s, const tune_space *sp, tune_strategy strategy, const clattn_tune_config *start,
                 unsigned seed) {
    tune_result r;
    size_t *order = malloc((sp->count ? sp->count : 1) * sizeof *order);
    if (!order) return;
    if (strategy == TUNE_AUTO) strategy = sp->count <= 64 ? TUNE_EXHAUSTIVE : TUNE_LOCAL;
    switch (strategy) {
    case TUNE_EXHAUSTIVE:
    case TUNE_RANDOM: {
        /* The built-in default first: it is the baseline of the speed-up, and the best so far from the start. */
        bool start_inside = false;
        for (size_t i = 0; i < sp->count && !start_inside; ++i)
            start_inside = clattn_tune_config_equal(&sp->space, &sp->points[i], start);
        const long total = (long)sp->count + (start_inside ? 0 : 1);
        s->expected = strategy == TUNE_RANDOM && s->budget > 0 && s->budget < total ? s->budget : total;
        if (strategy == TUNE_RANDOM)
            shuffle(order, sp->count, seed);
        else
            for (size_t i = 0; i < sp->count; ++i) order[i] = i;
        if (!tune_evaluate(s, start, &r)) break;
        for (size_t i = 0; i < sp->count; ++i) {
            if (clattn_tune_config_equal(&sp->space, &sp->points[order[i]], start)) continue;
            if (!tune_evaluate(s, &sp->points[order[i]], &r)) break;
        }
        break;
    }
    case TUNE_LOCAL:
    case TUNE_AUTO: {
        s->expected = s->budget > 0 ? s->budget : 0;
        /* A budget keeps room for the final re-timing. */
        const long budget = s->budget;
        const long reserve = LOCAL_RETIME * LOCAL_RETIME_ROUNDS;
        if (budget > 2 * reserve) s->budget = budget - reserve;
        explore_local(s, sp, start, seed, order);
        s->budget = budget;
        retime_best(s);
        break;
    }
    }
    free(order);
}
