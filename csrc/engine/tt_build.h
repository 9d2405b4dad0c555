/* tt_build.h - what an op builder (ops/<family>.c) sees of the engine: the
 * engine's state and the build helpers of build.c (memory descriptors, values,
 * buffer slots, constant memory, parameters, gradients, adding a primitive).
 *
 * Dependencies: the op files (ops/) -> this header -> build.c; engine.c and plan.c reach
 * the ops only through the op table (ops/tt_ops.h). build.c calls no op and
 * nothing of engine.c or plan.c, so there is no circle.
 *
 * The plan (plan.c) says which ops the requested output needs, every tensor's
 * shape for this (batch, H, W), which tensors die when (liveness), which ADD
 * folds into the conv before it as a sum post-op and which PAD into a conv.
 * Then engine.c calls each needed op's forward builder in execution order, and,
 * for a training engine, each trainable op's backward builder in reverse order.
 * A builder creates the oneDNN primitive(s) for its op and appends steps.
 *
 * Time: op i's forward is built at time i, its backward at time
 * tt_bwd_time(e, i) > n_ops. Buffers of values are "slots": a slot is reused once
 * the value in it is dead (busy_until < now); all slots are allocated after the
 * last op is built. Activations read by a trainable op live forever.
 *
 * Value layouts: a value's oneDNN memory descriptor uses oneDNN's logical dims
 * ({N, C, H, W} for a rank-4 NHWC tensor, the TFLite dims otherwise) and
 * whatever format the producing primitive chose (format_tag_any: usually
 * nChw16c or nhwc). tt_md_plain_like() gives the plain layout of the same dims,
 * whose bytes equal the TFLite row-major tensor.
 */
#ifndef TT_BUILD_H
#define TT_BUILD_H

#include <dnnl.h>
#include <stdbool.h>

#include "engine/tt_engine.h"

#define TT_STEP_MAX_ARGS (TT_MAX_OP_INPUTS + 4)
#define TT_LIVE_FOREVER INT32_MAX
#ifndef TT_MAX_LANES
#define TT_MAX_LANES 16 /* threads that may each run their own micro-batch (tt_engine_run) */
#endif
#ifndef TT_MICRO_BATCH
/* images per chunk for larger batches (see tt_engine_create). 4, not 8: with the lanes each
 * thread runs whole chunks alone, and 4 images' activations sit in a core's share of the cache:
 * f32 +9% at batch 8 and 32 (Zen 4, benchmarks/bench_engine_ab.py, 7 rounds,
 * results/engine_ab_microbatch4.json), bf16 +4%, int8 unchanged, 16 slower (ad hoc). */
#define TT_MICRO_BATCH 4
#endif

typedef struct tt_value {
    tt_shape shape;          /* TFLite shape for this batch / input size */
    dnnl_memory_desc_t md;   /* not owned (engine's md list owns it); oneDNN logical dims */
    dnnl_memory_t mem;       /* not owned (engine's memory list owns it) */
    int32_t slot;            /* buffer slot of its bytes; -1 = the caller's input, -2 = the caller's d_output */
    bool shared;             /* a gradient whose bytes another gradient also views: never written in place */
    float qscale;            /* int8 engine, s8/u8 values: real = qscale * (q - qzp); 0 for real-valued data */
    int32_t qzp;
} tt_value;

typedef struct tt_step tt_step;
typedef void (*tt_c_kernel)(const tt_step *step);

struct tt_step {
    dnnl_primitive_t prim;   /* owned; NULL for a plain-C step */
    tt_c_kernel kernel;      /* plain-C step (PAD), reads handles of args[0] (src) and args[1] (dst) */
    int nargs;
    dnnl_exec_arg_t args[TT_STEP_MAX_ARGS];
    int64_t p[12];           /* plain-C step parameters */
};

typedef struct tt_slot {
    size_t bytes;            /* largest value placed in it */
    int32_t busy_until;      /* time of the last reader of its current value */
    void *ptr;               /* [bytes], allocated after planning, owned */
} tt_slot;

typedef struct tt_binding {
    dnnl_memory_t mem;       /* memory object to point at ... */
    int32_t slot;            /* ... this slot (< 0: a caller's buffer, set at run) */
} tt_binding;

/* A trainable parameter: the caller's buffers (TFLite layout) and the copies in
 * the layouts the primitives want. */
