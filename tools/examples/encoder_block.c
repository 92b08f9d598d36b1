// SPDX-License-Identifier: Apache-2.0
/* Worked example: the self-attention half of a Transformer encoder block, out = x + MHA(x), on a padded batch of
 * two sentences (6 and 4 tokens), with clattn_mha on device buffers. The result is checked against a plain C
 * computation of the same layer; the exit status is nonzero on a mismatch. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { B = 2, L = 6, D_MODEL = 32, HEADS = 4, HEAD_DIM = 8, N = HEADS * HEAD_DIM };

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) - 0.5f; /* [-0.5, 0.5) */
}

static void fill(float *a, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; ++i) a[i] = frand(seed);
}

/* y[L, n] = x[L, k] W[k, n] + b[n], the convention clattn uses (a PyTorch nn.Linear weight is W transposed). */
static void linear(const float *x, const float *w, const float *b, int k, int n, double *y) {
    for (int i = 0; i < L; ++i)
        for (int j = 0; j < n; ++j) {
            double s = b[j];
            for (int t = 0; t < k; ++t) s += (double)x[i * k + t] * w[t * n + j];
            y[i * n + j] = s;
        }
}

/* The same layer on the CPU, one sentence at a time: keys past `length` are padding and get no attention. */
static void encoder_self_attention_cpu(const float *x, int length, const clattn_mha_weights_host *w, double *out) {
    double q[L * N], k[L * N], v[L * N], att[L * N];
    linear(x, w->w_q, w->b_q, D_MODEL, N, q);
    linear(x, w->w_k, w->b_k, D_MODEL, N, k);
    linear(x, w->w_v, w->b_v, D_MODEL, N, v);
    for (int h = 0; h < HEADS; ++h)
        for (int i = 0; i < L; ++i) {
            double p[L], max = -INFINITY, sum = 0.0;
            for (int j = 0; j < length; ++j) {
                double s = 0.0;
                for (int d = 0; d < HEAD_DIM; ++d) s += q[i * N + h * HEAD_DIM + d] * k[j * N + h * HEAD_DIM + d];
                p[j] = s / sqrt((double)HEAD_DIM);
                if (p[j] > max) max = p[j];
            }
            for (int j = 0; j < length; ++j) sum += p[j] = exp(p[j] - max);
            for (int d = 0; d < HEAD_DIM; ++d) {
                double o = 0.0;
                for (int j = 0; j < length; ++j) o += p[j] / sum * v[j * N + h * HEAD_DIM + d];
                att[i * N + h * HEAD_DIM + d] = o;
            }
        }
    for (int i = 0; i < L; ++i)
        for (int c = 0; c < D_MODEL; ++c) {
            double s = w->b_o[c] + x[i * D_MODEL + c]; /* bias and residual */
            for (int t = 0; t < N; ++t) s += att[i * N + t] * w->w_o[t * D_MODEL + c];
            out[i * D_MODEL + c] = s;
        }
}

int main(void) {
    static float x[B * L * D_MODEL], out[B * L * D_MODEL];
    static float w_q[D_MODEL * N], w_k[D_MODEL * N], w_v[D_MODEL * N], w_o[N * D_MODEL];
    static float b_q[N], b_k[N], b_v[N], b_o[D_MODEL];
    const cl_int lengths[B] = {6, 4}; /* the second sentence is padded with two tokens */
    unsigned seed = 2024;
    fill(x, sizeof x / sizeof x[0], &seed);
    fill(w_q, sizeof w_q / sizeof w_q[0], &seed);
    fill(w_k, sizeof w_k / sizeof w_k[0], &seed);
    fill(w_v, sizeof w_v / sizeof w_v[0], &seed);
    fill(w_o, sizeof w_o / sizeof w_o[0], &seed);
    fill(b_q, N, &seed);
    fill(b_k, N, &seed);
    fill(b_v, N, &seed);
    fill(b_o, D_MODEL, &seed);

    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(NULL, &ctx); /* the default device, or CLATTN_DEVICE */
    if (st != CLATTN_SUCCESS) {
        fprintf(stderr, "no OpenCL device: %s\n", clattn_status_string(st));
        return 1;
    }

    /* The layer's weights are uploaded once and reused by every call. */
    clattn_mha_config config = {0};
    config.d_model = D_MODEL;
    config.heads = HEADS;
    config.head_dim = HEAD_DIM;
    clattn_mha_weights_host host;
    clattn_mha_weights_host_init(&host);
    host.w_q = w_q;
    host.w_k = w_k;
    host.w_v = w_v;
    host.w_o = w_o;
    host.b_q = b_q; /* biases are optional: leave NULL for none */
    host.b_k = b_k;
    host.b_v = b_v;
    host.b_o = b_o;
    clattn_mha_weights *weights = NULL;
    st = clattn_mha_weights_create(ctx, &config, &host, &weights);

    /* Activations [B, L, d_model] and the key lengths live in device buffers. */
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue queue = clattn_context_cl_queue(ctx);
    cl_mem x_buf = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof x, x, NULL);
    cl_mem out_buf = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof out, NULL, NULL);
    cl_mem len_buf =
        clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof lengths, (void *)lengths, NULL);
    if (st == CLATTN_SUCCESS) {
        clattn_tensor xt = clattn_tensor_seq(x_buf, CLATTN_DTYPE_F32, B, L, D_MODEL);
        clattn_tensor ot = clattn_tensor_seq(out_buf, CLATTN_DTYPE_F32, B, L, D_MODEL);
        clattn_mha_desc desc;
        clattn_mha_desc_init(&desc);
        desc.residual = 1;                    /* out = x + MHA(x) */
        desc.attention.key_lengths = len_buf; /* padding tokens are never attended to */
        st = clattn_mha(ctx, weights, &desc, &xt, NULL, &ot, queue, 0, NULL, NULL); /* memory NULL: self */
    }
    if (st == CLATTN_SUCCESS && clEnqueueReadBuffer(queue, out_buf, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL))
        st = CLATTN_ERROR_INTERNAL;
    if (st != CLATTN_SUCCESS)
        fprintf(stderr, "clattn_mha failed: %s\n%s\n", clattn_status_string(st), clattn_context_last_error(ctx));

    /* Compare every sentence with the plain C layer. */
    double worst = 0.0;
    for (int b = 0; b < B && st == CLATTN_SUCCESS; ++b) {
        static double want[L * D_MODEL];
        encoder_self_attention_cpu(x + b * L * D_MODEL, lengths[b], &host, want);
        for (int i = 0; i < L * D_MODEL; ++i) {
            double e = fabs(out[b * L * D_MODEL + i] - want[i]);
            if (!(e <= worst)) worst = e;
        }
    }
    if (st == CLATTN_SUCCESS) printf("encoder self-attention: largest difference from plain C %.3g\n", worst);

    clReleaseMemObject(x_buf);
    clReleaseMemObject(out_buf);
    clReleaseMemObject(len_buf);
    clattn_mha_weights_free(weights);
    clattn_context_free(ctx);
    return st == CLATTN_SUCCESS && worst < 1e-4 ? 0 : 1;
}
