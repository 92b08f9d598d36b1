// SPDX-License-Identifier: Apache-2.0
/* `clattn tune --replay FILE`: runs the tuner's own search strategies (tune_search.c, unchanged) against a table
 * that `clattn tune --record` measured, with no device, for many seeds, and reports how often each strategy's
 * choice lands within 5% of the table's best and how many measurements it spent. Live timings on a shared machine
 * are too noisy to settle such a claim; a recorded table makes every run repeatable (Kernel Tuner's simulation
 * mode). Two models of the device:
 *   median  - every measurement of a point returns its recorded median (a noiseless device);
 *   sampled - every measurement returns one of its recorded rounds, drawn by a generator seeded from the run's
 *             seed (the noise the live tuner sees, reproducibly).
 * A choice is judged by its recorded median in both. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "support_compare.h"
#include "tune.h"

#define CMD "tune"
/* The claim being checked: the strategy's choice is within this factor of the table's best. */
#define WITHIN 1.05

typedef struct table_point {
    clattn_tune_config config;
    tune_status status;
    double ms; /* median of the rounds */
    double *rounds;
    int round_count;
} table_point;

typedef struct table {
    char cls[CLATTN_TUNE_CLASS_TEXT];
    tune_space sp;                       /* the recorded space; its points are the ones the live search saw */
    char *names[CLATTN_TUNE_MAX_PARAMS]; /* owned copies: the space points into them */
    char **labels[CLATTN_TUNE_MAX_PARAMS];
    char *space_name;
    table_point *points; /* sp.count of the space, then the built-in default when it lies outside */
    size_t count;
    clattn_tune_config start;
    double best_ms; /* the best median of any point a search can choose */
} table;

/* The oracle's state for one run. */
typedef struct replay_run {
    const table *t;
    bool sampled;
    unsigned state;
} replay_run;

static void table_free(table *t) {
    for (size_t i = 0; i < t->count; ++i) free(t->points[i].rounds);
    free(t->points);
    free(t->sp.points);
    for (int p = 0; p < CLATTN_TUNE_MAX_PARAMS; ++p) {
        for (int i = 0; t->labels[p] && t->labels[p][i]; ++i) free(t->labels[p][i]);
        free(t->labels[p]);
        free(t->names[p]);
    }
    free(t->space_name);
}

static const table_point *table_find(const table *t, const clattn_tune_config *c) {
    for (size_t i = 0; i < t->count; ++i)
        if (clattn_tune_config_equal(&t->sp.space, &t->points[i].config, c)) return &t->points[i];
    return NULL;
}

static tune_status status_named(const char *name) {
    for (int i = 0; i < TUNE_STATUS_COUNT; ++i)
        if (strcmp(name, tune_status_names[i]) == 0) return (tune_status)i;
    return TUNE_ERROR;
}

/* The space as the table states it: names, value lists, labels. */
static bool read_space(table *t, const cJSON *space, char *why, size_t size) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(space, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(space, "params");
    if (!cJSON_IsString(name) || !cJSON_IsArray(params) || cJSON_GetArraySize(params) < 1 ||
        cJSON_GetArraySize(params) > CLATTN_TUNE_MAX_PARAMS) {
        snprintf(why, size, "\"space\" needs a name and 1 to %d params", CLATTN_TUNE_MAX_PARAMS);
        return false;
    }
    clattn_tune_space *s = &t->sp.space;
    t->space_name = strdup(name->valuestring);
    s->name = t->space_name;
    const cJSON *x;
    cJSON_ArrayForEach(x, params) {
        clattn_tune_param *pr = &s->params[s->param_count];
        const cJSON *pn = cJSON_GetObjectItemCaseSensitive(x, "name");
        const cJSON *values = cJSON_GetObjectItemCaseSensitive(x, "values");
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(x, "labels");
        if (!cJSON_IsString(pn) || !cJSON_IsArray(values) || cJSON_GetArraySize(values) < 1 ||
            cJSON_GetArraySize(values) > CLATTN_TUNE_MAX_VALUES) {
            snprintf(why, size, "parameter %d needs a name and 1 to %d values", s->param_count + 1,
                     CLATTN_TUNE_MAX_VALUES);
            return false;
        }
        t->names[s->param_count] = strdup(pn->valuestring);
        pr->name = t->names[s->param_count];
        const cJSON *v;
        cJSON_ArrayForEach(v, values) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (1 << 20)) {
                snprintf(why, size, "parameter %s: values are whole numbers from 0 to 2^20", pr->name);
                return false;
            }
            pr->values[pr->count++] = v->valueint;
        }
        if (cJSON_IsArray(labels)) {
            const int n = cJSON_GetArraySize(labels);
            char **l = calloc((size_t)n + 1, sizeof *l);
            if (!l) return false;
            t->labels[s->param_count] = l;
            for (int i = 0; i < n; ++i) {
                const cJSON *li = cJSON_GetArrayItem(labels, i);
                l[i] = strdup(cJSON_IsString(li) ? li->valuestring : "?");
            }
            pr->labels = (const char *const *)l;
            pr->label_count = n;
        }
        ++s->param_count;
    }
    return true;
}

