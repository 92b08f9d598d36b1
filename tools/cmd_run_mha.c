/* placeholder: `clattn run mha` is being written (issue 4). */
#include "cli.h"

int cmd_run_mha(int argc, char **argv) {
    return cli_error("run mha", CLI_USAGE, "not implemented yet");
}
