// SPDX-License-Identifier: Apache-2.0
/* The evaluation session of `clattn tune`: runs candidates in a worker process (tune_worker.c) with a time limit
 * each, restarts the worker after a crash or a hang, appends every result to a JSON-lines log as it comes, and
 * reads that log back so that a rerun continues where an interrupted one stopped. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tune.h"

const char *const tune_status_names[TUNE_STATUS_COUNT] = {"ok",    "build", "wrong",  "resources",
                                                          "error", "crash", "timeout"};

/* Setting up a class (inputs, the double-precision reference) may take a while on a slow device. */
#define WORKER_SETUP_SECONDS 600.0

double tune_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static tune_record *find_record(tune_session *s, const clattn_tune_config *c) {
    for (size_t i = 0; i < s->record_count; ++i)
        if (clattn_tune_config_equal(s->space, &s->records[i].config, c)) return &s->records[i];
    return NULL;
}

static void add_record(tune_session *s, const clattn_tune_config *c, const tune_result *r) {
    tune_record *old = find_record(s, c);
    if (old) {
        old->result = *r;
        return;
    }
    if (s->record_count == s->record_capacity) {
        size_t cap = s->record_capacity ? s->record_capacity * 2 : 64;
        tune_record *n = realloc(s->records, cap * sizeof *n);
        if (!n) return; /* the result is still in the log; only the resume of this run loses it */
        s->records = n;
        s->record_capacity = cap;
    }
    s->records[s->record_count].config = *c;
    s->records[s->record_count].result = *r;
    s->records[s->record_count].visited = false;
    ++s->record_count;
}

static tune_status status_from_name(const char *name) {
    for (int i = 0; i < TUNE_STATUS_COUNT; ++i)
        if (strcmp(name, tune_status_names[i]) == 0) return (tune_status)i;
    return TUNE_ERROR;
}

void tune_session_open(tune_session *s) {
    signal(SIGPIPE, SIG_IGN); /* a worker that died must not take the tuner with it */
    s->pid = 0;
    s->to_worker = s->from_worker = -1;
    s->buf_len = 0;
    s->evaluations = 0;
    s->stopped = false;
    s->have_best = false;
    s->best_ms = INFINITY;
    FILE *f = s->log_path ? fopen(s->log_path, "r") : NULL; /* a replay has no log */
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue; /* a line cut short by an interruption */
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "source_hash");
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "class");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "params");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "ms");
        const cJSON *min_ms = cJSON_GetObjectItemCaseSensitive(o, "min_ms");
        clattn_tune_config c;
        if (cJSON_IsString(h) && cJSON_IsString(cls) && cJSON_IsString(params) && cJSON_IsString(status) &&
            strcmp(h->valuestring, s->source_hash) == 0 && strcmp(cls->valuestring, s->cls_text) == 0) {
            memset(&c, 0, sizeof c);
            char why[128];
            if (clattn_tune_config_parse(s->space, params->valuestring, &c, why, sizeof why) == CLATTN_SUCCESS) {
                tune_result r = {status_from_name(status->valuestring), 0, 0, true};
                if (r.status == TUNE_OK && (!cJSON_IsNumber(ms) || !(ms->valuedouble > 0))) r.status = TUNE_ERROR;
                if (r.status == TUNE_OK) {
                    r.ms = ms->valuedouble;
                    r.min_ms = cJSON_IsNumber(min_ms) ? min_ms->valuedouble : r.ms;
                }
                add_record(s, &c, &r);
            }
        }
        cJSON_Delete(o);
    }
    fclose(f);
}

