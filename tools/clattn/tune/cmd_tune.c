// SPDX-License-Identifier: Apache-2.0
/* `clattn tune`: finds the fastest kernel parameters for this device, one problem class at a time, and stores them
 * in the device's tuning database, where every later context finds them. `clattn tune --show` prints which entry
 * each class would use. The search itself is tune_search.c, the candidates run in worker processes (tune_run.c,
 * tune_worker.c). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tune.h"
#include "tune_clblast.h"

#define CMD         "tune"
#define MAX_CLASSES 32

/* Tunes in a few minutes on a 2-core CPU through PoCL: one prefill class each without and with causal masking, a
 * decode step over a long cache, and a short sequence of the additive (seq2seq) kernel. */
#define DEFAULT_SHAPES "prefill:d64:L512,prefill:d64:L512:causal,decode:d64:L2048,additive:a128:L256"
static const char *const default_shapes = DEFAULT_SHAPES;

typedef struct class_outcome {
    const clattn_tune_op *op;
    char hash[33]; /* of the operation's kernel sources */
    clattn_tune_class cls;
    char text[CLATTN_TUNE_CLASS_TEXT];
    bool done, stored;
    bool have_default, have_best;
    double default_ms, best_ms;
    char best[CLATTN_TUNE_PARAMS_TEXT];
    long evaluations, failures;
    size_t space, pruned;
} class_outcome;

static int parse_classes(const char *text, class_outcome *out, size_t *count) {
    *count = 0;
    if (strcmp(text, "none") == 0) return CLI_OK; /* --clblast alone */
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[128];
        if (len == 0 || len >= sizeof item || *count == MAX_CLASSES)
            return cli_error(CMD, CLI_USAGE, "--shapes %s: expected at most %d classes separated by commas", text,
                             MAX_CLASSES);
        memcpy(item, p, len);
        item[len] = '\0';
        char why[256];
        class_outcome *o = &out[*count];
        memset(o, 0, sizeof *o);
        if (clattn_tune_class_parse(item, &o->op, &o->cls, why, sizeof why) != CLATTN_SUCCESS)
            return cli_error(CMD, CLI_USAGE, "--shapes: %s", why);
        if (o->cls.seq > (1L << 16))
            return cli_error(CMD, CLI_USAGE, "--shapes: %s: lengths above 65536 are too slow to tune", item);
        clattn_tune_class_format(o->op, &o->cls, o->text, sizeof o->text);
        ++*count;
        p += len;
        if (*p == ',') ++p;
    }
    return *count ? CLI_OK : cli_error(CMD, CLI_USAGE, "--shapes: no class given");
}

/* "90", "90s", "10m", "2h" as seconds. */
static int parse_duration(const char *text, double *out) {
    char *end = NULL;
    double v = strtod(text, &end);
    double unit = 1;
    if (end && strcmp(end, "m") == 0)
        unit = 60;
    else if (end && strcmp(end, "h") == 0)
        unit = 3600;
    else if (!end || (*end && strcmp(end, "s") != 0))
        v = -1;
    if (end == text || !(v > 0) || v > 1e7)
        return cli_error(CMD, CLI_USAGE, "--time %s: expected a duration such as 90s, 10m or 1h", text);
    *out = v * unit;
    return CLI_OK;
}

static int parse_long(const char *opt, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < lo || v > hi)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected a whole number from %ld to %ld", opt, text, lo, hi);
    *out = v;
    return CLI_OK;
}

/* The log of every candidate sits next to the database: <database>.log.jsonl. */
static char *log_path_for(const char *db_path) {
    size_t n = strlen(db_path);
    char *s = malloc(n + 16);
    if (!s) return NULL;
    memcpy(s, db_path, n + 1);
    if (n > 5 && strcmp(s + n - 5, ".json") == 0) s[n - 5] = '\0';
    strcat(s, ".log.jsonl");
    return s;
}

