// SPDX-License-Identifier: Apache-2.0
/* Shared pieces of `clattn tune`: the evaluation session (worker processes, the results log, time limits) in
 * tune_run.c, the search strategies in tune_search.c, the worker itself in tune_worker.c. */
#ifndef CLATTN_TUNE_H
#define CLATTN_TUNE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "clattn_advanced.h"

/* How a candidate ended. */
typedef enum tune_status {
    TUNE_OK = 0,
    TUNE_BUILD,     /* failed to compile */
    TUNE_WRONG,     /* disagreed with the double-precision reference */
    TUNE_RESOURCES, /* out of resources or memory, or a work-group the device refused */
    TUNE_ERROR,     /* any other failure the library reported */
    TUNE_CRASH,     /* the worker process died */
    TUNE_TIMEOUT,   /* the worker did not answer within the time limit */
    TUNE_STATUS_COUNT
} tune_status;

extern const char *const tune_status_names[TUNE_STATUS_COUNT];

typedef struct tune_result {
    tune_status status;
    double ms, min_ms; /* median and minimum of the timed runs (TUNE_OK) */
    bool cached;       /* taken from the log of an earlier run */
} tune_result;

/* The space searched for one class: the kernel family's parameters with their value lists (narrowed by --space)
 * and every point that passes the family's check on this device. */
typedef struct tune_space {
    clattn_tune_space space;
    clattn_tune_config *points;
    size_t count;
    size_t pruned; /* points the device's limits ruled out before anything was built */
} tune_space;

/* One class being tuned: the worker process, the log, the best so far. */
typedef struct tune_session {
    /* set by the caller */
    const char *self;     /* this program, for starting workers */
    const char *device;   /* "P:D" */
    const char *log_path; /* JSON lines */
    const char *source_hash;
    const clattn_tune_space *space; /* the parameters the configurations are written and read with */
    clattn_tune_class cls;
    char cls_text[CLATTN_TUNE_CLASS_TEXT];
    double candidate_timeout; /* seconds */
    double deadline;          /* monotonic seconds; 0: none */
    long repeat, warmup;
    long budget;     /* evaluations for this class, cached ones included; 0: no limit */
    long stop_after; /* test hook: exit after this many new evaluations; 0: never */
    bool quiet;
    bool retime; /* set by the search: the next tune_evaluate measures again even when the result is known */
    /* Replay (tune_replay.c): when set, a measurement asks this instead of a worker, and nothing is logged; the
     * search code is the same. Sets *r (status, ms, min_ms). */
    void (*oracle)(void *user, const clattn_tune_config *c, tune_result *r);
    void *oracle_user;
    /* state */
    pid_t pid;
    int to_worker, from_worker;
    char buf[1024];
    size_t buf_len;
    struct tune_record *records; /* evaluated configurations, from the log and this run */
    size_t record_count, record_capacity;
    long evaluations; /* this class, cached included */
    long fresh;       /* this run's new evaluations, all classes */
    long failures;
    bool stopped; /* time or budget ran out */
    double started, fresh_seconds;
    long expected; /* evaluations the strategy plans, for the estimate (0: unknown) */
    clattn_tune_config best;
    double best_ms;
    bool have_best;
} tune_session;

typedef struct tune_record {
    clattn_tune_config config;
    tune_result result;
    bool visited; /* evaluated (or taken from the log) by this run's search */
} tune_record;

double tune_now(void);
/* Reads the log's results for this class, device and source into the session. */
void tune_session_open(tune_session *s);
/* Evaluates a configuration (or takes it from the log). Returns false, without a result, when the run must stop:
 * the time or the budget is used up. */
bool tune_evaluate(tune_session *s, const clattn_tune_config *c, tune_result *r);
/* Stops the worker. */
void tune_session_close(tune_session *s);

/* Builds the space of a class, narrowed by --space ("name=v1:v2,name=v3"); false with a message on a bad spec. */
bool tune_space_build(tune_space *sp, const clattn_tune_op *op, const char *spec, const clattn_device_info *d,
                      const clattn_tuning_query *p, char *why, size_t why_size);
void tune_space_free(tune_space *sp);

typedef enum tune_strategy { TUNE_AUTO = 0, TUNE_EXHAUSTIVE, TUNE_RANDOM, TUNE_LOCAL } tune_strategy;
/* Runs a strategy over the space, starting from `start` (the built-in default). */
void tune_search(tune_session *s, const tune_space *sp, tune_strategy strategy, const clattn_tune_config *start,
                 unsigned seed);

int tune_worker_main(int argc, char **argv);

/* `clattn tune --record FILE` (tune_record.c): measures every point of one class's space `rounds` times (each a
 * median of the session's repeat runs, round-robin over the space so that a burst of other work hits points alike)
 * and writes the table that `clattn tune --replay` reads. Returns false with a message on stderr. */
bool tune_record_table(tune_session *s, const tune_space *sp, const clattn_tune_config *start, long rounds,
                       const clattn_device_info *info, const char *path);
/* `clattn tune --replay FILE` (tune_replay.c): runs every strategy of tune_search against a recorded table for
 * seeds 1..seeds, with no device, and prints how often each lands within 5% of the table's best and how many
 * measurements it used. random_budget 0: the local search's median. Returns a CLI status. */
int tune_replay(const char *path, long seeds, long random_budget);

/* The arguments the tuner starts a worker with (`clattn tune --worker --device P:D --class TEXT --repeat N
 * --warmup N`, and --first PARAMS when the CLBlast worker restarts itself); repeat and warmup default to 5 and 2.
 */
typedef struct tune_worker_args {
    const char *device, *cls, *first;
    long repeat, warmup;
    bool programs; /* --programs: print the programs a call builds, time nothing */
} tune_worker_args;
void tune_worker_args_parse(int argc, char **argv, tune_worker_args *a);
/* The worker's loop: one candidate per line of stdin to `answer`, which prints its answer line. */
void tune_worker_serve(void (*answer)(void *worker, const char *params), void *worker);

#endif
