// SPDX-License-Identifier: Apache-2.0
/* `clattn tune --record FILE`: measures a whole space once, carefully, so that the search strategies can be
 * compared afterwards by replaying the table (tune_replay.c) instead of on live timings, which on a shared machine
 * are too noisy to tell a 5% difference (the idea of Kernel Tuner's simulation mode). Every point is measured
 * `rounds` times through the tuner's own evaluation session (each measurement a median of --repeat runs in the
 * worker), round-robin over the space, and the table keeps each round as well as their median: the replay can
 * then serve either the median (a noiseless device) or one recorded round at random (the noise the live tuner
 * sees). The table carries its own space (names, values, labels), so it stays readable after the kernel family's
 * description changes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "support_compare.h"
#include "tune.h"

#define TABLE_FORMAT "clattn-tune-table-1"

typedef struct point_rounds {
    clattn_tune_config config;
    tune_status status; /* TUNE_OK when every round was; else the first failure */
    double *ms;         /* one per round */
    long ok;
} point_rounds;

static cJSON *space_json(const clattn_tune_space *sp) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", sp->name);
    cJSON *params = cJSON_AddArrayToObject(o, "params");
    for (int p = 0; p < sp->param_count; ++p) {
        const clattn_tune_param *pr = &sp->params[p];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", pr->name);
        cJSON_AddItemToObject(x, "values", cJSON_CreateIntArray(pr->values, pr->count));
        if (pr->labels && pr->label_count > 0)
            cJSON_AddItemToObject(x, "labels", cJSON_CreateStringArray(pr->labels, pr->label_count));
        cJSON_AddItemToArray(params, x);
    }
    return o;
}

static cJSON *point_json(const clattn_tune_space *space, const point_rounds *p, long rounds) {
    char text[CLATTN_TUNE_PARAMS_TEXT];
    clattn_tune_config_format(space, &p->config, text, sizeof text);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "params", text);
    cJSON_AddStringToObject(o, "status", tune_status_names[p->status]);
    if (p->status == TUNE_OK) {
        double *sorted = malloc((size_t)rounds * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, p->ms, (size_t)rounds * sizeof *sorted);
            cJSON_AddNumberToObject(o, "ms", support_sort_median(sorted, (size_t)rounds));
            free(sorted);
        }
        cJSON_AddItemToObject(o, "rounds", cJSON_CreateDoubleArray(p->ms, (int)rounds));
    }
    return o;
}

bool tune_record_table(tune_session *s, const tune_space *sp, const clattn_tune_config *start, long rounds,
                       const clattn_device_info *info, const char *path) {
    /* The built-in default is measured too when the narrowed space leaves it out: every search starts there. */
    bool start_inside = false;
    for (size_t i = 0; i < sp->count && !start_inside; ++i)
        start_inside = clattn_tune_config_equal(&sp->space, &sp->points[i], start);
    const size_t n = sp->count + (start_inside ? 0 : 1);
    point_rounds *pts = calloc(n, sizeof *pts);
    double *all = calloc(n * (size_t)rounds, sizeof *all);
    if (!pts || !all) {
        free(pts);
        free(all);
        fprintf(stderr, "clattn tune: out of host memory for the table\n");
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        pts[i].config = i < sp->count ? sp->points[i] : *start;
        pts[i].ms = all + i * (size_t)rounds;
    }
    s->expected = (long)n * rounds;
    bool complete = true;
    for (long r = 0; r < rounds && complete; ++r)
        for (size_t i = 0; i < n && complete; ++i) {
            tune_result res;
            s->retime = true; /* a new measurement, never the log's */
            complete = tune_evaluate(s, &pts[i].config, &res);
            s->retime = false;
            if (!complete) break;
            if (res.status == TUNE_OK) {
                pts[i].ms[pts[i].ok++] = res.ms;
            } else if (pts[i].status == TUNE_OK) {
                pts[i].status = res.status;
            }
        }
    if (!complete) {
        fprintf(stderr,
                "clattn tune: the time or the budget ran out before every point was measured %ld times; "
                "no table written\n",
                rounds);
        free(all);
        free(pts);
        return false;
    }
    char start_text[CLATTN_TUNE_PARAMS_TEXT];
    clattn_tune_config_format(&sp->space, start, start_text, sizeof start_text);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", TABLE_FORMAT);
    cJSON_AddStringToObject(o, "class", s->cls_text);
    cJSON_AddStringToObject(o, "device", info->name);
    cJSON_AddStringToObject(o, "platform", info->platform_name);
    cJSON_AddStringToObject(o, "driver", info->driver_version);
    cJSON_AddStringToObject(o, "source_hash", s->source_hash);
    cJSON_AddNumberToObject(o, "repeat", (double)s->repeat);
    cJSON_AddNumberToObject(o, "warmup", (double)s->warmup);
    cJSON_AddNumberToObject(o, "rounds", (double)rounds);
    cJSON_AddItemToObject(o, "space", space_json(&sp->space));
    cJSON_AddStringToObject(o, "start", start_text);
    cJSON_AddBoolToObject(o, "start_in_space", start_inside);
    cJSON *points = cJSON_AddArrayToObject(o, "points");
    for (size_t i = 0; i < n; ++i) cJSON_AddItemToArray(points, point_json(&sp->space, &pts[i], rounds));
    free(all);
    free(pts);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = text ? fopen(path, "w") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    if (!ok) fprintf(stderr, "clattn tune: cannot write the table %s\n", path);
    return ok;
}