static bool read_point(table *t, const cJSON *x, table_point *p, char *why, size_t size) {
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(x, "params");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(x, "status");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(x, "ms");
    const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(x, "rounds");
    char perr[128];
    memset(&p->config, 0, sizeof p->config);
    if (!cJSON_IsString(params) || !cJSON_IsString(status) ||
        clattn_tune_config_parse(&t->sp.space, params->valuestring, &p->config, perr, sizeof perr) !=
            CLATTN_SUCCESS) {
        snprintf(why, size, "a point needs \"params\" of the table's space and a \"status\"");
        return false;
    }
    p->status = status_named(status->valuestring);
    if (p->status != TUNE_OK) return true;
    if (!cJSON_IsNumber(ms) || !(ms->valuedouble > 0) || !cJSON_IsArray(rounds) || cJSON_GetArraySize(rounds) < 1) {
        snprintf(why, size, "%s: an ok point needs \"ms\" > 0 and its \"rounds\"", params->valuestring);
        return false;
    }
    p->ms = ms->valuedouble;
    p->round_count = cJSON_GetArraySize(rounds);
    p->rounds = malloc((size_t)p->round_count * sizeof *p->rounds);
    if (!p->rounds) return false;
    for (int i = 0; i < p->round_count; ++i) {
        const cJSON *r = cJSON_GetArrayItem(rounds, i);
        if (!cJSON_IsNumber(r) || !(r->valuedouble > 0)) {
            snprintf(why, size, "%s: rounds are times > 0", params->valuestring);
            return false;
        }
        p->rounds[i] = r->valuedouble;
    }
    return true;
}

static bool table_read(const char *path, table *t, char *why, size_t size) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, size, "cannot open it");
        return false;
    }
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len > 0 ? malloc((size_t)len + 1) : NULL;
    const bool got = text && fread(text, 1, (size_t)len, f) == (size_t)len;
    fclose(f);
    if (!got) {
        free(text);
        snprintf(why, size, "cannot read it");
        return false;
    }
    text[len] = '\0';
    cJSON *o = cJSON_Parse(text);
    free(text);
    bool ok = false;
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "class");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(o, "start");
    const cJSON *inside = cJSON_GetObjectItemCaseSensitive(o, "start_in_space");
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(o, "points");
    if (!o || !cJSON_IsString(format) || strcmp(format->valuestring, "clattn-tune-table-1") != 0 ||
        !cJSON_IsString(cls) || !cJSON_IsString(start) || !cJSON_IsBool(inside) || !cJSON_IsArray(points)) {
        snprintf(why, size, "not a table of `clattn tune --record` (format clattn-tune-table-1)");
        goto done;
    }
    snprintf(t->cls, sizeof t->cls, "%s", cls->valuestring);
    if (!read_space(t, cJSON_GetObjectItemCaseSensitive(o, "space"), why, size)) goto done;
    const size_t n = (size_t)cJSON_GetArraySize(points);
    const size_t in_space = n - (cJSON_IsTrue(inside) ? 0 : 1);
    t->points = calloc(n ? n : 1, sizeof *t->points);
    t->sp.points = malloc((n ? n : 1) * sizeof *t->sp.points);
    if (!t->points || !t->sp.points || n == 0) {
        snprintf(why, size, "no points");
        goto done;
    }
    for (size_t i = 0; i < n; ++i) {
        if (!read_point(t, cJSON_GetArrayItem(points, (int)i), &t->points[i], why, size)) goto done;
        ++t->count;
        if (i < in_space) t->sp.points[t->sp.count++] = t->points[i].config;
    }
    char perr[128];
    memset(&t->start, 0, sizeof t->start);
    if (clattn_tune_config_parse(&t->sp.space, start->valuestring, &t->start, perr, sizeof perr) !=
            CLATTN_SUCCESS ||
        !table_find(t, &t->start)) {
        snprintf(why, size, "its \"start\" is not one of its points");
        goto done;
    }
    t->best_ms = INFINITY;
    for (size_t i = 0; i < t->count; ++i)
        if (t->points[i].status == TUNE_OK && t->points[i].ms < t->best_ms) t->best_ms = t->points[i].ms;
    if (!isfinite(t->best_ms)) {
        snprintf(why, size, "no point ran");
        goto done;
    }
    ok = true;
