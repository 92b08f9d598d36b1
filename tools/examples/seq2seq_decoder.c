// SPDX-License-Identifier: Apache-2.0
/* A sequence-to-sequence decoder loop with additive (Bahdanau) attention over an encoder's states.
 *
 * The encoder states stay on the device for the whole sequence; at each step the decoder sends its state (one query
 * per batch item), clattn computes the attention context over the encoder states, and the decoder updates its state
 * from the context (a toy recurrent update in plain C standing in for a real decoder cell). Every context is
 * checked against a plain C computation of the same formula; the program exits nonzero on a mismatch.
 *
 * Build: cc seq2seq_decoder.c $(pkg-config --cflags --libs clattn) -lm */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 2, SRC_LEN = 12, HID = 16, ATTN = 24, STEPS = 5 };

static float rnd(unsigned *s) { /* uniform in [-1, 1) */
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

/* The same attention in plain C: e_j = v . tanh(W_q s + b + W_k h_j), alpha = softmax(e), context = sum alpha_j
 * h_j.
 */
static void attention_in_c(const float *s, const float *enc, const float *wq, const float *wk, const float *v,
                           const float *bias, float *context) {
    float e[SRC_LEN], emax = -INFINITY, sum = 0.0f;
    for (int j = 0; j < SRC_LEN; ++j) {
        e[j] = 0.0f;
        for (int a = 0; a < ATTN; ++a) {
            float x = bias[a];
            for (int c = 0; c < HID; ++c) x += s[c] * wq[c * ATTN + a] + enc[j * HID + c] * wk[c * ATTN + a];
            e[j] += v[a] * tanhf(x);
        }
        emax = fmaxf(emax, e[j]);
    }
    for (int j = 0; j < SRC_LEN; ++j) sum += e[j] = expf(e[j] - emax);
    for (int c = 0; c < HID; ++c) {
        context[c] = 0.0f;
        for (int j = 0; j < SRC_LEN; ++j) context[c] += e[j] / sum * enc[j * HID + c];
    }
}

#define CHECK(call)                                                                                                \
    do {                                                                                                           \
        clattn_status st_ = (call);                                                                                \
        if (st_ != CLATTN_SUCCESS) {                                                                               \
            fprintf(stderr, "%s failed: %s\n%s\n", #call, clattn_status_string(st_),                               \
                    ctx ? clattn_context_last_error(ctx) : "");                                                    \
            return 1;                                                                                              \
        }                                                                                                          \
    } while (0)

int main(void) {
    clattn_context *ctx = NULL;
    CHECK(clattn_context_create(NULL, &ctx));

    /* Random encoder states and attention weights (in a real model: the encoder's output and trained weights). */
    static float enc[BATCH * SRC_LEN * HID], wq[HID * ATTN], wk[HID * ATTN], v[ATTN], bias[ATTN];
    static float state[BATCH * HID], context[BATCH * HID], expected[HID];
    unsigned seed = 42;
    for (int i = 0; i < BATCH * SRC_LEN * HID; ++i) enc[i] = rnd(&seed);
    for (int i = 0; i < HID * ATTN; ++i) wq[i] = rnd(&seed) * 0.3f, wk[i] = rnd(&seed) * 0.3f;
    for (int i = 0; i < ATTN; ++i) v[i] = rnd(&seed), bias[i] = rnd(&seed) * 0.1f;
    for (int i = 0; i < BATCH * HID; ++i) state[i] = rnd(&seed);

    /* The weights go to the device once. */
    clattn_seq2seq_config config = {CLATTN_SCORE_ADDITIVE, HID, HID, ATTN};
    clattn_seq2seq_weights_host host = {.w_q = wq, .w_k = wk, .v = v, .bias = bias};
    clattn_seq2seq_weights *weights = NULL;
    CHECK(clattn_seq2seq_weights_create(ctx, &config, &host, &weights));

    /* Device buffers: the encoder states (uploaded once), the decoder state and the context of one step. */
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue queue = clattn_context_cl_queue(ctx);
    cl_int err = CL_SUCCESS;
    cl_mem enc_buf = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof enc, enc, &err);
    cl_mem state_buf = clCreateBuffer(cl, CL_MEM_READ_ONLY, sizeof state, NULL, &err);
    cl_mem context_buf = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof context, NULL, &err);
    cl_mem proj_buf = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof(float) * BATCH * SRC_LEN * ATTN, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "creating buffers failed: %d\n", err);
        return 1;
    }
    clattn_tensor keys = clattn_tensor_seq(enc_buf, CLATTN_DTYPE_F32, BATCH, SRC_LEN, HID);
    clattn_tensor query = clattn_tensor_seq(state_buf, CLATTN_DTYPE_F32, BATCH, 1, HID);
    clattn_tensor ctx_out = clattn_tensor_seq(context_buf, CLATTN_DTYPE_F32, BATCH, 1, HID);
    clattn_seq2seq_desc desc;
    clattn_seq2seq_desc_init(&desc); /* no mask, no key lengths, no weights output */
    /* The encoder states' part of the score, enc W_k, is the same at every step: project it once. */
    desc.key_projection = clattn_tensor_seq(proj_buf, CLATTN_DTYPE_F32, BATCH, SRC_LEN, ATTN);
    CHECK(clattn_seq2seq_project_keys(ctx, weights, &keys, &desc.key_projection, NULL, 0, NULL, NULL));

    int mismatches = 0;
    for (int step = 0; step < STEPS; ++step) {
        /* One decoder step: the state is the query; the encoder states are the keys and the values. */
        clEnqueueWriteBuffer(queue, state_buf, CL_FALSE, 0, sizeof state, state, 0, NULL, NULL);
        CHECK(clattn_seq2seq_attention(ctx, weights, &desc, &query, &keys, NULL, &ctx_out, NULL, 0, NULL, NULL));
        clEnqueueReadBuffer(queue, context_buf, CL_TRUE, 0, sizeof context, context, 0, NULL, NULL);

        for (int b = 0; b < BATCH; ++b) {
            attention_in_c(state + b * HID, enc + b * SRC_LEN * HID, wq, wk, v, bias, expected);
            for (int c = 0; c < HID; ++c)
                if (fabsf(context[b * HID + c] - expected[c]) > 1e-4f * (1.0f + fabsf(expected[c]))) {
                    fprintf(stderr, "step %d, batch %d, context[%d] = %g, expected %g\n", step, b, c,
                            context[b * HID + c], expected[c]);
                    ++mismatches;
                }
        }
        /* The toy decoder cell: the next state mixes the current state and the context. */
        for (int i = 0; i < BATCH * HID; ++i) state[i] = tanhf(0.5f * state[i] + context[i]);
        printf("step %d: context[0][0..3] = %.4f %.4f %.4f %.4f\n", step, context[0], context[1], context[2],
               context[3]);
    }

    clReleaseMemObject(enc_buf);
    clReleaseMemObject(state_buf);
    clReleaseMemObject(context_buf);
    clReleaseMemObject(proj_buf);
    clattn_seq2seq_weights_free(weights);
    clattn_context_free(ctx);
    if (mismatches) {
        fprintf(stderr, "%d mismatches against the plain C computation\n", mismatches);
        return 1;
    }
    printf("all %d steps match the plain C computation\n", STEPS);
    return 0;
}