typedef struct tt_param {
    int32_t op, tensor;      /* the op it belongs to, the model tensor it replaces */
    int64_t size;            /* floats */
    dnnl_memory_desc_t user_md; /* TFLite layout over oneDNN logical dims; not owned */
    dnnl_memory_t value;     /* handle = caller's value [size] (tt_engine_bind_param) */
    dnnl_memory_t grad;      /* handle = caller's grad [size] */
    bool bound;
} tt_param;

/* A tensor of the cut (computed below the boundary, read at or above it). */
typedef struct tt_cut {
    int32_t tensor, value;   /* model tensor, its engine value */
    dnnl_memory_t user;      /* plain TFLite layout, handle = the caller's buffer at run_bottom/run_top */
    dnnl_primitive_t to_user, from_user; /* owned reorders value <-> user (NULL: same layout, copy instead) */
} tt_cut;

typedef struct tt_steps {
    tt_step *s;              /* [n] growable, executed in order */
    int32_t n, cap;
} tt_steps;

struct tt_engine {
    const tt_model *model;   /* not owned; must outlive the engine */
    dnnl_engine_t eng;       /* owned */
    dnnl_stream_t stream;    /* owned */
    int32_t batch, in_h, in_w, output_tensor;
    int32_t train_from;      /* first trainable op; n_ops for an inference engine */
    tt_precision precision;  /* of the convolutions (tt_engine.h) */
    dnnl_data_type_t conv_dt;/* data type of conv activations and weights: f32 or bf16 */
    int32_t num_threads;     /* OpenMP threads it was built for and runs with */
    int32_t last_run_threads;/* OpenMP threads in effect during the last run, 0 before any */

    /* Planning (create only). */
    tt_shape *shapes;        /* [n_tensors] propagated shapes */
    bool *needed;            /* [n_ops] ops the output depends on */
    int32_t *last_use;       /* [n_tensors] last needed op reading it (TT_LIVE_FOREVER: output, kept for backward) */
    int32_t *consumers;      /* [n_tensors] needed ops reading it */
    int32_t *producer;       /* [n_tensors] op writing it, -1 */
    int32_t *fuse_add;       /* [n_ops] for a CONV_2D: the ADD it may absorb as a sum post-op, -1 */
    int32_t *fuse_dw;        /* [n_ops] for a 1x1 CONV_2D: the DEPTHWISE_CONV_2D it may run as a dw post-op, -1 */
    bool *op_done;           /* [n_ops] ADD or DEPTHWISE_CONV_2D already computed by a post-op of the conv before it */
    int32_t *fold_pad;       /* [n_ops] for a conv: the PAD op folded into its padding, -1 */
    int32_t *tensor_value;   /* [n_tensors] value index, -1 */
    int32_t *grad_value;     /* [n_tensors] value index of dL/d(tensor) during the backward build, -1 */
    dnnl_primitive_desc_t *fwd_pd; /* [n_ops] forward pd of a trainable op (hint for backward), owned */
    int32_t now;             /* time being built: slots busy until before it are free */

    tt_value *values;        /* [n_values] growable */
    int32_t n_values, cap_values;
    tt_steps fwd;            /* forward: steps [0, top_step) are the frozen bottom */
    int32_t top_step;        /* first forward step of a trainable op */
    tt_steps out;            /* the reorder of the output into the caller's buffer */
    tt_steps refresh;        /* parameter reorders run before a training forward */
    tt_steps bwd;            /* backward, in execution order */
    tt_steps *cur;           /* the list tt_add_primitive appends to */
    tt_slot *slots;          /* [n_slots] */
    int32_t n_slots, cap_slots;
    tt_binding *bindings;    /* [n_bindings] */
    int32_t n_bindings, cap_bindings;
    tt_param *params;        /* [n_params] */
    int32_t n_params, cap_params;
    tt_cut *cut;             /* [n_cut] */
    int32_t n_cut, cap_cut;

    /* Ownership lists, released by destroy. */
    dnnl_memory_t *mems;
    int32_t n_mems, cap_mems;
    dnnl_memory_desc_t *mds;
    int32_t n_mds, cap_mds;
    void **bufs;             /* reordered weights */
    int32_t n_bufs, cap_bufs;

    size_t scratch_bytes;    /* max scratchpad of any primitive */
    void *scratch;           /* [scratch_bytes] owned */
    dnnl_memory_t *scratch_mems; /* one per primitive using a scratchpad, pointing at `scratch` */
    int32_t n_scratch_mems, cap_scratch_mems;

    dnnl_memory_t out_mem;   /* plain output, handle set by run */
    dnnl_memory_t dout_mem;  /* plain d_output, handle set by backward (training) */
    tt_shape out_shape;

