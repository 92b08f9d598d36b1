// SPDX-License-Identifier: Apache-2.0
/* The validated description of one attention call ("plan"), shared by the fused and unfused implementations, and
 * the helpers both use to enqueue work in order after the caller's events. */
#ifndef CLATTN_SDPA_INTERNAL_H
#define CLATTN_SDPA_INTERNAL_H

#include "internal.h"

enum { CLA_MASK_NONE = 0, CLA_MASK_ADDITIVE = 1, CLA_MASK_BOOL = 2 };
/* Where a call's keys and values are (kernels_cl/common.cl's KV_LAYOUT). */
enum { CLA_KV_DENSE = 0, CLA_KV_PACKED = 1, CLA_KV_PAGED = 2, CLA_KV_DENSE_LENGTHS = 3 };

typedef struct cla_sdpa_plan {
    size_t batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    float scale;
    clattn_causal causal;
    int64_t window_left, window_right;
    /* Resolved: TOP_LEFT or BOTTOM_RIGHT, where the window and ALiBi place a query (never DEFAULT). */
    clattn_window_align window_align;
    int mask_kind;
    clattn_tensor q, k, v, out;
    clattn_tensor mask; /* strides of broadcast (size-1) dims are set to 0 */
    cl_mem key_lengths;
    size_t key_lengths_offset;
    clattn_tensor lse;     /* buffer NULL when not requested */
    clattn_tensor weights; /* buffer NULL when not requested */
    /* Score modifiers: softcap 0 for none; sinks and ALiBi slopes F32 [1, Hq, 1, 1], buffer NULL when absent. */
    float softcap;
    clattn_tensor sinks, alibi_slopes;
    /* The caller's score_mod and mask_mod (NULL: none) and their buffers (sdpa_mods.c). */
    const char *score_mod, *mask_mod;
    clattn_mod_buffer mod_buffers[CLATTN_MAX_MOD_BUFFERS];
    size_t mod_buffer_count;
    /* The block mask (sdpa_block_mask.c): I32, strides of broadcast dims 0, buffer NULL without; its block sizes.
     */
    clattn_tensor block_mask;
    size_t block_q, block_k;
    clattn_impl impl; /* resolved: FUSED or UNFUSED */
    /* The batch and query heads of the whole call. A part of a call split over devices (sdpa_split.c) has fewer,
     * but chooses its kernel parameters (tuning class, key splits) by these, so that every part runs exactly what
     * one device would and the results are bitwise the same. */
    size_t whole_batch, whole_heads;
    /* The serving formats (sdpa_seqs.c): packed queries, packed, paged or length-limited dense keys and values with
     * their host index arrays (batch is then seq_count, q_len and kv_len the longest sequences), and the scales of
     * 8-bit K and V (buffer NULL without; strides of broadcast dims 0). */
    bool varlen_q;
    int kv_layout;
    size_t seq_count, page_size, block_table_stride;
    const int32_t *cu_q, *cu_k, *block_table, *seqlens_k;
    clattn_tensor k_scale, v_scale;
} cla_sdpa_plan;

/* sdpa_seqs.c: whether a desc asks for a serving format, and whether a plan has one (packed or paged); whether a
 * dtype is 8-bit key/value storage. */
bool cla_sdpa_desc_has_seqs(const clattn_sdpa_desc *d);
/* cu_seqlens of `count` sequences over a tensor of `total` rows: from 0, never decreasing, ending at most at total.
 * Sets the longest sequence. */
clattn_status cla_check_cu_seqlens(clattn_context *ctx, const char *name, const int32_t *cu, size_t count,
                                   size_t total, size_t *longest);
bool cla_sdpa_has_seqs(const cla_sdpa_plan *p);
bool cla_is_kv8_dtype(clattn_dtype d);
/* Checks the shapes of a packed or paged call and its index arrays (every index), and sets the plan's layout,
 * q_len and kv_len (the longest sequences) and index arrays. */
clattn_status cla_sdpa_check_seq_shapes(clattn_context *ctx, const clattn_sdpa_desc *d, const clattn_tensor *q,
                                        const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                                        cla_sdpa_plan *p);
/* One scale tensor `name` (desc->name in messages) of a K or V tensor `of` stored as of_dtype (kv its view):
 * required for 8-bit storage and refused for any other, F32 or F16, broadcasting to [kv.size[0], Hkv, kv.size[2],
 * 1]. Size-1 dimensions get stride 0; checked as an input into r (name, buffer, byte range). Shared with
 * clattn_kv_append. */
clattn_status cla_check_kv_scale(clattn_context *ctx, const char *name, const char *of, clattn_dtype of_dtype,
                                 clattn_tensor *s, const clattn_tensor *kv, cla_range *r);