static int show(clattn_context *ctx, const class_outcome *classes, size_t count) {
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    char path[4096];
    const char *file = clattn_tuning_database_file(ctx, 0, path, sizeof path) == CLATTN_SUCCESS ? path : NULL;
    printf("device: %s (%s, driver %s)\n", info.name, info.platform_name, info.driver_version);
    printf("tuning database: %s (%s)\n", file ? file : "(no directory)",
           file && access(file, R_OK) == 0 ? "present" : "absent");
    printf("\n%-36s %-14s %-28s %10s  %s\n", "class", "source", "entry", "tuned ms", "parameters");
    for (size_t i = 0; i < count; ++i) {
        clattn_tuning_query q;
        clattn_tune_class_problem(classes[i].op, &classes[i].cls, &q);
        clattn_tuning_choice ch;
        clattn_status st = clattn_tuning_lookup(ctx, &q, &ch);
        if (st != CLATTN_SUCCESS) return cli_report_status(CMD, ctx, st, "the tuning lookup");
        char tuned[32] = "-";
        if (ch.tuned_ms > 0) snprintf(tuned, sizeof tuned, "%.3f", ch.tuned_ms);
        printf("%-36s %-14s %-28s %10s  %s\n", ch.query_class, clattn_tuning_source_name(ch.source),
               ch.entry_class[0] ? ch.entry_class : "-", tuned, ch.params);
    }
    /* What the context gave CLBlast for the layer's GEMMs. */
    printf("\n%-36s %-14s %10s %10s  %s\n", "CLBlast kernel (fp32)", "source", "tuned ms", "default ms",
           "parameters");
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k) {
        char name[64];
        snprintf(name, sizeof name, "clblast:%s", clattn_clblast_kernel_at(k)->name);
        clattn_tuning_query q;
        clattn_tuning_query_init(&q);
        q.operation = name;
        clattn_tuning_choice ch;
        if (clattn_tuning_lookup(ctx, &q, &ch) != CLATTN_SUCCESS) continue;
        char tuned[32] = "-", def[32] = "-";
        if (ch.tuned_ms > 0) snprintf(tuned, sizeof tuned, "%.3f", ch.tuned_ms);
        if (ch.default_ms > 0) snprintf(def, sizeof def, "%.3f", ch.default_ms);
        printf("%-36s %-14s %10s %10s  %s\n", name, ch.source == CLATTN_TUNING_EXACT ? "applied" : "clblast-own",
               tuned, def, ch.params[0] ? ch.params : "(CLBlast's own database)");
    }
    return CLI_OK;
}

/* Records the best configuration of a class in the database (and, for the first class of a phase in this run, as
 * the device default of that phase); the library rereads the file first, so that other classes' entries stay. */
static bool store(const char *db_path, const clattn_device_info *info, const char *hash, const class_outcome *o,
                  bool phase_default) {
    clattn_tuning_record r = {o->op, hash, o->cls, o->best, o->best_ms, o->have_default ? o->default_ms : 0};
    char message[1024];
    clattn_status st = clattn_tuning_database_store(db_path, info, &r, phase_default, message, sizeof message);
    if (message[0]) fprintf(stderr, "clattn tune: %s\n", message);
    return st == CLATTN_SUCCESS;
}

/* Records the best CLBlast parameters as the database's "clblast" section, keeping its kernel entries. */
static bool store_clblast(const char *db_path, const clattn_device_info *info,
                          const clattn_clblast_params *params) {
    char message[1024];
    clattn_status st = clattn_tuning_database_store_clblast(db_path, info, params, message, sizeof message);
    if (message[0]) fprintf(stderr, "clattn tune: %s\n", message);
    return st == CLATTN_SUCCESS;
}