    /* Micro-batching (batch > TT_MICRO_BATCH): this engine only runs its sub-engines. */
    tt_engine *sub[2];       /* owned: [0] for chunks of TT_MICRO_BATCH images, [1] the remainder or NULL */
    int32_t n_chunks;        /* full chunks run through sub[0] (or the lanes) */
    /* Lanes: with n_lanes >= 2 the full chunks run in parallel, one OpenMP thread per lane,
     * each lane a copy of sub[0] built for one thread (its own buffers and stream), instead
     * of every primitive of sub[0] splitting one chunk over all threads. */
    tt_engine *lane[TT_MAX_LANES]; /* owned, [n_lanes] */
    int32_t n_lanes;         /* 0 or 1: no lanes */
    int64_t in_chunk;        /* floats of input per chunk */
    int64_t out_chunk;       /* floats of output per chunk */
};

/* Grows *arr (elements of `size` bytes) so that index `n` fits; 0 on success. */
int tt_grow(void **arr, int32_t *cap, int32_t n, size_t size);
#define TT_GROW(e, arr, n, cap) tt_grow((void **)&(e)->arr, &(e)->cap, (e)->n, sizeof *(e)->arr)

/* Time of op i's backward build (after every forward time and the output, n_ops). */
static inline int32_t tt_bwd_time(const tt_engine *e, int32_t i) { return 2 * e->model->n_ops + 1 - i; }
/* True when op i is trainable in this engine (needed and at or above the boundary). */
static inline bool tt_trainable(const tt_engine *e, int32_t i) { return e->needed[i] && i >= e->train_from; }

/* Records oneDNN failure `st` of `what` for op `i` as TT_RUNTIME_ERROR (or TT_UNSUPPORTED for unimplemented). */
tt_status tt_dnnl_fail(tt_engine *e, int32_t i, const char *what, dnnl_status_t st);
tt_status tt_oom(void);

/* Memory descriptor helpers; the md is owned by the engine. NULL on failure (error recorded). */
dnnl_memory_desc_t tt_md_tag(tt_engine *e, int ndims, const int64_t *dims, dnnl_format_tag_t tag);
/* tt_md_tag with data type `dt` (tt_md_tag is f32). */
dnnl_memory_desc_t tt_md_tag_dt(tt_engine *e, int ndims, const int64_t *dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag);
dnnl_data_type_t tt_md_dt(const_dnnl_memory_desc_t md);
dnnl_memory_desc_t tt_md_strides(tt_engine *e, int ndims, const int64_t *dims, const int64_t *strides);
dnnl_memory_desc_t tt_md_clone(tt_engine *e, const_dnnl_memory_desc_t md);
/* The dims and strides of `md` (a strided md without inner blocks) with data type `dt`. */
dnnl_memory_desc_t tt_md_strided_like(tt_engine *e, const_dnnl_memory_desc_t md, dnnl_data_type_t dt);
/* Plain (row-major; nhwc for 4D) md with the dims of `md`. */
dnnl_memory_desc_t tt_md_plain_like(tt_engine *e, const_dnnl_memory_desc_t md);
/* Plain md of a TFLite shape in oneDNN logical order ({N,C,H,W} nhwc for rank 4). */
dnnl_memory_desc_t tt_md_for_shape(tt_engine *e, const tt_shape *s);
int tt_md_ndims(const_dnnl_memory_desc_t md);
void tt_md_dims(const_dnnl_memory_desc_t md, int64_t dims[DNNL_MAX_NDIMS]);
/* An engine-owned (freed by tt_engine_destroy), 64-byte aligned, zeroed buffer of `bytes`; NULL + error. */
void *tt_own_buffer(tt_engine *e, size_t bytes);
/* A memory object over `handle` (NULL: bound later), owned by the engine. */
dnnl_memory_t tt_new_memory(tt_engine *e, const_dnnl_memory_desc_t md, void *handle);

/* Primitive attribute with user scratchpad and the fused activation `act` (+ sum first if `sum`). */
tt_status tt_attr(tt_engine *e, int32_t i, tt_activation act, bool sum, dnnl_primitive_attr_t *attr);

/* Appends to attr the post-ops of a fused op: (sum) the residual added as sum_scale * (r - sum_zp),
 * then the activation (RELU; RELU6 as clip to [0, 6]). Shared by the float and int8 builders. */
dnnl_status_t tt_attr_post_ops(dnnl_primitive_attr_t attr, tt_activation act, bool sum, float sum_scale,
                               int32_t sum_zp);
