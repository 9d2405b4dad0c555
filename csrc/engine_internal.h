/* engine_internal.h - shared by engine.c and the op builders (op_*.c) only.
 *
 * tt_engine_create() (engine.c) plans the graph: which ops the requested output
 * needs, every tensor's shape for this (batch, H, W), which tensors die when
 * (liveness), and which ADD folds into the conv before it as a sum post-op.
 * Then it calls one builder per op, in execution order; a builder creates the
 * oneDNN primitive(s) for its op and appends steps to the engine. Buffers of
 * intermediate values are "slots": a slot is reused once the value in it is dead,
 * and all slots are allocated after the last op is built.
 *
 * Value layouts: a value's oneDNN memory descriptor uses oneDNN's logical dims
 * ({N, C, H, W} for a rank-4 NHWC tensor, the TFLite dims otherwise) and
 * whatever format the producing primitive chose (format_tag_any: usually
 * nChw16c). plain_like() gives the plain layout of the same dims, whose bytes
 * equal the TFLite row-major tensor; reorders to it happen only where a consumer
 * or the caller needs it.
 */
#ifndef TT_ENGINE_INTERNAL_H
#define TT_ENGINE_INTERNAL_H

#include <dnnl.h>
#include <stdbool.h>

#include "tt_model.h"

#define TT_STEP_MAX_ARGS (TT_MAX_OP_INPUTS + 4)
#define TT_LIVE_FOREVER INT32_MAX
#ifndef TT_MICRO_BATCH
#define TT_MICRO_BATCH 8     /* images per chunk for larger batches (see tt_engine_create) */
#endif

typedef struct tt_shape {
    int32_t rank;
    int64_t d[TT_MAX_RANK]; /* TFLite order, batch first */
} tt_shape;

typedef struct tt_value {
    tt_shape shape;          /* TFLite shape for this batch / input size */
    dnnl_memory_desc_t md;   /* not owned (engine's md list owns it); oneDNN logical dims */
    dnnl_memory_t mem;       /* not owned (engine's memory list owns it) */
    int32_t slot;            /* buffer slot of its bytes, -1 = the caller's input */
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
    int32_t busy_until;      /* op index of the last reader of its current value */
    void *ptr;               /* [bytes], allocated after planning, owned */
} tt_slot;

typedef struct tt_binding {
    dnnl_memory_t mem;       /* memory object to point at ... */
    int32_t slot;            /* ... this slot (-1: the caller's input, set at run) */
} tt_binding;

struct tt_engine {
    const tt_model *model;   /* not owned; must outlive the engine */
    dnnl_engine_t eng;       /* owned */
    dnnl_stream_t stream;    /* owned */
    int32_t batch, in_h, in_w, output_tensor;

    /* Planning (create only). */
    tt_shape *shapes;        /* [n_tensors] propagated shapes */
    bool *needed;            /* [n_ops] ops the output depends on */
    int32_t *last_use;       /* [n_tensors] last needed op reading it (TT_LIVE_FOREVER: the output) */
    int32_t *consumers;      /* [n_tensors] needed ops reading it */
    int32_t *producer;       /* [n_tensors] op writing it, -1 */
    int32_t *fuse_add;       /* [n_ops] for a CONV_2D: the ADD it may absorb as a sum post-op, -1 */
    bool *add_done;          /* [n_ops] ADD already computed by its conv's sum post-op */
    int32_t *fold_pad;       /* [n_ops] for a conv: the PAD op folded into its padding, -1 */
    int32_t *tensor_value;   /* [n_tensors] value index, -1 */
    int32_t now;             /* op being built: slots busy until before it are free */

    tt_value *values;        /* [n_values] growable */
    int32_t n_values, cap_values;
    tt_step *steps;          /* [n_steps] growable, executed in order by run */
    int32_t n_steps, cap_steps;
    tt_slot *slots;          /* [n_slots] */
    int32_t n_slots, cap_slots;
    tt_binding *bindings;    /* [n_bindings] */
    int32_t n_bindings, cap_bindings;

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
    tt_shape out_shape;

    /* Micro-batching (batch > TT_MICRO_BATCH): this engine only runs its sub-engines. */
    tt_engine *sub[2];       /* owned: [0] for chunks of TT_MICRO_BATCH images, [1] the remainder or NULL */
    int32_t n_chunks;        /* full chunks run through sub[0] */
    int64_t in_chunk;        /* floats of input per chunk */
    int64_t out_chunk;       /* floats of output per chunk */
};

/* ---- engine.c helpers for the op builders ------------------------------------ */