/* Checks the scales of 8-bit K and V into the plan (and their byte ranges into ranges[*n], counting them). */
clattn_status cla_sdpa_check_scales(clattn_context *ctx, const clattn_sdpa_desc *d, cla_sdpa_plan *p,
                                    cla_range *ranges, size_t *n);
/* The -D options of the plan's serving formats (empty without); returns the length written. */
int cla_sdpa_seq_defines(const cla_sdpa_plan *p, char *out, size_t size);
/* What the CPU kernel's work list for packed queries (cla_seq_work_at in kernels_cl/common.cl) is made of: groups
 * of block_rows query rows of one head (0: no list), with a counter for each of `splits` key splits; the list's
 * length comes back in `groups`. */
typedef struct {
    size_t block_rows, splits, groups;
} cla_work_list;

/* The device copy of the plan's index arrays (a temporary; NULL without) and their offsets as the kernels'
 * seq_at; with packed queries, also the work list `work` asks for (NULL: none). */
clattn_status cla_sdpa_seq_buffer(clattn_context *ctx, const cla_sdpa_plan *p, cla_work_list *work, cl_mem *buffer,
                                  cl_int4 *at);

/* sdpa_mods.c: checks desc's score_mod, mask_mod and mod buffers into the plan (adding the buffers' ranges for the
 * overlap check); whether the plan has either; and the program prefix that compiles them in (NULL without them). */
clattn_status cla_sdpa_check_user_mods(clattn_context *ctx, const clattn_sdpa_desc *desc, cla_sdpa_plan *p,
                                       cla_range *ranges, size_t *n);
bool cla_sdpa_has_user_mods(const cla_sdpa_plan *p);
clattn_status cla_sdpa_mod_prefix(clattn_context *ctx, const cla_sdpa_plan *p, char **prefix);
/* Adds the caller's expressions, as the compiler's log names them, to a build failure's message. */
void cla_sdpa_frame_mods(clattn_context *ctx, const cla_sdpa_plan *p);

/* sdpa_block_mask.c: checks desc's block mask and block sizes into the plan (after its shapes, adding the mask's
 * range for the overlap check); the kernels' bm_dims argument (the block sizes). */
clattn_status cla_sdpa_check_block_mask(clattn_context *ctx, const clattn_sdpa_desc *desc, cla_sdpa_plan *p,
                                        cla_range *ranges, size_t *n);
cl_int4 cla_sdpa_block_dims(const cla_sdpa_plan *p);

/* Enqueues a sequence of commands, each after the previous one (and the first after the caller's events), so the
 * order holds on in-order and out-of-order queues alike. */
typedef struct cla_chain {
    clattn_context *ctx;
    cl_command_queue queue;
    cl_uint wait_count;
    const cl_event *wait_list;
    cl_event last; /* event of the most recent command, owned by the chain */
} cla_chain;

void cla_chain_begin(cla_chain *c, clattn_context *ctx, cl_command_queue queue, cl_uint wait_count,
                     const cl_event *wait_list);
/* The wait list for the next command. */
cl_uint cla_chain_wait_count(const cla_chain *c);
const cl_event *cla_chain_wait_list(const cla_chain *c);
/* Records the event of a command just enqueued (takes ownership). */
void cla_chain_push(cla_chain *c, cl_event e);
/* Makes the next commands wait for everything so far, for enqueuers without a wait list (CLBlast). */
cl_int cla_chain_barrier(cla_chain *c);
/* Hands the final event to the caller (or releases it); with nothing enqueued, enqueues a marker so that the caller
 * still gets an event that completes after its wait list. */
cl_int cla_chain_end(cla_chain *c, cl_event *event);
/* Releases the chain's event after a failure. */
void cla_chain_abort(cla_chain *c);

/* Enqueues a kernel in the chain; turns enqueue errors into a status with a message. */
clattn_status cla_chain_kernel(clattn_context *ctx, cla_chain *c, cl_kernel k, cl_uint dims, const size_t *global,
                               const size_t *local, const char *what);
/* The same over a part of the grid that starts at `offset` (a global work offset). */
clattn_status cla_chain_kernel_at(clattn_context *ctx, cla_chain *c, cl_kernel k, cl_uint dims,
                                  const size_t *offset, const size_t *global, const size_t *local,
                                  const char *what);
/* Copies view src into view dst of the same sizes and element size, bit for bit (kernels_cl/copy.cl), in the chain;
 * `what` names the copy in messages. */
clattn_status cla_chain_copy_view(clattn_context *ctx, cla_chain *c, const clattn_tensor *src,
                                  const clattn_tensor *dst, const char *what);

/* The caller's queue and wait list of an operation: a queue (NULL means the context's) must belong to the context,
 * and a nonzero wait count needs a wait list. */
clattn_status cla_check_queue(clattn_context *ctx, cl_command_queue queue, cl_uint num_wait,
                              const cl_event *wait_list);

