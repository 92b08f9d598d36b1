/* CLBlast calls, serialised across the whole process. CLBlast 1.5 is not safe to call from several threads at once,
 * even with separate OpenCL contexts: concurrent calls corrupt its internal strings and caches (seen as "CLBlast
 * (unexpected): basic_string::_M_create" and crashes in tests/test_threads.c). clattn promises that separate
 * contexts may be used from separate threads, so every CLBlast call takes one lock. The calls only enqueue work
 * (plus a one-time kernel compile per shape class), so the lock is held briefly. */
#include "blas.h"

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

CLBlastStatusCode cla_blas_sgemm_strided_batched(CLBlastLayout layout, CLBlastTranspose a_transpose,
                                                 CLBlastTranspose b_transpose, size_t m, size_t n, size_t k,
                                                 float alpha, cl_mem a, size_t a_offset, size_t a_ld,
                                                 size_t a_stride, cl_mem b, size_t b_offset, size_t b_ld,
                                                 size_t b_stride, float beta, cl_mem c, size_t c_offset,
                                                 size_t c_ld, size_t c_stride, size_t batch_count,
                                                 cl_command_queue *queue, cl_event *event) {
    bool held = blas_lock();
    CLBlastStatusCode s = CLBlastSgemmStridedBatched(layout, a_transpose, b_transpose, m, n, k, alpha, a, a_offset,
                                                     a_ld, a_stride, b, b_offset, b_ld, b_stride, beta, c, c_offset,
                                                     c_ld, c_stride, batch_count, queue, event);
    blas_unlock(held);
    return s;
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