static void stop_worker(tune_session *s, bool kill_it) {
    if (s->to_worker >= 0) close(s->to_worker);
    if (s->from_worker >= 0) close(s->from_worker);
    s->to_worker = s->from_worker = -1;
    s->buf_len = 0;
    if (s->pid > 0) {
        if (kill_it) kill(s->pid, SIGKILL);
        int status = 0;
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    s->pid = 0;
}

void tune_session_close(tune_session *s) {
    stop_worker(s, true);
    free(s->records);
    s->records = NULL;
    s->record_count = s->record_capacity = 0;
}

/* One line from the worker: 1 with the line, 0 at end of file, -1 after `seconds` without one. */
static int read_line(tune_session *s, double seconds, char *line, size_t size) {
    const double until = tune_now() + seconds;
    for (;;) {
        char *nl = memchr(s->buf, '\n', s->buf_len);
        if (nl) {
            size_t len = (size_t)(nl - s->buf);
            size_t copy = len < size - 1 ? len : size - 1;
            memcpy(line, s->buf, copy);
            line[copy] = '\0';
            memmove(s->buf, nl + 1, s->buf_len - len - 1);
            s->buf_len -= len + 1;
            return 1;
        }
        if (s->buf_len == sizeof s->buf) s->buf_len = 0; /* an overlong line: drop it */
        double left = until - tune_now();
        if (left <= 0) return -1;
        struct pollfd pfd = {s->from_worker, POLLIN, 0};
        int rc = poll(&pfd, 1, (int)(left * 1000.0) + 1);
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) continue;
        ssize_t got = read(s->from_worker, s->buf + s->buf_len, sizeof s->buf - s->buf_len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        s->buf_len += (size_t)got;
    }
}

/* Starts a worker for the session's class and waits for it to be ready. Returns NULL or why it failed. */
static const char *start_worker(tune_session *s) {
    int in[2], out[2];
    if (pipe(in) != 0) return "pipe() failed";
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return "pipe() failed";
    }
    char repeat[32], warmup[32];
    snprintf(repeat, sizeof repeat, "%ld", s->repeat);
    snprintf(warmup, sizeof warmup, "%ld", s->warmup);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        return "fork() failed";
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        if (!getenv("CLATTN_TUNE_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0) dup2(null, 2);
        }
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(s->self, s->self, "tune", "--worker", "--device", s->device, "--class", s->cls_text, "--repeat",
              repeat, "--warmup", warmup, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->pid = pid;
    s->to_worker = in[1];
    s->from_worker = out[0];
    s->buf_len = 0;
    char line[512];
    double wait = WORKER_SETUP_SECONDS;
    if (s->deadline > 0 && s->deadline - tune_now() < wait) wait = s->deadline - tune_now();
    int rc = read_line(s, wait > 0 ? wait : 0, line, sizeof line);
    if (rc == 1 && strcmp(line, "ready") == 0) return NULL;
    stop_worker(s, true);
    return rc == -1 ? "the worker did not get ready in time" : "the worker could not set the class up";
}

static void append_log(tune_session *s, const char *params, const tune_result *r, const char *message) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "source_hash", s->source_hash);
    cJSON_AddStringToObject(o, "op", s->space->name);
    cJSON_AddStringToObject(o, "class", s->cls_text);
    cJSON_AddStringToObject(o, "params", params);
    cJSON_AddStringToObject(o, "status", tune_status_names[r->status]);
    if (r->status == TUNE_OK) {
        cJSON_AddNumberToObject(o, "ms", r->ms);
        cJSON_AddNumberToObject(o, "min_ms", r->min_ms);
    }
    if (message && *message) cJSON_AddStringToObject(o, "message", message);
    cJSON_AddNumberToObject(o, "time", (double)time(NULL));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return;
    /* One write of a whole line with O_APPEND: an interruption loses at most this line, never corrupts another. */
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        size_t len = strlen(text);
        text[len] = '\n';
        ssize_t w = write(fd, text, len + 1);
        (void)w;
        close(fd);
    }
    free(text);
}

static void format_seconds(double sec, char *out, size_t size) {
    if (sec < 0 || !isfinite(sec))
        snprintf(out, size, "?");
    else if (sec < 90)
        snprintf(out, size, "%.0fs", sec);
    else if (sec < 5400)
        snprintf(out, size, "%.0fm%02.0fs", floor(sec / 60), fmod(sec, 60));
    else
        snprintf(out, size, "%.1fh", sec / 3600);
}

static void progress(tune_session *s, const char *params, const tune_result *r) {
    if (s->quiet) return;
    char left[32] = "?";
    double per = s->fresh ? s->fresh_seconds / (double)s->fresh : -1;
    if (s->expected > 0 && per >= 0) {
        long remaining = s->expected - s->evaluations;
        format_seconds(per * (double)(remaining > 0 ? remaining : 0), left, sizeof left);
    }
    if (s->deadline > 0) {
        double until = s->deadline - tune_now();
        if (left[0] == '?' || per * (double)(s->expected - s->evaluations) > until)
            format_seconds(until > 0 ? until : 0, left, sizeof left);
    }
    char best[CLATTN_TUNE_PARAMS_TEXT] = "-";
    if (s->have_best) clattn_tune_config_format(s->space, &s->best, best, sizeof best);
    char total[32] = "";
    if (s->expected > 0) snprintf(total, sizeof total, "/%ld", s->expected);
    char now[48];
    if (r->status == TUNE_OK)
        snprintf(now, sizeof now, "%.3f ms", r->ms);
    else
        snprintf(now, sizeof now, "%s", tune_status_names[r->status]);
    fprintf(stderr, "  [%s] %ld%s %s%s: %s | best %.3f ms %s | ~%s left\n", s->cls_text, s->evaluations, total,
            r->cached ? "(log) " : "", params, now, s->have_best ? s->best_ms : 0.0, best, left);
}