/* Records oneDNN failure `st` of `what` for op `i` as TT_RUNTIME_ERROR (or TT_UNSUPPORTED for unimplemented). */
tt_status tt_dnnl_fail(tt_engine *e, int32_t i, const char *what, dnnl_status_t st);

/* Memory descriptor helpers; the md is owned by the engine. NULL on failure (error recorded). */
dnnl_memory_desc_t tt_md_tag(tt_engine *e, int ndims, const int64_t *dims, dnnl_format_tag_t tag);
dnnl_memory_desc_t tt_md_strides(tt_engine *e, int ndims, const int64_t *dims, const int64_t *strides);
dnnl_memory_desc_t tt_md_clone(tt_engine *e, const_dnnl_memory_desc_t md);
/* Plain (row-major; nhwc for 4D) md with the dims of `md`. */
dnnl_memory_desc_t tt_md_plain_like(tt_engine *e, const_dnnl_memory_desc_t md);
/* Plain md of a TFLite shape in oneDNN logical order ({N,C,H,W} nhwc for rank 4). */
dnnl_memory_desc_t tt_md_for_shape(tt_engine *e, const tt_shape *s);
int tt_md_ndims(const_dnnl_memory_desc_t md);
void tt_md_dims(const_dnnl_memory_desc_t md, int64_t dims[DNNL_MAX_NDIMS]);

/* Primitive attribute with user scratchpad and the fused activation `act` (+ sum first if `sum`). */
tt_status tt_attr(tt_engine *e, int32_t i, tt_activation act, bool sum, dnnl_primitive_attr_t *attr);

/* New value for tensor `t` (or -1 for a temporary) with layout `md`, in a fresh
 * slot live until op `last_use`. Returns the value index or -1 (error recorded). */
int32_t tt_new_value(tt_engine *e, int32_t t, const_dnnl_memory_desc_t md, int32_t last_use);
/* New value for tensor `t` viewing value `src`'s bytes with layout `md` (same
 * byte size); extends the slot's life to t's last use. t = -1: a temporary view
 * read only by the op being built. */
int32_t tt_view_value(tt_engine *e, int32_t t, int32_t src, const_dnnl_memory_desc_t md);
/* Memory of value `v` in layout `want`: v's own if equal, else a reorder into a
 * temporary live until op `i`. NULL on failure. */
dnnl_memory_t tt_value_as(tt_engine *e, int32_t i, int32_t v, const_dnnl_memory_desc_t want);
/* Value holding v's bytes in plain layout (v itself, or a reordered temporary
 * live until op i). -1 on failure. */
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

/* Creates the primitive of `pd` (then destroys pd) and appends a step with args
 * (+ scratchpad). Returns TT_OK or an error. */
tt_status tt_add_primitive(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args);
tt_status tt_add_c_step(tt_engine *e, tt_c_kernel kernel, dnnl_memory_t src, dnnl_memory_t dst, const int64_t *p,
                        int np);

/* TF SAME/VALID padding: pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0). */
void tt_tf_padding(tt_padding padding, int64_t in, int64_t k, int64_t stride, int64_t dilation, int64_t *out,
                   int64_t *pad_l, int64_t *pad_r);

/* ---- op builders (op_*.c) ---------------------------------------------------- */
tt_status conv_forward_build(tt_engine *e, int32_t i);       /* op_conv.c: CONV_2D, DEPTHWISE_CONV_2D */
tt_status pool_forward_build(tt_engine *e, int32_t i);       /* op_pool.c: AVERAGE/MAX_POOL_2D, MEAN */
tt_status add_forward_build(tt_engine *e, int32_t i);        /* op_eltwise.c: ADD */
tt_status softmax_forward_build(tt_engine *e, int32_t i);    /* op_eltwise.c: SOFTMAX */
tt_status eltwise_forward_inplace(tt_engine *e, int32_t i, int32_t v, dnnl_alg_kind_t alg, float alpha, float beta);
tt_status fc_forward_build(tt_engine *e, int32_t i);         /* op_dense.c: FULLY_CONNECTED */
tt_status reshape_forward_build(tt_engine *e, int32_t i);    /* op_shape.c: RESHAPE, QUANTIZE, DEQUANTIZE */
tt_status concat_forward_build(tt_engine *e, int32_t i);     /* op_shape.c: CONCATENATION */
tt_status pad_forward_build(tt_engine *e, int32_t i);        /* op_shape.c: PAD */

/* Shape rules (engine.c), also used by tt_model_output_shape. */
tt_status tt_plan_shapes(const tt_model *m, int32_t batch, int32_t in_h, int32_t in_w, int32_t output_tensor,
                         tt_shape *shapes, bool *needed, int32_t *producer);

#endif /* TT_ENGINE_INTERNAL_H */
