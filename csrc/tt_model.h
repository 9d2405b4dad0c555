/* tt_model.h - a TFLite model loaded into float32, and the oneDNN engine that runs it.
 *
 * Two objects, each with create / run / destroy:
 *   tt_model   - built by tt_model_load() (tflite_reader.c) from the bytes of a
 *                .tflite flatbuffer. Every offset is bounds-checked; quantized and
 *                float16 weights are dequantized to float32 on load. Immutable after load.
 *   tt_engine  - built by tt_engine_create() (engine.c) for one (model, batch size,
 *                input H x W, output tensor): all oneDNN primitives and buffers are
 *                created there; tt_engine_run() never allocates or checks.
 *
 * Layout conventions (TFLite's, kept as stored; the engine reorders for oneDNN):
 *   activations     NHWC, float32
 *   CONV_2D filter  [O, KH, KW, I]
 *   DEPTHWISE filter[1, KH, KW, C * depth_multiplier]
 *   FC weights      [O, I]
 *   bias            [O]
 *
 * Ownership: tt_model_load() allocates one arena (tt_model.arena) that holds the
 * tensors, ops, names and constant data; tt_model_destroy() frees it. An engine
 * keeps a const pointer to its model: destroy engines before their model.
 */
#ifndef TT_MODEL_H
#define TT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TT_MAX_RANK 8
#define TT_MAX_OP_INPUTS 8

/* TFLite TensorType codes (schema.fbs), kept for inspection. */
typedef enum tt_tflite_type {
    TT_TFLITE_FLOAT32 = 0,
    TT_TFLITE_FLOAT16 = 1,
    TT_TFLITE_INT32 = 2,
    TT_TFLITE_UINT8 = 3,
    TT_TFLITE_INT64 = 4,
    TT_TFLITE_INT8 = 9
} tt_tflite_type;

typedef enum tt_op_type {
    TT_OP_CONV_2D = 0,
    TT_OP_DEPTHWISE_CONV_2D,
    TT_OP_ADD,
    TT_OP_AVERAGE_POOL_2D,
    TT_OP_MAX_POOL_2D,
    TT_OP_MEAN,
    TT_OP_PAD,
    TT_OP_RESHAPE,
    TT_OP_FULLY_CONNECTED,
    TT_OP_SOFTMAX,
    TT_OP_CONCATENATION,
    TT_OP_QUANTIZE,   /* identity in float */
    TT_OP_DEQUANTIZE, /* identity in float */
    TT_OP_COUNT
} tt_op_type;

typedef enum tt_activation { TT_ACT_NONE = 0, TT_ACT_RELU = 1, TT_ACT_RELU6 = 3 } tt_activation; /* TFLite codes */
typedef enum tt_padding { TT_PADDING_SAME = 0, TT_PADDING_VALID = 1 } tt_padding;            /* TFLite codes */

typedef struct tt_quant {
    int32_t n;                  /* number of (scale, zero_point) pairs: 0 (none), 1 (per tensor) or per channel */
    int32_t quantized_dimension;/* axis of the per-channel parameters */
    const float *scale;         /* [n], in the model arena */
    const int64_t *zero_point;  /* [n], in the model arena */
} tt_quant;

typedef struct tt_tensor {
    const char *name;           /* NUL-terminated, in the model arena ("" if unnamed) */
    int32_t rank;               /* 0..TT_MAX_RANK */
    int32_t shape[TT_MAX_RANK]; /* as stored; activations are NHWC with batch 1 */
    int64_t size;               /* product of shape (1 for rank 0) */
    tt_tflite_type type;        /* type in the file */
    tt_quant quant;             /* quantization parameters in the file */
    /* Constant data, NULL for activations. Exactly one of the two is set for a
     * constant: float tensors and any quantized tensor (weights, int32 biases
     * with a scale) are dequantized into `data`; integer tensors without
     * quantization (RESHAPE shape, MEAN axes, PAD paddings; int64 narrowed)
     * go to `idata`. */
    const float *data;          /* [size] float32, dequantized, or NULL */
    const int32_t *idata;       /* [size] int32, or NULL */
} tt_tensor;