/* Forward propagation kind of op i: forward_training when trainable, else forward_inference. */
dnnl_prop_kind_t tt_prop(const tt_engine *e, int32_t i);

/* New value for tensor `t` (or -1 for a temporary) with layout `md`, in a fresh
 * slot busy until time `last_use`. Returns the value index or -1 (error recorded). */
int32_t tt_new_value(tt_engine *e, int32_t t, const_dnnl_memory_desc_t md, int32_t last_use);
/* New value for tensor `t` viewing value `src`'s bytes with layout `md` (same
 * byte size); extends the slot's life to t's last use. t = -1: a temporary view
 * read only by the op being built. */
int32_t tt_view_value(tt_engine *e, int32_t t, int32_t src, const_dnnl_memory_desc_t md);
/* Memory of value `v` in layout `want`: v's own if equal, else a reorder (for op
 * i) into a temporary live until now. NULL on failure. */
dnnl_memory_t tt_value_as(tt_engine *e, int32_t i, int32_t v, const_dnnl_memory_desc_t want);
/* Value holding v's bytes in plain layout (v itself, or a reordered temporary
 * live until now). -1 on failure. */
int32_t tt_value_plain(tt_engine *e, int32_t i, int32_t v);
/* Input k of op i as the engine reads it: for a conv with a folded PAD, input 0
 * is the PAD's input. */
int32_t tt_op_input(const tt_engine *e, int32_t i, int32_t k);
/* Value index of tensor `t`'s input to op i (must already be computed). */
int32_t tt_input_value(tt_engine *e, int32_t i, int32_t t);

/* Constant float tensor data in oneDNN layout `want` (reordered once at create from
 * `src_md` over the model's data). NULL on failure. */
dnnl_memory_t tt_const_memory(tt_engine *e, int32_t i, const float *data, const_dnnl_memory_desc_t src_md,
                              const_dnnl_memory_desc_t want);
/* Weights or bias of op i: tensor t's constant data in layout `want` for a frozen
 * op; for a trainable op, parameter t (registered once, TFLite layout `user_md`)
 * copied into `want` by a refresh step before every training forward. */
dnnl_memory_t tt_weights_memory(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t user_md,
                                const_dnnl_memory_desc_t want);
/* Writes a gradient of parameter tensor t computed in layout `have` (memory
 * `src`) into the caller's grad buffer (a reorder step, or `*direct` = the grad
 * memory itself when `have` is the TFLite layout and src is NULL). */
dnnl_memory_t tt_param_grad_memory(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t have);
tt_status tt_param_grad_finish(tt_engine *e, int32_t i, int32_t t, dnnl_memory_t src);

/* Gradients (backward build of op i, e->now = tt_bwd_time(e, i)). */
/* True when backward must produce dL/d(tensor t) read by op i: t is computed by
 * a trainable op (the frozen bottom and the input get none). */
bool tt_wants_grad(const tt_engine *e, int32_t t);
/* The value of dL/d(t) (t: an op output whose gradient is complete), -1 if none. */
int32_t tt_grad(tt_engine *e, int32_t t);
/* Memory in layout `md` that op i's backward writes its contribution to dL/dt
 * into; then call tt_grad_commit. */
dnnl_memory_t tt_grad_target(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t md, int32_t *tmp);
/* Makes the contribution written to tmp (from tt_grad_target) part of dL/dt:
 * the first contribution becomes dL/dt, later ones are added. */
tt_status tt_grad_commit(tt_engine *e, int32_t i, int32_t t, int32_t tmp);
/* Makes value v (read-only, shared) a contribution to dL/dt (ADD's backward). */
tt_status tt_grad_share(tt_engine *e, int32_t i, int32_t t, int32_t v);

/* Creates the primitive of `pd` (then destroys pd unless `keep`) and appends a
 * step with args (+ scratchpad) to e->cur. Returns TT_OK or an error. */
tt_status tt_add_primitive(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args);
/* Like tt_add_primitive, but for a trainable op keeps pd as e->fwd_pd[i] (the backward hint). */
tt_status tt_add_forward(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args);
tt_status tt_add_c_step(tt_engine *e, tt_c_kernel kernel, dnnl_memory_t src, dnnl_memory_t dst, const int64_t *p,
                        int np);

/* Eltwise backward of a fused activation from the saved output: y = act(pre),
 * dy -> d(pre) into a new temporary value (returned; dy's own value when act is
 * NONE). hint: any forward pd is not needed; a forward eltwise pd is made here. */
