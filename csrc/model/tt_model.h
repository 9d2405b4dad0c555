/* tt_model.h - a TFLite model loaded into float32, its shapes and the op table interface.
 *
 * tt_model is built by tt_model_load() (model/tflite_reader.c) from the bytes of a
 * .tflite flatbuffer. Every offset is bounds-checked; quantized and float16
 * weights are dequantized to float32 on load. Its structure is immutable after
 * load; only float constants may be overwritten (tt_model_set_constant, for
 * fine-tuned weights). The engine that runs a model is in engine/tt_engine.h.
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

#include "core/tt_status.h"

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

struct tt_op_kind;

typedef struct tt_op {
    tt_op_type type;
    const struct tt_op_kind *kind; /* its entry in the op table the model was loaded with */
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


/* ---- shapes (shape.c) --------------------------------------------------------- */

typedef struct tt_shape {
    int32_t rank;
    int64_t d[TT_MAX_RANK]; /* TFLite order, batch first */
} tt_shape;

/* The stored shape of tensor t (activations: batch 1, the model's own size). */
tt_shape tt_stored_shape(const tt_tensor *t);
/* True for a constant tensor (float or integer data in the file). */
static inline int tt_is_const(const tt_tensor *t) { return t->data != NULL || t->idata != NULL; }
/* Shape of input tensor t of an op: shapes[t] for activations, the stored shape for
 * constants (written to *tmp). shapes: [n_tensors]. */
const tt_shape *tt_input_shape(const tt_model *m, const tt_shape *shapes, tt_shape *tmp, int32_t t);
/* "[1, 224, 224, 3]" into buf. */
const char *tt_shape_str(const tt_shape *s, char buf[128]);
/* TF SAME/VALID padding: pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0),
 * the extra row/column at the bottom/right. */
void tt_tf_padding(tt_padding padding, int64_t in, int64_t k, int64_t stride, int64_t dilation, int64_t *out,
                   int64_t *pad_l, int64_t *pad_r);

/* Output shape [N, OH, OW, c] of a kh x kw window op (conv, pool) on x [N, H, W, C]
 * with op's padding, strides and dilations; TT_INVALID_ARGUMENT when the input is too small. */
tt_status tt_window_shape(const tt_op *op, int32_t i, const tt_shape *x, int64_t kh, int64_t kw, int64_t c,
                          tt_shape *out);

/* ---- the op table interface (TFLite Micro's op resolver) ----------------------
 * Everything the reader, the planner, the engine and the binding know about one
 * op family is reached through its tt_op_kind entry; the entries live in
 * ops/<family>.c and the table in ops/table.c. The reader gets the table as an
 * argument (tt_model_load), so the model layer does not depend on the ops. */

typedef struct tt_options tt_options; /* one operator's builtin-options table while a file is read */

/* Scalar field `field` of the options table (schema.fbs order), or `dflt` when absent. */
tt_status tt_options_u8(const tt_options *o, int field, uint8_t dflt, uint8_t *out);
tt_status tt_options_i32(const tt_options *o, int field, int32_t dflt, int32_t *out);
tt_status tt_options_f32(const tt_options *o, int field, float dflt, float *out);
/* "operator 3 (CONV_2D)": the prefix of the reader's messages. */
const char *tt_options_where(const tt_options *o);
/* Fused activation code `act` into op->activation; TT_UNSUPPORTED for codes other than NONE, RELU, RELU6. */
tt_status tt_options_activation(const tt_options *o, int32_t act, tt_op *op);
/* Padding / strides / dilations (when `dilation`) / pool filter (when `filter`) of op are valid. */
tt_status tt_options_window(const tt_options *o, const tt_op *op, int dilation, int filter);
/* Input k of op must be a constant (integer: int32 `idata`; else float `data`), else TT_INVALID_MODEL. */
tt_status tt_require_const(const tt_model *m, const tt_op *op, int k, const char *what, int integer,
                           const char *where);
/* The optional bias (input 2) of a conv / fully-connected op: a constant float tensor of out_c values. */
tt_status tt_require_bias(const tt_model *m, const tt_op *op, int32_t out_c, const char *where);

/* Option fields an op uses (bits of tt_op_kind.fields), for inspection. */
enum {
    TT_FIELD_PADDING = 1 << 0,    /* padding, stride_h, stride_w */
    TT_FIELD_DILATION = 1 << 1,   /* dilation_h, dilation_w */
    TT_FIELD_FILTER = 1 << 2,     /* filter_h, filter_w */
    TT_FIELD_DEPTH_MULT = 1 << 3, /* depth_multiplier */
    TT_FIELD_ACTIVATION = 1 << 4, /* activation */
    TT_FIELD_KEEP_DIMS = 1 << 5,  /* keep_dims */
    TT_FIELD_AXIS = 1 << 6,       /* axis */
    TT_FIELD_BETA = 1 << 7        /* beta */
};

struct tt_engine;

typedef struct tt_op_kind {
    const char *name;         /* "CONV_2D" */
    int32_t builtin_code;     /* TFLite BuiltinOperator */
    tt_op_type type;
    uint8_t options_type;     /* BuiltinOptions union tag of its options table (0: none) */
    int32_t min_inputs, max_inputs;
    uint32_t optional_inputs; /* bit k: input k may be absent (-1) */
    uint32_t fields;          /* TT_FIELD_* bits */
    int view;                 /* the output is the input's bytes (no compute) */
    /* Reader: builtin options -> op fields (defaults already set: dilations 1); may be NULL. */
    tt_status (*parse)(const tt_options *o, tt_op *op);
    /* Reader: constant inputs present and of usable rank / size; may be NULL. */
    tt_status (*check)(const tt_model *m, const tt_op *op, const char *where);
    /* Planner: output shape of op i from shapes [n_tensors] of its inputs. */
    tt_status (*shape)(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out);
    /* Planner: nonzero when op i computes an image from other images of the batch (NULL: never). */
    int (*mixes_images)(const tt_model *m, int32_t i, const tt_shape *shapes);
    /* Engine: appends the forward step(s) of op i (engine/tt_build.h). */
    tt_status (*forward)(struct tt_engine *e, int32_t i);
    /* Engine: appends the backward step(s) of op i; NULL: the op cannot be trained through. */
    tt_status (*backward)(struct tt_engine *e, int32_t i);
} tt_op_kind;

typedef struct tt_op_resolver {
    int32_t n;
    const tt_op_kind *const *kinds; /* [n] */
} tt_op_resolver;

/* Parses `len` bytes of a .tflite flatbuffer (the caller keeps ownership of
 * `buf`; nothing points into it afterwards). Checks every offset, vector length
 * and buffer range against `len`, every tensor index against the tensor count,
 * and every op against the supported set `ops` (an unsupported op fails with its
 * name and index; ops/tt_ops.h: tt_ops_resolver()). On success *out owns a new model. */
tt_status tt_model_load(const uint8_t *buf /* [len] */, size_t len, const struct tt_op_resolver *ops,
                        tt_model **out);

/* Overwrites the float data of constant tensor `tensor` with data [size]
 * (fine-tuned weights). Engines built before keep the old values: rebuild them. */
tt_status tt_model_set_constant(tt_model *model, int32_t tensor, const float *data, int64_t size);

/* Frees a model; accepts NULL. */
void tt_model_destroy(tt_model *model);

/* Name of a TFLite BuiltinOperator code ("CONV_2D"), or "UNKNOWN". */
const char *tt_builtin_name(int32_t builtin_code);

#ifdef __cplusplus
}
#endif
#endif /* TT_MODEL_H */
