/* placeholder: `clattn run additive|luong` is being written (issue 4). */
#include "cli.h"

int cmd_run_additive(int argc, char **argv) {
    return cli_error("run additive", CLI_USAGE, "not implemented yet");
}

int cmd_run_luong(int argc, char **argv) {
    return cli_error("run luong", CLI_USAGE, "not implemented yet");
}