static void print_table(const class_outcome *classes, size_t count) {
    printf("\n%-36s %6s %6s %12s %10s %9s  %s\n", "class", "evals", "failed", "default ms", "best ms", "speed-up",
           "best parameters");
    for (size_t i = 0; i < count; ++i) {
        const class_outcome *o = &classes[i];
        char def[32] = "-", best[32] = "-", up[32] = "-";
        if (o->have_default) snprintf(def, sizeof def, "%.3f", o->default_ms);
        if (o->have_best) snprintf(best, sizeof best, "%.3f", o->best_ms);
        if (o->have_default && o->have_best) snprintf(up, sizeof up, "%.2fx", o->default_ms / o->best_ms);
        printf("%-36s %6ld %6ld %12s %10s %9s  %s\n", o->text, o->evaluations, o->failures, def, best, up,
               o->have_best ? o->best : (o->done ? "(no candidate worked)" : "(not tuned)"));
    }
}

int cmd_tune(int argc, char **argv) {
    if (argc > 0 && strcmp(argv[0], "--worker") == 0) return tune_worker_main(argc - 1, argv + 1);
    cli_option options[] = {
        {"device", "SPEC", "device to tune (default: CLATTN_DEVICE, else the default device)", NULL},
        {"shapes", "LIST",
         "problem classes, comma-separated: fused attention PHASE:dD:LN[:f16|bf16][:causal][:additive|bool]"
         "[:softcap][:sinks][:alibi][:score_mod][:mask_mod][:packed|paged][:i8|fp8], "
         "additive attention additive[:decode]:aA[:vV]:LN[:f16|bf16][:additive|bool] (attention width A, value "
         "width V, default A; decode is one query row, batch 8) (default " DEFAULT_SHAPES ")",
         NULL},
        {"strategy", "S",
         "auto (exhaustive for spaces of at most 64 points, else local), exhaustive, random or local", NULL},
        {"budget", "N", "at most N evaluations per class (results from the log count too)", NULL},
        {"time", "T", "bound the whole run (90s, 10m, 1h); the best results so far are written when it runs out",
         NULL},
        {"space", "SPEC", "narrow the space, e.g. variant=cpu,rows=8:16:24 (values separated by ':')", NULL},
        {"repeat", "N", "timed runs per candidate; the median counts (default 5)", NULL},
        {"warmup", "N", "untimed runs per candidate after the check (default 2)", NULL},
        {"candidate-timeout", "SEC", "time limit of one candidate, build included (default 120)", NULL},
        {"seed", "N", "seed of the random orders (default 1)", NULL},
        {"fresh", NULL, "ignore the results log of earlier runs (it is kept, and appended to)", NULL},
        {"show", NULL, "print which database entry each class uses on this device, and tune nothing", NULL},
        {"quiet", NULL, "no progress lines", NULL},
        {"clblast", NULL,
         "also tune the parameters of the CLBlast GEMMs of the multi-head layer's projections (stored in the "
         "database's \"clblast\" section, applied by every later context); --shapes none tunes only those",
         NULL},
        {"clblast-shapes", "LIST",
         "GEMM shapes MxNxK for --clblast, comma-separated (default " TUNE_CLBLAST_DEFAULT_SHAPES ")", NULL},
        {"record", "FILE",
         "measure every point of one class's space --rounds times (round-robin) and write the table for --replay "
         "to FILE; nothing is stored in the database",
         NULL},
        {"rounds", "N", "measurements per point for --record; the table keeps each and their median (default 5)",
         NULL},
        {"replay", "FILE",
         "with no device: run every search strategy against a table of --record for --seeds seeds and print how "
         "often each lands within 5% of the table's best and how many measurements it used",
         NULL},
        {"seeds", "N", "seeds 1..N for --replay (default 100)", NULL},
    };
    cli_command cmd = {
        CMD,
        "Tune the fused attention kernels and the additive (seq2seq) attention kernel for this device. Candidates "
        "are pruned by the device's limits, checked "
        "against the double-precision reference, then timed with OpenCL profiling events (median of --repeat runs "
        "after warm-up), each in a worker process with a time limit. Results are appended to a log as they come, "
        "so a rerun continues where an interrupted one stopped; the best parameters per class go to the device's "
        "tuning database ($CLATTN_TUNING_DIR, else $XDG_DATA_HOME/clattn/tuning, else "
        "~/.local/share/clattn/tuning), where every later context finds them.",
        "[--shapes LIST] [--strategy S] [--budget N] [--time T] [--space SPEC] [--clblast] [--show]\n"
        "       clattn tune --record FILE --shapes CLASS [--space SPEC] [--rounds N]\n"
        "       clattn tune --replay FILE [--seeds N] [--budget N]",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;

    long seeds = 100, rounds = 5;
    const char *r = cli_value(&cmd, "seeds");
    if (r && (rc = parse_long("seeds", r, 1, 100000, &seeds))) return rc;
    if ((r = cli_value(&cmd, "rounds")) && (rc = parse_long("rounds", r, 1, 1000, &rounds))) return rc;
    if ((r = cli_value(&cmd, "replay"))) {
        long random_budget = 0;
        const char *b = cli_value(&cmd, "budget");
        if (b && (rc = parse_long("budget", b, 1, 1000000, &random_budget))) return rc;
        return tune_replay(r, seeds, random_budget);
    }
    const char *record = cli_value(&cmd, "record");

    static class_outcome classes[MAX_CLASSES];
    size_t count = 0;
    const char *shapes = cli_value(&cmd, "shapes");
    if ((rc = parse_classes(shapes ? shapes : default_shapes, classes, &count))) return rc;
    tune_strategy strategy = TUNE_AUTO;
    const char *s = cli_value(&cmd, "strategy");
    if (s) {
        static const char *const names[] = {"auto", "exhaustive", "random", "local"};
        strategy = (tune_strategy)-1;
        for (int i = 0; i < 4; ++i)
            if (strcmp(s, names[i]) == 0) strategy = (tune_strategy)i;
        if ((int)strategy < 0)
            return cli_error(CMD, CLI_USAGE, "--strategy %s: expected auto, exhaustive, random or local", s);
    }
    long budget = 0, repeat = 5, warmup = 2, timeout = 120, seed = 1;
    double run_seconds = 0;
    if ((s = cli_value(&cmd, "budget")) && (rc = parse_long("budget", s, 1, 1000000, &budget))) return rc;
    if ((s = cli_value(&cmd, "repeat")) && (rc = parse_long("repeat", s, 1, 1000, &repeat))) return rc;
    if ((s = cli_value(&cmd, "warmup")) && (rc = parse_long("warmup", s, 0, 1000, &warmup))) return rc;
    if ((s = cli_value(&cmd, "candidate-timeout")) && (rc = parse_long("candidate-timeout", s, 1, 86400, &timeout)))
        return rc;
    if ((s = cli_value(&cmd, "seed")) && (rc = parse_long("seed", s, 0, 1L << 30, &seed))) return rc;
    if ((s = cli_value(&cmd, "time")) && (rc = parse_duration(s, &run_seconds))) return rc;
    if (record && (count != 1 || cli_flag(&cmd, "clblast")))
        return cli_error(CMD, CLI_USAGE, "--record measures one class: give --shapes with exactly one");
    if (strategy == TUNE_RANDOM && !budget && !run_seconds && !record)
        return cli_error(CMD, CLI_USAGE, "--strategy random needs --budget N or --time T");

    clattn_context *ctx = NULL;
    if ((rc = cli_open_context(CMD, cli_value(&cmd, "device"), false, &ctx))) return rc;
    if (cli_flag(&cmd, "show")) {
        rc = show(ctx, classes, count);
        clattn_context_free(ctx);
        return rc;
    }
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    /* The database's directory first, private to the user, so that the log can go next to it. */
    char db_path[4096];
    const bool named = clattn_tuning_database_file(ctx, 0, db_path, sizeof db_path) == CLATTN_SUCCESS;
    if (named && clattn_tuning_database_file(ctx, 1, db_path, sizeof db_path) != CLATTN_SUCCESS)
        fprintf(stderr, "clattn tune: %s\n", clattn_context_last_error(ctx));
    char *log_path = named ? log_path_for(db_path) : NULL;
    bool sources_ok = true;
    for (size_t i = 0; i < count && sources_ok; ++i)
        sources_ok = clattn_tune_op_source_hash(ctx, classes[i].op, classes[i].hash) == CLATTN_SUCCESS;
    if (!sources_ok || !log_path) {
        free(log_path);
        clattn_context_free(ctx);
        return cli_error(CMD, CLI_FAILED,
                         "cannot name the tuning database (set CLATTN_TUNING_DIR or HOME) or load the kernels");
    }
    if (cli_flag(&cmd, "fresh")) {
        /* Earlier results stay in the file for the record, under a hash no run matches. */
        FILE *f = fopen(log_path, "a");
        if (f) fclose(f);
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    if (n <= 0) snprintf(self, sizeof self, "clattn");
    char device[32];
    snprintf(device, sizeof device, "%u:%u", info.platform_index, info.device_index);
    printf("tuning on %s (%s); database %s\n", info.name, info.platform_name, db_path);

    const double start = tune_now();
    const double deadline = run_seconds > 0 ? start + run_seconds : 0;
    long stop_after = 0;
    const char *hook = getenv("CLATTN_TUNE_TEST_STOP_AFTER");
    if (hook) stop_after = atol(hook);
    long fresh_total = 0;
    int result = CLI_OK;
    for (size_t i = 0; i < count; ++i) {
        class_outcome *o = &classes[i];
        const clattn_tune_op *op = o->op;
        const char *hash = o->hash;
        clattn_tuning_query p;
        clattn_tune_class_problem(op, &o->cls, &p);
        tune_space sp;
        char why[256];
        if (!tune_space_build(&sp, op, cli_value(&cmd, "space"), &info, &p, why, sizeof why)) {
            result = cli_error(CMD, CLI_USAGE, "%s", why);
            break;
        }
        o->space = sp.count;
        o->pruned = sp.pruned;
        clattn_tune_config start_config;
        clattn_tune_op_default(op, &info, &p, &start_config);
        tune_session ss = {.deadline = deadline, .repeat = repeat, .warmup = warmup, .budget = budget};
        ss.self = self;
        ss.device = device;
        ss.log_path = log_path;
        ss.source_hash = hash;
        ss.space = &sp.space;
        ss.cls = o->cls;
        snprintf(ss.cls_text, sizeof ss.cls_text, "%s", o->text);
        ss.candidate_timeout = (double)timeout;
        ss.stop_after = stop_after > 0 ? stop_after - fresh_total : 0;
        if (stop_after > 0 && ss.stop_after <= 0) ss.stop_after = 1;
        ss.quiet = cli_flag(&cmd, "quiet");
        tune_session_open(&ss);
        if (cli_flag(&cmd, "fresh")) ss.record_count = 0;
        printf("%s: %zu candidates (%zu other combinations ruled out by the kernel's constraints and the device's "
               "limits)\n",
               o->text, sp.count, sp.pruned);
        fflush(stdout);
        if (record) {
            /* The whole table, nothing stored: a recording is for --replay, not for the database. */
            const bool written = tune_record_table(&ss, &sp, &start_config, rounds, &info, record);
            if (written) printf("table of %zu points x %ld rounds written to %s\n", sp.count, rounds, record);
            tune_session_close(&ss);
            tune_space_free(&sp);
            free(log_path);
            clattn_context_free(ctx);
            return written ? CLI_OK : CLI_FAILED;
        }
        tune_search(&ss, &sp, strategy, &start_config, (unsigned)seed);
        fresh_total += ss.fresh;
        o->done = true;
        o->evaluations = ss.evaluations;
        o->failures = ss.failures;
        for (size_t j = 0; j < ss.record_count; ++j)
            if (clattn_tune_config_equal(&sp.space, &ss.records[j].config, &start_config) &&
                ss.records[j].result.status == TUNE_OK) {
                o->have_default = true;
                o->default_ms = ss.records[j].result.ms;
            }
        if (ss.have_best) {
            o->have_best = true;
            o->best_ms = ss.best_ms;
            clattn_tune_config_format(&sp.space, &ss.best, o->best, sizeof o->best);
            /* The first class of each operation, phase, set of score modifiers and serving format in this run is
             * also that phase's device default (for calls with those). */
            bool phase_default = true;
            for (size_t j = 0; j < i; ++j)
                if (classes[j].stored && classes[j].op == op && classes[j].cls.phase == o->cls.phase &&
                    classes[j].cls.mods == o->cls.mods && classes[j].cls.kv_layout == o->cls.kv_layout &&
                    classes[j].cls.kv_dtype == o->cls.kv_dtype)
                    phase_default = false;
            if (!store(db_path, &info, hash, o, phase_default))
                result = CLI_FAILED;
            else
                o->stored = true;
        } else {
            result = CLI_FAILED;
        }
        const bool out_of_time = deadline > 0 && tune_now() >= deadline;
        tune_session_close(&ss);
        tune_space_free(&sp);
        if (out_of_time) {
            fprintf(stderr, "clattn tune: the time limit is reached; the best results so far are written\n");
            break;
        }
    }
    if (cli_flag(&cmd, "clblast") && !(deadline > 0 && tune_now() >= deadline)) {
        tune_clblast_options co;
        memset(&co, 0, sizeof co);
        co.self = self;
        co.device = device;
        co.log_path = log_path;
        co.shapes =
            cli_value(&cmd, "clblast-shapes") ? cli_value(&cmd, "clblast-shapes") : TUNE_CLBLAST_DEFAULT_SHAPES;
        co.info = &info;
        co.candidate_timeout = (double)timeout;
        co.deadline = deadline;
        co.repeat = repeat;
        co.warmup = warmup;
        co.budget = budget;
        co.quiet = cli_flag(&cmd, "quiet");
        co.fresh = cli_flag(&cmd, "fresh");
        clattn_clblast_params section;
        double default_ms = 0;
        char best[CLATTN_TUNE_PARAMS_TEXT];
        int crc = tune_clblast_run(&co, &section, &default_ms, best, sizeof best);
        if (crc == CLI_OK) {
            if (!store_clblast(db_path, &info, &section)) crc = CLI_FAILED;
            char def[32] = "-", up[32] = "-";
            if (default_ms > 0) snprintf(def, sizeof def, "%.3f", default_ms);
            if (default_ms > 0) snprintf(up, sizeof up, "%.2fx", default_ms / section.ms);
            printf("\nCLBlast GEMMs %s: default %s ms, best %.3f ms, speed-up %s: %s\n", section.shapes, def,
                   section.ms, up, best);
            for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k) {
                char text[CLATTN_TUNE_PARAMS_TEXT];
                if (!section.given[k]) continue;
                clattn_clblast_format(k, section.values[k], text, sizeof text);
                printf("  %-12s %s\n", clattn_clblast_kernel_at(k)->name, text);
            }
        } else {
            fprintf(stderr, "clattn tune: no CLBlast candidate worked; nothing stored for CLBlast\n");
        }
        if (crc != CLI_OK) result = crc;
    }
    print_table(classes, count);
    printf("\n%ld new evaluations in %.0f s; log %s\n", fresh_total, tune_now() - start, log_path);
    free(log_path);
    clattn_context_free(ctx);
    return result;
}
