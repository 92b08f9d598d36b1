// SPDX-License-Identifier: Apache-2.0
/* Option parsing, help text and error reporting shared by every clattn subcommand. */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_print_help(const cli_command *cmd) {
    printf("Usage: clattn %s %s\n\n%s\n\nOptions:\n", cmd->name, cmd->usage, cmd->summary);
    for (size_t i = 0; i < cmd->option_count; ++i) {
        const cli_option *o = &cmd->options[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->value_name ? " " : "",
                 o->value_name ? o->value_name : "");
        printf("  %-24s %s\n", left, o->help);
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

static cli_option *find_option(const cli_command *cmd, const char *name, size_t len) {
    for (size_t i = 0; i < cmd->option_count; ++i)
        if (strlen(cmd->options[i].name) == len && strncmp(cmd->options[i].name, name, len) == 0)
            return &cmd->options[i];
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv) {
    for (int i = 0; i < argc; ++i) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_print_help(cmd);
            return CLI_OK;
        }
        if (strncmp(arg, "--", 2) != 0) {
            /* "-o" is the one short option, an alias of --out where a command has --out. */
            if (strcmp(arg, "-o") == 0 && find_option(cmd, "out", 3)) {
                arg = "--out";
            } else {
                return cli_error(cmd->name, CLI_USAGE, "unexpected argument '%s' (see 'clattn %s --help')", arg,
                                 cmd->name);
            }
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_option *o = find_option(cmd, name, len);
        if (!o)
            return cli_error(cmd->name, CLI_USAGE, "unknown option '%.*s' (see 'clattn %s --help')", (int)(len + 2),
                             arg, cmd->name);
        if (!o->value_name) {
            if (eq) return cli_error(cmd->name, CLI_USAGE, "option --%s takes no value", o->name);
            o->value = "";
        } else if (eq) {
            o->value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return cli_error(cmd->name, CLI_USAGE, "option --%s needs a value (%s)", o->name, o->value_name);
            o->value = argv[++i];
        }
    }
    return -1;
}

const char *cli_value(const cli_command *cmd, const char *name) {
    cli_option *o = find_option(cmd, name, strlen(name));
    return o ? o->value : NULL;
}

bool cli_flag(const cli_command *cmd, const char *name) {
    return cli_value(cmd, name) != NULL;
}

int cli_error(const char *cmd, int code, const char *fmt, ...) {
    fprintf(stderr, "clattn %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_report_status(const char *cmd, clattn_context *ctx, clattn_status st, const char *what) {
    const char *detail = ctx ? clattn_context_last_error(ctx) : "";
    return cli_error(cmd, CLI_FAILED, "%s failed: %s%s%s", what, clattn_status_string(st), *detail ? "\n" : "",
                     detail);
}

int cli_open_context(const char *cmd, const char *device, bool profiling, clattn_context **ctx) {
    char message[2048] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = device;
    o.enable_profiling = profiling;
    o.error_message = message;
    o.error_message_size = sizeof message;
    clattn_status st = clattn_context_create_with_options(&o, ctx);
    if (st == CLATTN_SUCCESS) return CLI_OK;
    int code = (st == CLATTN_ERROR_NO_DEVICE || st == CLATTN_ERROR_INVALID_DEVICE_SPEC) ? CLI_USAGE : CLI_FAILED;
    return cli_error(cmd, code, "%s\n%s", clattn_status_string(st), message);
}

int cli_parse_dtype(const char *cmd, const char *text, clattn_dtype *dtype) {
    static const clattn_dtype storage[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (size_t i = 0; i < sizeof storage / sizeof storage[0]; ++i)
        if (strcmp(text, clattn_dtype_name(storage[i])) == 0) {
            *dtype = storage[i];
            return CLI_OK;
        }
    return cli_error(cmd, CLI_USAGE, "--dtype %s: expected f32, f16 or bf16", text);
}

int cli_parse_window(const char *cmd, const char *text, int64_t *left, int64_t *right) {
    long long l = 0, r = 0;
    char tail = 0;
    if (sscanf(text, "%lld,%lld%c", &l, &r, &tail) != 2 || l < -1 || r < -1)
        return cli_error(cmd, CLI_USAGE, "--window %s: expected LEFT,RIGHT (each >= 0, or -1 for unbounded)", text);
    *left = l;
    *right = r;
    return CLI_OK;
}

/* top-left or bottom-right, as 1 or 2: the values of both clattn_causal and clattn_window_align. */
static int parse_alignment(const char *cmd, const char *option, const char *text, int *align) {
    if (strcmp(text, "top-left") == 0)
        *align = 1;
    else if (strcmp(text, "bottom-right") == 0)
        *align = 2;
    else
        return cli_error(cmd, CLI_USAGE, "--%s %s: expected top-left or bottom-right", option, text);
    return CLI_OK;
}

int cli_parse_causal(const char *cmd, const char *text, clattn_causal *causal) {
    int align = 0, rc = parse_alignment(cmd, "causal", text, &align);
    if (rc == CLI_OK) *causal = align == 1 ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_BOTTOM_RIGHT;
    return rc;
}

int cli_parse_window_align(const char *cmd, const char *text, clattn_window_align *window_align) {
    int align = 0, rc = parse_alignment(cmd, "window-align", text, &align);
    if (rc == CLI_OK) *window_align = align == 1 ? CLATTN_WINDOW_ALIGN_TOP_LEFT : CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    return rc;
}

int cli_parse_impl(const char *cmd, const char *text, clattn_impl *impl) {
    if (strcmp(text, "fused") == 0)
        *impl = CLATTN_IMPL_FUSED;
    else if (strcmp(text, "unfused") == 0)
        *impl = CLATTN_IMPL_UNFUSED;
    else if (strcmp(text, "auto") == 0)
        *impl = CLATTN_IMPL_AUTO;
    else
        return cli_error(cmd, CLI_USAGE, "--impl %s: expected fused, unfused or auto", text);
    return CLI_OK;
}

int cli_parse_scale(const char *cmd, const char *text, float *scale) {
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v))
        return cli_error(cmd, CLI_USAGE, "--scale %s: expected a number", text);
    *scale = (float)v;
    return CLI_OK;
}

int cli_dispatch(const char *cmd, const char *what, const cli_subcommand *subs, size_t count, int argc,
                 char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *out = argc < 1 ? stderr : stdout;
        fprintf(out, "Usage: clattn %s <%s> [options]\n\n%c%ss:\n", cmd, what, toupper((unsigned char)what[0]),
                what + 1);
        for (size_t i = 0; i < count; ++i) fprintf(out, "  %-10s %s\n", subs[i].name, subs[i].summary);
        fprintf(out, "\n'clattn %s <%s> --help' describes its options.\n", cmd, what);
        return argc < 1 ? CLI_USAGE : CLI_OK;
    }
    char known[256] = "";
    for (size_t i = 0; i < count; ++i) {
        if (strcmp(argv[0], subs[i].name) == 0) return subs[i].run(argc - 1, argv + 1);
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, subs[i].name, sizeof known - strlen(known) - 1);
    }
    return cli_error(cmd, CLI_USAGE, "unknown %s '%s' (known: %s)", what, argv[0], known);
}

void cli_release_buffers(const cl_mem *buffers, size_t count) {
    for (size_t i = 0; i < count; ++i)
        if (buffers[i]) clReleaseMemObject(buffers[i]);
}

bool cli_is_input_error(clattn_status st) {
    /* The index arrays and scales of the serving formats are the caller's input too. */
    return (st <= CLATTN_ERROR_INVALID_ARGUMENT && st >= CLATTN_ERROR_SIZE_OVERFLOW) ||
           (st <= CLATTN_ERROR_INVALID_SEQLENS && st >= CLATTN_ERROR_INVALID_SCALE);
}