bool tune_evaluate(tune_session *s, const clattn_tune_config *c, tune_result *r) {
    char params[CLATTN_TUNE_PARAMS_TEXT];
    clattn_tune_config_format(s->space, c, params, sizeof params);
    if (s->stopped) return false;
    tune_record *rec = s->retime ? NULL : find_record(s, c);
    /* The budget counts results from the log too, so that a rerun with the same budget ends where a finished run
     * ended; the time limit only stops new work. */
    if ((s->budget > 0 && s->evaluations >= s->budget) || (!rec && s->deadline > 0 && tune_now() >= s->deadline)) {
        s->stopped = true;
        return false;
    }
    ++s->evaluations;
    if (rec) {
        *r = rec->result;
        r->cached = true;
    } else {
        const double t0 = tune_now();
        memset(r, 0, sizeof *r);
        char message[512] = "";
        if (s->oracle) {
            s->oracle(s->oracle_user, c, r);
            add_record(s, c, r);
            ++s->fresh;
        } else {
            if (s->pid == 0) {
                const char *why = start_worker(s);
                if (why) {
                    if (s->deadline > 0 && tune_now() >= s->deadline) {
                        s->stopped = true;
                        return false;
                    }
                    fprintf(stderr, "clattn tune: %s: %s; this class is skipped\n", s->cls_text, why);
                    s->stopped = true;
                    return false;
                }
            }
            double limit = s->candidate_timeout;
            bool deadline_limits = false;
            if (s->deadline > 0 && s->deadline - tune_now() < limit) {
                limit = s->deadline - tune_now();
                deadline_limits = true;
            }
            char line[1024];
            size_t len = strlen(params);
            params[len] = '\n';
            bool sent = write(s->to_worker, params, len + 1) == (ssize_t)(len + 1);
            params[len] = '\0';
            int rc = sent ? read_line(s, limit > 0 ? limit : 0, line, sizeof line) : 0;
            if (rc == 1 && strncmp(line, "ok ", 3) == 0 && sscanf(line + 3, "%lf %lf", &r->ms, &r->min_ms) == 2 &&
                r->ms > 0) {
                r->status = TUNE_OK;
            } else if (rc == 1 && strncmp(line, "fail ", 5) == 0) {
                char kind[16] = "";
                int used = 0;
                if (sscanf(line + 5, "%15s %n", kind, &used) < 1) used = 0;
                r->status = status_from_name(kind);
                if (r->status == TUNE_OK) r->status = TUNE_ERROR;
                snprintf(message, sizeof message, "%s", line + 5 + used);
            } else if (rc == -1) {
                stop_worker(s, true);
                if (deadline_limits) {
                    /* The run's time is up, not the candidate's: nothing is recorded, a rerun tries it again. */
                    --s->evaluations;
                    s->stopped = true;
                    return false;
                }
                r->status = TUNE_TIMEOUT;
                snprintf(message, sizeof message, "no answer within %.0f s", limit);
            } else {
                int status = 0;
                pid_t pid = s->pid;
                close(s->to_worker);
                close(s->from_worker);
                s->to_worker = s->from_worker = -1;
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
                }
                s->pid = 0;
                r->status = TUNE_CRASH;
                if (WIFSIGNALED(status))
                    snprintf(message, sizeof message, "the worker died of signal %d", WTERMSIG(status));
                else
                    snprintf(message, sizeof message, "the worker exited with status %d", WEXITSTATUS(status));
            }
            append_log(s, params, r, message);
            add_record(s, c, r);
            ++s->fresh;
            s->fresh_seconds += tune_now() - t0;
        }
    }
    if ((rec = find_record(s, c))) rec->visited = true;
    if (r->status != TUNE_OK) ++s->failures;
    if (r->status == TUNE_OK && (!s->have_best || r->ms < s->best_ms)) {
        s->best = *c;
        s->best_ms = r->ms;
        s->have_best = true;
    }
    progress(s, params, r);
    if (!r->cached && s->stop_after > 0 && s->fresh >= s->stop_after) {
        /* Test hook: an interruption after this many results, with nothing else written. */
        stop_worker(s, true);
        _exit(3);
    }
    return true;
}