int32_t tt_activation_backward(tt_engine *e, int32_t i, tt_activation act, int32_t yv, int32_t dyv);

/* ---- int8 engines (engine/quant.c) ------------------------------------------------ */

/* Per-tensor quantization (scale, zero point) of activation tensor t of op i;
 * TT_UNSUPPORTED naming the tensor when it has none or is per-channel. */
tt_status tt_tensor_qparams(tt_engine *e, int32_t i, int32_t t, float *scale, int32_t *zp);
/* Engine-owned constant memory of layout `md` holding a copy of `bytes` bytes of `data`. NULL on failure. */
dnnl_memory_t tt_const_bytes(tt_engine *e, const_dnnl_memory_desc_t md, const void *data, size_t bytes);
/* Runtime scales argument: f32 [n]. Runtime zero point argument: s32 [1]. NULL on failure. */
dnnl_memory_t tt_scales_memory(tt_engine *e, const float *scales, int64_t n);
dnnl_memory_t tt_zero_point_memory(tt_engine *e, int32_t zp);
/* Appends to op i's steps a quantizing reorder of value xv (float, or s8 with its own
 * scale) into a new s8 value of tensor t with t's scale and zero point:
 * q = round(real / scale) + zp (uint8 tensors as s8, zp - 128). The new value, -1 on
 * failure (error set). Used by QUANTIZE and for a uint8 model input that no QUANTIZE
 * op converts (the quant-aware file). */
int32_t tt_quantize_value(tt_engine *e, int32_t i, int32_t xv, int32_t t);
/* Either int8 precision (the default float requantization or TFLite's integer one). */
static inline bool tt_is_int8(const tt_engine *e) {
    return e->precision == TT_PRECISION_INT8 || e->precision == TT_PRECISION_INT8_TFLITE;
}
/* (TFLite's QuantizeMultiplier, MultiplyByQuantizedMultiplier, mean multiplier: tt_engine.h.) */
/* Appends op i's plain-C requantization (INT8_TFLITE): y = clamp(MBQM(acc + bias_q[c], M[c], S[c]) + y_zp)
 * with M, S from x_scale * w_scale[c] / y_scale and bias_q the file's int32 bias (bias: dequantized
 * floats [channels] or NULL, bias_scales [n_bias_scales]; bias_in_file_units false when the weights
 * were converted to new scales: bias_q = round(bias / (x_scale * w_scale[c])) then). acc: s32, y: s8,
 * both NHWC with `channels` innermost and `elements` in all. */
tt_status tt_add_requant_step(tt_engine *e, int32_t i, dnnl_memory_t acc, dnnl_memory_t y, int64_t elements,
                              int64_t channels, const float *bias, const float *bias_scales, int32_t n_bias_scales,
                              float x_scale, const float *w_scales, int32_t n_w_scales, bool bias_in_file_units,
                              float y_scale, int32_t y_zp, tt_activation act);
/* Appends TFLite's int8 MEAN over H, W (INT8_TFLITE; reference_ops::QuantizedMeanOrSum, the
 * kernel LiteRT 2.3's reference resolver runs): y = clamp(MBQM(sum(x) - x_zp H W, M, S) + y_zp)
 * with M, S = tt_mean_multiplier(x_scale / y_scale, H W). x: s8 [n, hw, c] NHWC plain; y: s8 [n, c]. */
tt_status tt_add_int8_mean_step(tt_engine *e, dnnl_memory_t x, dnnl_memory_t y, int64_t n, int64_t hw, int64_t c,
                                float x_scale, int32_t x_zp, float y_scale, int32_t y_zp);
/* Appends TFLite's int8 ADD (INT8_TFLITE): a, b, y s8 of `elements` in the same layout. */
tt_status tt_add_int8_add_step(tt_engine *e, dnnl_memory_t a, dnnl_memory_t b, dnnl_memory_t y, int64_t elements,
                               float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float y_scale, int32_t y_zp,
                               tt_activation act);
/* s8 copy of a per-channel symmetric weight tensor t (TFLite layout, dequantized floats
 * in the model) requantized exactly: q = round(w / scale[c]) along its quantized
 * dimension; *scales = the file's scales. Per-tensor uint8 weights with a zero point
 * are converted once (exactly when q - zp fits in s8, else per-channel; quant.c).
 * NULL (error set) for any other scheme. */
const int8_t *tt_weights_s8(tt_engine *e, int32_t i, int32_t t, const float **scales, int32_t *n_scales);

#endif /* TT_BUILD_H */
