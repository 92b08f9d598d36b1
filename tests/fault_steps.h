// SPDX-License-Identifier: Apache-2.0
/* Fault injection for the tests of whole calls (test_faults, test_seq2seq): fail each device operation of a call
 * in turn and require a clean failure every time. */
#ifndef CLATTN_TEST_FAULT_STEPS_H
#define CLATTN_TEST_FAULT_STEPS_H

#include "test_util.h"

/* One run of the call under test: 0 on success, else nonzero with a message in err[size]. */
typedef int (*fault_call)(clattn_context *ctx, const void *arg, char *err, size_t size);

/* Fails operation 1, 2, ... (below max_steps) of call(ctx, arg) until a run gets through with the fault unused.
 * Each failure must be a CL out-of-resources, allocation or CLBlast error (with a message in the context's last
 * error where need_message), leave no temporary buffer alive, and leave the context usable: the same call then
 * succeeds. Returns the number of operations the call has. */
int fail_each_step(clattn_context *ctx, fault_call call, const void *arg, long max_steps, bool need_message);

#endif
