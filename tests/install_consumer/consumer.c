// SPDX-License-Identifier: Apache-2.0
/* Uses the installed header and library: prints the version and the default device. */
#include <clattn.h>
#include <stdio.h>

int main(void) {
    if (clattn_version_number() != CLATTN_VERSION_NUMBER) return 1;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(NULL, &ctx);
    if (st != CLATTN_SUCCESS) {
        fprintf(stderr, "%s\n", clattn_status_string(st));
        return 1;
    }
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    printf("clattn %s on %s\n", clattn_version_string(), info.name);
    clattn_context_free(ctx);
    return 0;
}
