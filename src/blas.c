// SPDX-License-Identifier: Apache-2.0
/* CLBlast calls, serialised across the whole process. CLBlast 1.5 is not safe to call from several threads at once,
 * even with separate OpenCL contexts: concurrent calls corrupt its internal strings and caches (seen as "CLBlast
 * (unexpected): basic_string::_M_create" and crashes in tests/test_threads.c). clattn promises that separate
 * contexts may be used from separate threads, so every CLBlast call takes one lock. The calls only enqueue work
 * (plus a one-time kernel compile per shape class), so the lock is held briefly. */
#include "blas.h"

#include <stdlib.h>
#include <threads.h>

static once_flag lock_once = ONCE_FLAG_INIT;
static mtx_t lock;
static bool lock_ok;

static void make_lock(void) {
    lock_ok = mtx_init(&lock, mtx_plain) == thrd_success;
}

/* Takes the lock; false (and no lock held) only if the lock could not be created, in which case the call runs
 * unserialised rather than not at all. */
static bool blas_lock(void) {
    call_once(&lock_once, make_lock);
    return lock_ok && mtx_lock(&lock) == thrd_success;
}

static void blas_unlock(bool held) {
    if (held) mtx_unlock(&lock);
}

/* Rows and the row length of a GEMM operand as it lies in memory: `lines` lines of `line` elements, `ld` apart. */
typedef struct stored_matrix {
    size_t lines, line, offset, ld, stride;
} stored_matrix;

/* A row-major rows x cols operand, stored transposed or not. */
static stored_matrix stored(bool transposed, size_t rows, size_t cols, size_t offset, size_t ld, size_t stride) {
    return (stored_matrix){transposed ? cols : rows, transposed ? rows : cols, offset, ld, stride};
}

/* CLBlast 1.5's strided-batched GEMM, on its indirect path (large products), reads an operand in place when the
 * operand's sizes are multiples of the kernel's tiles and its leading dimension is tight, and its batched kernel
 * then addresses matrix t at t * rows * ld from the start of the buffer: the operand's offset and batch stride are
 * dropped without an error (XgemmStridedBatched::BatchedGemmIndirect tests neither, unlike Xgemm's NoTempBuffer).
 * A broadcast weight (stride 0) or the second head of a chunk is then read from the wrong place. Such an operand is
 * "at risk"; the tile multiples depend on the device's parameters, so only the tight leading dimension is tested.
 */
static bool at_risk(const stored_matrix *s, size_t batch) {
    if (s->ld != s->line) return false; /* never read in place: CLBlast copies it and honours both */
    return s->offset != 0 || (batch > 1 && s->stride != s->lines * s->ld);
}

/* Ends a run of several CLBlast calls with one event that completes after all of them. */
static CLBlastStatusCode join_events(cl_command_queue queue, cl_event *events, size_t count, cl_event *event) {
    cl_int err = CL_SUCCESS;
    if (event) err = clEnqueueMarkerWithWaitList(queue, (cl_uint)count, events, event);
    for (size_t i = 0; i < count; ++i) clReleaseEvent(events[i]);
    return err == CL_SUCCESS ? CLBlastSuccess : (CLBlastStatusCode)err;
}

CLBlastStatusCode cla_blas_gemm(const cla_gemm *g, cl_command_queue *queue, cl_event *event) {
    const CLBlastLayout row_major = CLBlastLayoutRowMajor;
    const CLBlastTranspose no = CLBlastTransposeNo, b_trans = g->b_transposed ? CLBlastTransposeYes : no;
    size_t m = g->m, batch = g->batch;
    /* A weight shared by every matrix of the batch (B of stride 0) over A and C rows that follow each other: one
     * GEMM with the batch's rows stacked, which is also what the hardware likes best. */
    if (batch > 1 && g->b_stride == 0 && g->a_stride == m * g->a_ld && g->c_stride == m * g->c_ld) {
        m *= batch;
        batch = 1;
    }
    const stored_matrix ops[3] = {stored(false, m, g->k, g->a_offset, g->a_ld, g->a_stride),
                                  stored(g->b_transposed, g->k, g->n, g->b_offset, g->b_ld, g->b_stride),
                                  stored(false, m, g->n, g->c_offset, g->c_ld, g->c_stride)};
    bool split = false;
    for (int i = 0; i < 3 && batch > 1; ++i) split = split || at_risk(&ops[i], batch);

    bool held = blas_lock();
    CLBlastStatusCode s = CLBlastSuccess;
    if (batch > 1 && !split) {
        s = CLBlastSgemmStridedBatched(row_major, no, b_trans, m, g->n, g->k, g->alpha, g->a, g->a_offset, g->a_ld,
                                       g->a_stride, g->b, g->b_offset, g->b_ld, g->b_stride, g->beta, g->c,
                                       g->c_offset, g->c_ld, g->c_stride, batch, queue, event);
    } else {
        /* CLBlastSgemm honours offsets on every path: a single matrix, or one call per matrix joined into one
         * event. */
        cl_event *events = event && batch > 1 ? calloc(batch, sizeof *events) : NULL;
        size_t done = 0;
        if (event && batch > 1 && !events) s = (CLBlastStatusCode)CL_OUT_OF_HOST_MEMORY;
        for (; done < batch && s == CLBlastSuccess; ++done) {
            cl_event *e = batch == 1 ? event : events ? &events[done] : NULL;
            s = CLBlastSgemm(row_major, no, b_trans, m, g->n, g->k, g->alpha, g->a,
                             g->a_offset + done * g->a_stride, g->a_ld, g->b, g->b_offset + done * g->b_stride,
                             g->b_ld, g->beta, g->c, g->c_offset + done * g->c_stride, g->c_ld, queue, e);
        }
        if (s != CLBlastSuccess && events) --done; /* the failed call left no event */
        if (events) {
            CLBlastStatusCode j = join_events(*queue, events, done, s == CLBlastSuccess ? event : NULL);
            if (s == CLBlastSuccess) s = j;
        }
        free(events);
    }
    blas_unlock(held);
    return s;
}

