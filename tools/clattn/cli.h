// SPDX-License-Identifier: Apache-2.0
/* Shared pieces of the clattn command-line program: option parsing with generated help, and error reporting.
 * Exit codes: 0 success, 1 a failure while running, 2 a usage error or bad input. */
#ifndef CLATTN_CLI_H
#define CLATTN_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "clattn.h"

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

typedef struct cli_option {
    const char *name;       /* long name without dashes */
    const char *value_name; /* NULL for a flag */
    const char *help;
    const char *value; /* set by cli_parse: the value, or "" for a present flag, NULL if absent */
} cli_option;

/* Options that several commands take with the same meaning, one entry of an options table each. */
/* clang-format off */
#define CLI_OPTION_DEVICE                                                                                           \
    {"device", "SPEC", "device to run on (default: CLATTN_DEVICE, else the first GPU/accelerator/CPU)", NULL}
/* The score modifiers' three options (clattn run sdpa|mha), read by run_load_score_mods. */
#define CLI_OPTIONS_SCORE_MODS                                                                                      \
    {"softcap", "C", "logit softcap (Gemma 2): s = C tanh(s / C) on the scaled logits, C > 0", NULL},              \
        {"sinks", "S.npy", "float32 [Hq] attention-sink logits (gpt-oss): in every row's softmax, no value", NULL},  \
        {"alibi-slopes", "A.npy", "float32 [Hq] ALiBi slopes: -slope[h] |i' - j| added to the scaled logits", NULL}
/* The caller's mods (clattn_sdpa_desc.score_mod, mask_mod, mod_buffers; loaded by run_load_mod_buffers). */
#define CLI_OPTIONS_USER_MODS                                                                                       \
    {"score-mod", "EXPR",                                                                                          \
     "OpenCL C expression for the new logit, of score (natural units), b, h, q_idx, kv_idx and mod buffers",       \
     NULL},                                                                                                        \
        {"mask-mod", "EXPR", "OpenCL C expression of b, h, q_idx, kv_idx and mod buffers: nonzero keeps the key",  \
         NULL},                                                                                                    \
        {"mod-buffer", "NAME=F.npy[,...]", "float32 or int32 arrays the mods read as NAME[i] (at most 2)", NULL}
#define CLI_OPTION_KEY_LENGTHS_FILE {"key-lengths", "KL.npy", "int32 [B]: keys past each length are masked", NULL}
#define CLI_OPTION_MASK_FILE                                                                                        \
    {"mask", "M.npy", "float32 additive or bool mask, rank 1-4, broadcasting to [B, H, Lq, Lk] (true keeps)", NULL}
#define CLI_OPTION_CAUSAL_ALIGN                                                                                     \
    {"causal", "ALIGN", "top-left (PyTorch is_causal) or bottom-right (FlashAttention 2.1+)", NULL}
#define CLI_OPTION_WINDOW                                                                                           \
    {"window", "L,R", "sliding window: keys within L before and R after the (aligned) query, -1 unbounded", NULL}
#define CLI_OPTION_WINDOW_ALIGN                                                                                     \
    {"window-align", "ALIGN", "top-left or bottom-right: where the window and ALiBi place the query (default: as --causal)", NULL}
/* clang-format on */

typedef struct cli_command {
    const char *name;    /* "devices", "run sdpa", ... */
    const char *summary; /* one line */
    const char *usage;   /* after "clattn <name> " */
    cli_option *options;
    size_t option_count;
} cli_command;

/* Parses argv (after the command words). Returns -1 to go on, CLI_OK after printing help, CLI_USAGE after an error
 * message. Positional arguments are not accepted. */
int cli_parse(const cli_command *cmd, int argc, char **argv);
void cli_print_help(const cli_command *cmd);
const char *cli_value(const cli_command *cmd, const char *name);
bool cli_flag(const cli_command *cmd, const char *name);

/* Prints "clattn <cmd>: <message>" to stderr; returns `code`. */
int cli_error(const char *cmd, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Reports a failed library call with its status name and the context's last error. */
int cli_report_status(const char *cmd, clattn_context *ctx, clattn_status st, const char *what);

/* Creates a context on the device that --device (or CLATTN_DEVICE) selects, printing why on failure. */
int cli_open_context(const char *cmd, const char *device, bool profiling, clattn_context **ctx);

/* Option values shared by the commands; each prints its own error and returns CLI_USAGE, or CLI_OK. */
int cli_parse_dtype(const char *cmd, const char *text, clattn_dtype *dtype);            /* f32 | f16 | bf16 */
int cli_parse_window(const char *cmd, const char *text, int64_t *left, int64_t *right); /* L,R with -1 unbounded */
int cli_parse_causal(const char *cmd, const char *text, clattn_causal *causal); /* top-left | bottom-right */
int cli_parse_window_align(const char *cmd, const char *text, clattn_window_align *align); /* the same names */
int cli_parse_impl(const char *cmd, const char *text, clattn_impl *impl); /* fused | unfused | auto */
int cli_parse_scale(const char *cmd, const char *text, float *scale);     /* a finite number */

/* Releases the buffers of an array that are not NULL. */
void cli_release_buffers(const cl_mem *buffers, size_t count);

/* Whether a failed library call means the caller's input was wrong (exit status 2) rather than a device failure. */
bool cli_is_input_error(clattn_status st);

/* One word of a command with several (`clattn run sdpa`, `clattn kernels pack`): the word, a line of help, and
 * what runs it with the arguments after the word. */
typedef struct cli_subcommand {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_subcommand;

/* Runs the subcommand argv[0] names. No word prints the usage to stderr (CLI_USAGE), --help or -h to stdout
 * (CLI_OK); an unknown word is a usage error. `what` is what the words are called ("operation", "action"). */
int cli_dispatch(const char *cmd, const char *what, const cli_subcommand *subs, size_t count, int argc,
                 char **argv);

/* Subcommands. */
int cmd_devices(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_kernels(int argc, char **argv); /* cmd_kernels.c: kernels export | pack */
int cmd_tune(int argc, char **argv);    /* cmd_tune.c; tune_*.c */
/* `clattn bench mha|additive` (cmd_bench_layers.c). */
int cmd_bench_layer(const char *op, int argc, char **argv);
/* `clattn run` operations beyond sdpa, one file each. */
int cmd_run_mha(int argc, char **argv);      /* cmd_run_mha.c */
int cmd_run_additive(int argc, char **argv); /* cmd_run_seq2seq.c */
int cmd_run_luong(int argc, char **argv);    /* cmd_run_seq2seq.c */

#endif
