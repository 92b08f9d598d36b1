// SPDX-License-Identifier: Apache-2.0
/* `clattn tune --clblast` (tune_clblast.c): the search over CLBlast's GEMM parameters and its worker. */
#ifndef CLATTN_TUNE_CLBLAST_H
#define CLATTN_TUNE_CLBLAST_H

#include "tune.h"

/* The worker's class text: this prefix, then the shapes ("clblast:512x1536x512,512x512x512"). */
#define TUNE_CLBLAST_CLASS_PREFIX "clblast:"
/* The projections of a layer with d_model 512 over 512 tokens: Q|K|V packed (n = 3 * 512) and one projection (Q
 * alone, or the output), which CLBlast's routine sends to its indirect and its direct kernel respectively. */
#define TUNE_CLBLAST_DEFAULT_SHAPES "512x1536x512,512x512x512"

typedef struct tune_clblast_options {
    const char *self, *device, *log_path, *shapes;
    const clattn_device_info *info;
    double candidate_timeout, deadline;
    long repeat, warmup, budget;
    bool quiet, fresh;
} tune_clblast_options;

/* Runs the search; on success fills the section to store (no kernel given if CLBlast's own parameters were
 * fastest), the default's time (0 if unmeasured) and the best candidate's text. */
int tune_clblast_run(const tune_clblast_options *o, clattn_clblast_params *out, double *default_ms, char *best_text,
                     size_t best_size);
/* `clattn tune --worker` for a class that starts with TUNE_CLBLAST_CLASS_PREFIX. */
int tune_clblast_worker(int argc, char **argv);

#endif