/* One kernel argument by name: the host's values of a kernel's arguments, set by the names of its argument list (a
 * tunable family's cla_tune_op.args, or a cla_kernel_args below) in any order, so that adding an argument is a
 * line in the kernel, a name in its list and a value where it is set, and a missing or extra value is an error. */
typedef struct cla_named_arg {
    const char *name;
    size_t size;
    const void *value;
} cla_named_arg;
#define CLA_NAMED(name, x)                                                                                         \
    { (name), sizeof(x), (const void *)&(x) }
/* Sets argument i of `k` to the value named names[i] (NULL-terminated); every name needs exactly one value. */
clattn_status cla_set_named_args(clattn_context *ctx, cl_kernel k, const char *what, const char *const *names,
                                 const cla_named_arg *args, size_t count);

/* The argument list of a kernel outside the tunable families (kernel_args.c): kernels_cl/<source>.cl declares the
 * kernel under `declared` with these arguments in this order (tests/test_tuning.c reads the signatures). */
typedef struct cla_kernel_args {
    const char *source;
    const char *declared;
    const char *const *names; /* NULL-terminated */
} cla_kernel_args;
extern const cla_kernel_args cla_args_sdpa_combine, cla_args_pack, cla_args_masked_softmax, cla_args_write_out,
    cla_args_copy_view, cla_args_linear_pack, cla_args_linear_bias, cla_args_linear_store, cla_args_kv_append;
/* All of them, NULL-terminated. */
const cla_kernel_args *const *cla_kernel_args_all(void);

/* Checks every argument of clattn_sdpa against the tensors' buffers and fills the plan; nothing is enqueued. */
clattn_status cla_sdpa_validate(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                                cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list,
                                cla_sdpa_plan *plan);

/* clattn_sdpa without CLA_ENTER: for the library's own layers over it (the host form), whose name the messages
 * keep. */
clattn_status cla_sdpa_call(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                            const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                            cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list, cl_event *event);
/* Validates and enqueues one attention call into an existing chain (the layers built on attention use this); the
 * caller owns the chain and the temporary-memory accounting. Enqueues nothing on a validation error. */
clattn_status cla_sdpa_enqueue(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                               const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                               cla_chain *chain);

/* Whether a validated call runs split over the context's devices: more than one device, and at least two batch
 * items or (with one) two key/value head groups. */
bool cla_sdpa_split_wanted(const clattn_context *ctx, const cla_sdpa_plan *plan);
/* Runs a validated call split over the context's devices (sdpa_split.c): each device's part after the chain's
 * events, then a join on the chain's queue (and the copies of outputs that went through temporaries). */
clattn_status cla_sdpa_split(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain);

/* Runs a validated, non-empty plan on the chain's queue with the implementation it chose. */
clattn_status cla_sdpa_run(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain);

/* A mask whose sizes broadcast to [B, H, Lq, Lk] (each 1 or the full size; clattn_mask_broadcasts), F32/F16/BF16
 * additive or BOOL: sets *kind (CLA_MASK_*), makes the strides of broadcast dimensions 0, and fills its byte range.
 * `name` leads the messages. Shared by every operation that takes a mask (seq2seq passes heads 1). */
clattn_status cla_check_mask(clattn_context *ctx, const char *name, clattn_tensor *mask, size_t batch, size_t heads,
                             size_t q_len, size_t kv_len, int *kind, cla_range *r);
/* int32 key lengths [batch] at an element offset: a valid buffer of this context that holds them. */
clattn_status cla_check_key_lengths(clattn_context *ctx, const char *name, cl_mem buffer, size_t offset,
                                    size_t batch, cla_range *r);

/* The implementations. Both expect a validated plan and enqueue nothing on failure before their first command. */
clattn_status cla_sdpa_fused(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain);
clattn_status cla_sdpa_unfused(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain);

/* The -D options that describe a plan's tensors and masks to the kernels (dtypes, mask kind, causal) and, with
 * `head_dims`, the head dims (HEAD_DIM, V_HEAD_DIM), which the fused kernels size their arrays by. */
int cla_sdpa_common_defines(const cla_sdpa_plan *plan, bool head_dims, char *out, size_t size);

/* The score modifiers' kernel arguments (common.cl): the softcap in log2 units, and the element offsets and head
 * strides of the sinks and the ALiBi slopes. */
/* Where a call's window and ALiBi place its queries: `asked`, or for DEFAULT the causal mask's alignment. */
clattn_window_align cla_window_align(clattn_window_align asked, clattn_causal causal);
float cla_sdpa_softcap2(const cla_sdpa_plan *plan);
cl_long4 cla_sdpa_mods(const cla_sdpa_plan *plan);

/* Strides as the kernels take them. */
static inline cl_long4 cla_strides4(const clattn_tensor *t) {
    cl_long4 s;
    for (int i = 0; i < 4; ++i) s.s[i] = (cl_long)t->stride[i];
    return s;
}

#endif