clattn_status cla_gemm_enqueue(clattn_context *ctx, const cla_gemm *g, cl_command_queue *queue, cl_event *event,
                               const char *what) {
    *event = NULL;
    const CLBlastStatusCode s =
        cla_fault_due(ctx) ? (CLBlastStatusCode)CL_OUT_OF_RESOURCES : cla_blas_gemm(g, queue, event);
    if (s == CLBlastSuccess) return CLATTN_SUCCESS;
    if (*event) clReleaseEvent(*event);
    *event = NULL;
    const bool limit = s == (CLBlastStatusCode)CL_INVALID_WORK_GROUP_SIZE || s == CLBlastInvalidLocalMemUsage;
    return cla_fail(
        ctx, limit ? CLATTN_ERROR_DEVICE_LIMIT : CLATTN_ERROR_CLBLAST,
        "the CLBlast GEMM for %s (m %zu, n %zu, k %zu, lda %zu, ldb %zu, ldc %zu, batch %zu) on '%s' failed "
        "with CLBlast status %d %s%s",
        what, g->m, g->n, g->k, g->a_ld, g->b_ld, g->c_ld, g->batch, ctx->info.name, (int)s,
        cla_blas_status_name(s),
        limit ? " (CLBlast's tuned GEMM parameters exceed the device's work-group or local-memory limits)" : "");
}

CLBlastStatusCode cla_blas_override(cl_device_id device, const char *kernel, size_t count, const char **names,
                                    const size_t *values) {
    bool held = blas_lock();
    CLBlastStatusCode s = CLBlastOverrideParameters(device, kernel, CLBlastPrecisionSingle, count, names, values);
    blas_unlock(held);
    return s;
}

const char *cla_blas_status_name(CLBlastStatusCode s) {
    static const struct {
        CLBlastStatusCode code;
        const char *name;
    } names[] = {
        {CLBlastNotImplemented, "NotImplemented"},
        {CLBlastInvalidMatrixA, "InvalidMatrixA"},
        {CLBlastInvalidMatrixB, "InvalidMatrixB"},
        {CLBlastInvalidMatrixC, "InvalidMatrixC"},
        {CLBlastInvalidDimension, "InvalidDimension"},
        {CLBlastInvalidLeadDimA, "InvalidLeadDimA"},
        {CLBlastInvalidLeadDimB, "InvalidLeadDimB"},
        {CLBlastInvalidLeadDimC, "InvalidLeadDimC"},
        {CLBlastInsufficientMemoryA, "InsufficientMemoryA"},
        {CLBlastInsufficientMemoryB, "InsufficientMemoryB"},
        {CLBlastInsufficientMemoryC, "InsufficientMemoryC"},
        {CLBlastInvalidBatchCount, "InvalidBatchCount"},
        {CLBlastInvalidLocalMemUsage, "InvalidLocalMemUsage"},
        {CLBlastDatabaseError, "DatabaseError"},
        {CLBlastInvalidOverrideKernel, "InvalidOverrideKernel"},
        {CLBlastMissingOverrideParameter, "MissingOverrideParameter"},
        {CLBlastUnknownError, "UnknownError"},
        {CLBlastUnexpectedError, "UnexpectedError"},
    };
    for (size_t i = 0; i < CLA_ARRAY_SIZE(names); ++i)
        if (names[i].code == s) return names[i].name;
    const char *cl = cla_cl_error_name((cl_int)s);
    return cl ? cl : "";
}