done:
    cJSON_Delete(o);
    return ok;
}

/* The noise generator: a 32-bit xorshift, independent of the search's own generator. */
static unsigned next_noise(unsigned *s) {
    unsigned x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void oracle(void *user, const clattn_tune_config *c, tune_result *r) {
    replay_run *run = user;
    const table_point *p = table_find(run->t, c);
    memset(r, 0, sizeof *r);
    if (!p) { /* cannot happen for a search over the table's own points; counted as a failure if it does */
        r->status = TUNE_ERROR;
        return;
    }
    r->status = p->status;
    if (p->status != TUNE_OK) return;
    r->ms = run->sampled ? p->rounds[next_noise(&run->state) % (unsigned)p->round_count] : p->ms;
    r->min_ms = r->ms;
}

typedef struct outcome {
    long hits;
    double *evals, *ratios; /* per seed */
} outcome;

/* One strategy over seeds 1..seeds: fills `out` and returns false if a run chose nothing. */
static bool replay_strategy(const table *t, tune_strategy strategy, bool sampled, long budget, long seeds,
                            outcome *out) {
    out->hits = 0;
    for (long seed = 1; seed <= seeds; ++seed) {
        replay_run run = {t, sampled, 2463534242u ^ (unsigned)seed * 2654435761u};
        if (run.state == 0) run.state = 1;
        tune_session s;
        memset(&s, 0, sizeof s);
        s.space = &t->sp.space;
        snprintf(s.cls_text, sizeof s.cls_text, "%s", t->cls);
        s.budget = budget;
        s.quiet = true;
        s.oracle = oracle;
        s.oracle_user = &run;
        tune_session_open(&s);
        tune_search(&s, &t->sp, strategy, &t->start, (unsigned)seed);
        const table_point *chosen = s.have_best ? table_find(t, &s.best) : NULL;
        out->evals[seed - 1] = (double)s.fresh;
        out->ratios[seed - 1] = chosen && chosen->status == TUNE_OK ? chosen->ms / t->best_ms : INFINITY;
        if (out->ratios[seed - 1] <= WITHIN) ++out->hits;
        tune_session_close(&s);
    }
    return true;
}

static double max_of(const double *x, long n) {
    double m = x[0];
    for (long i = 1; i < n; ++i)
        if (x[i] > m) m = x[i];
    return m;
}

static void print_row(const char *model, const char *name, const outcome *o, long seeds) {
    const double worst = max_of(o->ratios, seeds);
    const double max_evals = max_of(o->evals, seeds);
    const double median_evals = support_sort_median(o->evals, (size_t)seeds);
    const double median_ratio = support_sort_median(o->ratios, (size_t)seeds);
    printf("%-8s %-18s %5ld/%-5ld %5.0f%% %12.1f %10.0f %12.3f %11.3f\n", model, name, o->hits, seeds,
           100.0 * (double)o->hits / (double)seeds, median_evals, max_evals, median_ratio, worst);
}

int tune_replay(const char *path, long seeds, long random_budget) {
    table t;
    char why[256];
    if (!table_read(path, &t, why, sizeof why)) {
        table_free(&t);
        return cli_error(CMD, CLI_USAGE, "--replay %s: %s", path, why);
    }
    const table_point *start = table_find(&t, &t.start);
    size_t ok = 0;
    for (size_t i = 0; i < t.count; ++i) ok += t.points[i].status == TUNE_OK;
    char start_text[CLATTN_TUNE_PARAMS_TEXT];
    clattn_tune_config_format(&t.sp.space, &t.start, start_text, sizeof start_text);
    printf("replay of %s: %s, %s, %zu points in the space (%zu ran), best %.3f ms\n", path, t.sp.space.name, t.cls,
           t.sp.count, ok, t.best_ms);
    printf("built-in default %s: %s (%.3fx the best)\n", start_text,
           start->status == TUNE_OK ? "ran" : tune_status_names[start->status],
           start->status == TUNE_OK ? start->ms / t.best_ms : INFINITY);
    /* How far the table itself can be trusted: the spread of each point's rounds, and how far the best stands
     * from the next, compared with the 5% that the report judges by. */
    double *spread = malloc((ok ? ok : 1) * sizeof *spread);
    double second = INFINITY;
    size_t k = 0;
    for (size_t i = 0; i < t.count; ++i) {
        const table_point *p = &t.points[i];
        if (p->status != TUNE_OK) continue;
        if (p->ms > t.best_ms && p->ms < second) second = p->ms;
        double lo = p->rounds[0], hi = p->rounds[0];
        for (int j = 1; j < p->round_count; ++j) {
            lo = p->rounds[j] < lo ? p->rounds[j] : lo;
            hi = p->rounds[j] > hi ? p->rounds[j] : hi;
        }
        if (spread) spread[k++] = hi / lo;
    }
    if (spread && k > 0)
        printf("spread of a point's rounds (slowest/fastest): median %.2f; the second best is %.3fx the best\n",
               support_sort_median(spread, k), second / t.best_ms);
    free(spread);
    printf("within 5%%: the choice's recorded median is at most 1.05x the best; evals: measurements, re-timings "
           "included\n\n");
    printf("%-8s %-18s %11s %6s %12s %10s %12s %11s\n", "model", "strategy", "within 5%", "", "median evals",
           "max evals", "median ratio", "worst ratio");
    outcome o;
    o.evals = malloc((size_t)seeds * sizeof *o.evals);
    o.ratios = malloc((size_t)seeds * sizeof *o.ratios);
    if (!o.evals || !o.ratios) {
        free(o.evals);
        free(o.ratios);
        table_free(&t);
        return cli_error(CMD, CLI_FAILED, "out of host memory");
    }
    for (int m = 0; m < 2; ++m) {
        const bool sampled = m == 1;
        const char *model = sampled ? "sampled" : "median";
        replay_strategy(&t, TUNE_EXHAUSTIVE, sampled, 0, seeds, &o);
        print_row(model, "exhaustive", &o, seeds);
        replay_strategy(&t, TUNE_LOCAL, sampled, 0, seeds, &o);
        print_row(model, "local", &o, seeds);
        /* Random sampling with as many measurements as the local search spends (its median): the baseline that
         * says whether the local search's structure earns anything. */
        long budget = random_budget;
        if (budget <= 0) budget = (long)ceil(support_sort_median(o.evals, (size_t)seeds));
        if (budget < 1) budget = 1;
        replay_strategy(&t, TUNE_RANDOM, sampled, budget, seeds, &o);
        char name[48];
        snprintf(name, sizeof name, "random (budget %ld)", budget);
        print_row(model, name, &o, seeds);
    }
    free(o.evals);
    free(o.ratios);
    table_free(&t);
    return CLI_OK;
}
