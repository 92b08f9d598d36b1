// SPDX-License-Identifier: Apache-2.0
/* The clattn command-line program: dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand commands[] = {
    {"devices", cmd_devices, "list OpenCL platforms and devices with their capabilities"},
    {"run", cmd_run, "run one operation on .npy files or random inputs (run sdpa)"},
    {"bench", cmd_bench, "time an operation on the device: ms, GFLOP/s, GB/s, memory (bench sdpa)"},
    {"kernels", cmd_kernels, "export the kernel programs a configuration needs; pack offline-compiled binaries"},
    {"tune", cmd_tune, "find the fastest kernel parameters for this device and store them (tune --show)"},
};

static void print_usage(FILE *out) {
    fprintf(out, "clattn %s: attention on any OpenCL device\n\nUsage: clattn <command> [options]\n\nCommands:\n",
            clattn_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'clattn <command> --help' describes a command's options.\n"
                 "Environment: CLATTN_DEVICE selects the device (gpu, cpu, accelerator, P:D or part of a name);\n"
                 "CLATTN_CACHE=0 turns the on-disk program cache off, CLATTN_CACHE_DIR moves it;\n"
                 "CLATTN_KERNEL_DIR loads kernel sources from a directory instead of the built-in copies;\n"
                 "CLATTN_BINARY_DIR names prebuilt program binaries, CLATTN_COMPILE=0 requires them.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("clattn %s\n", clattn_version_string());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        if (strcmp(commands[i].name, name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "clattn: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return CLI_USAGE;
}