typedef struct tt_op {
    tt_op_type type;
    int32_t builtin_code;          /* TFLite BuiltinOperator, for messages */
    int32_t n_inputs;
    int32_t inputs[TT_MAX_OP_INPUTS]; /* tensor indices; -1 = optional input absent */
    int32_t output;                /* tensor index (every supported op has one output) */
    /* Builtin options; fields an op does not use are 0. */
    tt_padding padding;            /* CONV_2D, DEPTHWISE_CONV_2D, *_POOL_2D */
    int32_t stride_h, stride_w;    /* idem */
    int32_t dilation_h, dilation_w;/* CONV_2D, DEPTHWISE_CONV_2D (1 if absent) */
    int32_t filter_h, filter_w;    /* *_POOL_2D */
    int32_t depth_multiplier;      /* DEPTHWISE_CONV_2D */
    tt_activation activation;      /* fused activation of CONV, DW, ADD, POOL, FC, CONCAT */
    int32_t axis;                  /* CONCATENATION */
    int32_t keep_dims;             /* MEAN, FULLY_CONNECTED */
    float beta;                    /* SOFTMAX */
} tt_op;

typedef struct tt_model {
    int32_t n_tensors;
    tt_tensor *tensors;            /* [n_tensors], in the arena */
    int32_t n_ops;
    tt_op *ops;                    /* [n_ops], in execution order, in the arena */
    int32_t n_inputs;
    const int32_t *inputs;         /* [n_inputs] tensor indices */
    int32_t n_outputs;
    const int32_t *outputs;        /* [n_outputs] tensor indices */
    uint32_t version;              /* Model.version */
    const char *description;       /* Model.description or "" */
    void *arena;                   /* owns everything above; freed by tt_model_destroy */
} tt_model;

/* Parses `len` bytes of a .tflite flatbuffer (the caller keeps ownership of
 * `buf`; nothing points into it afterwards). Checks every offset, vector length
 * and buffer range against `len`, every tensor index against the tensor count,
 * and every op against the supported set (an unsupported op fails with its
 * name and index). On success *out owns a new model. */
tt_status tt_model_load(const uint8_t *buf /* [len] */, size_t len, tt_model **out);

/* Frees a model; accepts NULL. */
void tt_model_destroy(tt_model *model);

/* Name of a TFLite BuiltinOperator code ("CONV_2D"), or "UNKNOWN". */
const char *tt_builtin_name(int32_t builtin_code);

/* ---- engine (engine.c, oneDNN) ---------------------------------------- */

typedef struct tt_engine tt_engine;

/* Builds the oneDNN primitives that compute tensor `output_tensor` of `model`
 * from its first input, for `batch` images of `in_h` x `in_w` pixels (the
 * model's own H, W when 0). Shapes are propagated through the graph (the model's
 * stored shapes are for batch 1 and its own input size). Only the ops that the
 * output depends on are built. Fails on an op whose shapes do not fit.
 * Implementation notes (engine.c): layouts are oneDNN's choice (format_tag_any,
 * NHWC brgemm kernels on AVX-512 with oneDNN 3.2); fused RELU/RELU6 are eltwise
 * post-ops; a residual ADD becomes a sum post-op of the conv before it; a PAD
 * feeding only a conv becomes its padding; intermediate buffers are reused once
 * dead; batches above 8 run in chunks of 8 images (when no op mixes images) so
 * activations stay cache-sized. */
tt_status tt_engine_create(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                           int32_t output_tensor, tt_engine **out);

/* Shape of tensor `output_tensor` when the model runs on `batch` images of
 * in_h x in_w pixels (0: the model's own size), by the same shape propagation
 * as tt_engine_create but without building anything. Fails as create would
 * (unreachable tensor, shapes that do not fit). */
tt_status tt_model_output_shape(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                int32_t output_tensor, int32_t *rank, int64_t shape[TT_MAX_RANK]);

/* Output shape of the engine (NHWC or [N, C]); *rank <= TT_MAX_RANK. */
void tt_engine_output_shape(const tt_engine *engine, int32_t *rank, int64_t shape[TT_MAX_RANK]);

/* Runs the engine. input: [batch, in_h, in_w, C] float32 NHWC, already
 * preprocessed; output: [batch, ...] float32 as tt_engine_output_shape says.
 * Never allocates. Returns TT_RUNTIME_ERROR only if oneDNN fails. */
tt_status tt_engine_run(tt_engine *engine, const float *input, float *output);

/* Frees an engine; accepts NULL. */
void tt_engine_destroy(tt_engine *engine);

#ifdef __cplusplus
}
#endif
#endif /* TT_MODEL_H */
