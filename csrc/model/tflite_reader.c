/* tflite_reader.c - parses a .tflite flatbuffer (schema.fbs of TensorFlow Lite)
 * into a tt_model with float32 constants. No generated code: every table,
 * vtable, offset, vector and string is bounds-checked against the file size
 * before it is read, so corrupt or hostile bytes give TT_INVALID_MODEL with a
 * message saying what is wrong and where, never an out-of-bounds read.
 *
 * Flatbuffer layout used here (little-endian):
 *   table at T:   int32 soffset; vtable at T - soffset
 *   vtable at V:  uint16 vtable_bytes, uint16 table_bytes, uint16 field_offset[]
 *   field i:      at T + field_offset[i] (0 = absent -> schema default)
 *   offset field: uint32 u at P -> target P + u (tables, vectors, strings)
 *   vector at X:  uint32 count, then elements;  string: vector of bytes
 *
 * Ownership: everything the model points to lives in one chunked bump arena
 * (tt_arena) freed by tt_model_destroy(); nothing points into the caller's bytes.
 */
#include "model/tt_model.h"
#include "model/tt_flatbuffer.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------ */

/* BuiltinOperator names by code (schema.fbs of TensorFlow Lite 2.18). */
static const char *const builtin_names[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL",
    "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2",
    "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
    "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL",
    "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL",
    "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT",
    "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT",
    "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD",
    "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
    "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF",
    "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2",
    "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM",
    "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE",
    "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE",
    "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL",
    "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC",
    "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM",
    "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE",
    "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT",
};

const char *tt_builtin_name(int32_t builtin_code) {
    if (builtin_code < 0 || (size_t)builtin_code >= sizeof builtin_names / sizeof builtin_names[0]) return "UNKNOWN";
    return builtin_names[builtin_code];
}

static const char *type_name(int32_t t) {
    static const char *const names[] = {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL",
                                        "INT16", "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64",
                                        "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4", "BFLOAT16"};
    return (t >= 0 && (size_t)t < sizeof names / sizeof names[0]) ? names[t] : "UNKNOWN";
}

static const char *activation_name(int32_t a) {
    static const char *const names[] = {"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"};
    return (a >= 0 && a < 6) ? names[a] : "UNKNOWN";
}

static size_t type_size(int32_t t) {
    switch (t) {
    case TT_TFLITE_FLOAT32: case TT_TFLITE_INT32: return 4;
    case TT_TFLITE_FLOAT16: return 2;
    case TT_TFLITE_UINT8: case TT_TFLITE_INT8: return 1;
    case TT_TFLITE_INT64: return 8;
    default: return 0;
    }
}

/* IEEE 754 binary16 -> binary32, exact for every value (subnormals, inf, NaN). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* ---- tensors ---------------------------------------------------------------- */

/* "[1, 224, 224, 3]" into buf. */
static const char *shape_str(const tt_tensor *t, char buf[96]) {
    size_t n = 0;
    buf[n++] = '[';
    buf[n] = '\0';
    for (int32_t i = 0; i < t->rank && n < 80; i++)
        n += (size_t)snprintf(buf + n, 96 - n, i ? ", %d" : "%d", t->shape[i]);
    snprintf(buf + n, 96 - n, "]");
    return buf;
}

/* Reads the integer element `i` of raw little-endian data of TFLite type `type`. */
static int64_t raw_int(const uint8_t *p, int32_t type, int64_t i) {
    switch (type) {
    case TT_TFLITE_INT8: return (int8_t)p[i];
    case TT_TFLITE_UINT8: return p[i];
    case TT_TFLITE_INT32: return (int32_t)ld32(p + 4 * i);
    default: return (int64_t)ld64(p + 8 * i);
    }
}

static tt_status read_quant(fb *f, size_t qpos, tt_tensor *t, tt_arena *a) {
    fb_table q;
    tt_status s = fb_open_table(f, qpos, &q);
    if (s) return s;
    size_t sc, zp;
    uint32_t nsc, nzp;
    int32_t qdim;
    if ((s = fb_vector(f, &q, 2, 4, &sc, &nsc)) || (s = fb_vector(f, &q, 3, 8, &zp, &nzp)) ||
        (s = fb_i32(f, &q, 6, 0, &qdim)))
        return s;
    if (nsc == 0) return TT_OK; /* min/max only, or empty: not quantized for our purposes */
    if (nzp != 0 && nzp != nsc)
        return tt_error(TT_INVALID_MODEL, "%s: quantization has %u scales but %u zero points", f->where, nsc, nzp);
    if (nsc > 1) {
        if (qdim < 0 || qdim >= t->rank)
            return tt_error(TT_INVALID_MODEL, "%s: quantized_dimension %d is out of range for rank %d", f->where,
                            qdim, t->rank);
        if ((uint32_t)t->shape[qdim] != nsc)
            return tt_error(TT_INVALID_MODEL, "%s: %u per-channel scales, but dimension %d has size %d", f->where,
                            nsc, qdim, t->shape[qdim]);
    }
    float *scale = (float *)tt_arena_alloc(a, sizeof(float) * nsc);
    int64_t *zero = (int64_t *)tt_arena_alloc(a, sizeof(int64_t) * nsc);
    if (!scale || !zero) return tt_error(TT_OUT_OF_MEMORY, "%s: out of memory", f->where);
    for (uint32_t i = 0; i < nsc; i++) {
        uint32_t u = ld32(f->buf + sc + 4 * (size_t)i);
        memcpy(&scale[i], &u, 4);
        if (!isfinite(scale[i]))
            return tt_error(TT_INVALID_MODEL, "%s: quantization scale %u is not finite", f->where, i);
        zero[i] = nzp ? (int64_t)ld64(f->buf + zp + 8 * (size_t)i) : 0;
    }
    t->quant.n = (int32_t)nsc;
    t->quant.quantized_dimension = nsc > 1 ? qdim : 0;
    t->quant.scale = scale;
    t->quant.zero_point = zero;
    return TT_OK;
}

/* Converts the raw constant bytes `p` [t->size elements of t->type] into data/idata. */
static tt_status convert_constant(fb *f, const uint8_t *p, tt_tensor *t, tt_arena *a) {
    int64_t n = t->size;
    if (t->type == TT_TFLITE_FLOAT32 || t->type == TT_TFLITE_FLOAT16 || t->quant.n > 0) {
        float *d = (float *)tt_arena_alloc(a, sizeof(float) * (size_t)n);
        if (!d) return tt_error(TT_OUT_OF_MEMORY, "%s: out of memory for %lld values", f->where, (long long)n);
        if (t->type == TT_TFLITE_FLOAT32) {
            for (int64_t i = 0; i < n; i++) {
                uint32_t u = ld32(p + 4 * i);
                memcpy(&d[i], &u, 4);
            }
        } else if (t->type == TT_TFLITE_FLOAT16) {
            for (int64_t i = 0; i < n; i++) d[i] = half_to_float(ld16(p + 2 * i));
        } else {
            /* w = scale[c] * (q - zero_point[c]), c = index along quantized_dimension. */
            int64_t inner = 1, channels = t->quant.n;
            if (channels > 1)
                for (int32_t k = t->quant.quantized_dimension + 1; k < t->rank; k++) inner *= t->shape[k];
            for (int64_t i = 0; i < n; i++) {
                int64_t c = channels > 1 ? (i / inner) % channels : 0;
                d[i] = (float)((double)t->quant.scale[c] * (double)(raw_int(p, t->type, i) - t->quant.zero_point[c]));
            }
        }
        t->data = d;
    } else {
        int32_t *d = (int32_t *)tt_arena_alloc(a, sizeof(int32_t) * (size_t)n);
        if (!d) return tt_error(TT_OUT_OF_MEMORY, "%s: out of memory for %lld values", f->where, (long long)n);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = raw_int(p, t->type, i);
            if (v < INT32_MIN || v > INT32_MAX)
                return tt_error(TT_UNSUPPORTED, "%s: int64 value %lld at element %lld does not fit in int32",
                                f->where, (long long)v, (long long)i);
            d[i] = (int32_t)v;
        }
        t->idata = d;
    }
    return TT_OK;
}

static tt_status read_tensor(fb *f, const fb_table *tt, const fb_table *model, size_t buffers, uint32_t n_buffers,
                             tt_tensor *t, tt_arena *a) {
    tt_status s;
    size_t shp, qpos;
    uint32_t rank, buffer;
    int32_t type;
    if ((s = fb_string(f, tt, 3, a, &t->name))) return s;
    size_t wl = strlen(f->where);
    snprintf(f->where + wl, sizeof f->where - wl, " ('%.60s')", t->name);
    if ((s = fb_vector(f, tt, 0, 4, &shp, &rank))) return s;
    if (rank > TT_MAX_RANK)
        return tt_error(TT_UNSUPPORTED, "%s: rank %u is above the supported %d", f->where, rank, TT_MAX_RANK);
    t->rank = (int32_t)rank;
    t->size = 1;
    for (uint32_t i = 0; i < rank; i++) {
        int32_t d = (int32_t)ld32(f->buf + shp + 4 * (size_t)i);
        if (d < 1)
            return tt_error(TT_INVALID_MODEL, "%s: dimension %u is %d; dimensions must be >= 1", f->where, i, d);
        t->shape[i] = d;
        if (t->size > ((int64_t)1 << 40) / d)
            return tt_error(TT_INVALID_MODEL, "%s: shape has more than 2^40 elements", f->where);
        t->size *= d;
    }
    uint8_t type_u8;
    if ((s = fb_u8(f, tt, 1, 0, &type_u8))) return s;
    type = (int8_t)type_u8;
    t->type = (tt_tflite_type)type;
    size_t esize = type_size(type);
    if (esize == 0)
        return tt_error(TT_UNSUPPORTED, "%s: type %s (%d) is not supported; supported: FLOAT32, FLOAT16, INT8, UINT8, "
                        "INT32, INT64", f->where, type_name(type), type);
    if ((s = fb_deref(f, tt, 4, &qpos))) return s;
    if (qpos && (s = read_quant(f, qpos, t, a))) return s;

    int32_t buf_i32;
    if ((s = fb_i32(f, tt, 2, 0, &buf_i32))) return s;
    buffer = (uint32_t)buf_i32;
    if (buffer >= n_buffers)
        return tt_error(TT_INVALID_MODEL, "%s: buffer index %u is out of range (the model has %u buffers)", f->where,
                        buffer, n_buffers);
    if (buffer == 0) return TT_OK; /* buffer 0 is the empty sentinel: an activation */
    fb_table bt;
    if ((s = fb_vector_table(f, buffers, buffer, &bt))) return s;
    size_t data;
    uint32_t nbytes;
    uint64_t ext_off, ext_size;
    if ((s = fb_vector(f, &bt, 0, 1, &data, &nbytes)) || (s = fb_u64(f, &bt, 1, &ext_off)) ||
        (s = fb_u64(f, &bt, 2, &ext_size)))
        return s;
    const uint8_t *p = NULL;
    uint64_t have = nbytes;
    if (nbytes) {
        p = f->buf + data;
    } else if (ext_off > 1) { /* large models keep data after the flatbuffer, at Buffer.offset */
        if (ext_off > f->len || ext_size > f->len - ext_off)
            return tt_error(TT_INVALID_MODEL, "%s: buffer %u (offset %llu, size %llu) lies past the end of the file "
                            "(%zu bytes)", f->where, buffer, (unsigned long long)ext_off,
                            (unsigned long long)ext_size, f->len);
        p = f->buf + ext_off;
        have = ext_size;
    }
    if (!p) return TT_OK; /* empty buffer: an activation */
    uint64_t want = (uint64_t)t->size * esize;
    if (have != want)
    {
        char sh[96];
        return tt_error(TT_INVALID_MODEL, "%s: buffer %u holds %llu bytes, but shape %s of %s needs %llu", f->where,
                        buffer, (unsigned long long)have, shape_str(t, sh), type_name(type), (unsigned long long)want);
    }
    (void)model;
    return convert_constant(f, p, t, a);
}

/* ---- operators -------------------------------------------------------------- */

struct tt_options {
    fb *f;
    fb_table t; /* vt_size 0 when the op has no options table: every field reads as absent */
};

tt_status tt_options_u8(const tt_options *o, int field, uint8_t dflt, uint8_t *out) {
    return fb_u8(o->f, &o->t, field, dflt, out);
}
tt_status tt_options_i32(const tt_options *o, int field, int32_t dflt, int32_t *out) {
    return fb_i32(o->f, &o->t, field, dflt, out);
}
tt_status tt_options_f32(const tt_options *o, int field, float dflt, float *out) {
    return fb_f32(o->f, &o->t, field, dflt, out);
}
const char *tt_options_where(const tt_options *o) { return o->f->where; }

tt_status tt_options_activation(const tt_options *o, int32_t act, tt_op *op) {
    if (act == TT_ACT_NONE || act == TT_ACT_RELU || act == TT_ACT_RELU6) {
        op->activation = (tt_activation)act;
        return TT_OK;
    }
    return tt_error(TT_UNSUPPORTED, "%s has fused activation %s (%d), which is not supported; supported: NONE, RELU, "
                    "RELU6", o->f->where, activation_name(act), act);
}

tt_status tt_options_window(const tt_options *o, const tt_op *op, int dilation, int filter) {
    const char *where = o->f->where;
    if (op->padding != TT_PADDING_SAME && op->padding != TT_PADDING_VALID)
        return tt_error(TT_INVALID_MODEL, "%s: padding %d is neither SAME (0) nor VALID (1)", where, op->padding);
    if (op->stride_h < 1 || op->stride_w < 1)
        return tt_error(TT_INVALID_MODEL, "%s: strides must be >= 1, got stride_h=%d, stride_w=%d", where,
                        op->stride_h, op->stride_w);
    if (dilation && (op->dilation_h < 1 || op->dilation_w < 1))
        return tt_error(TT_INVALID_MODEL, "%s: dilations must be >= 1, got %d, %d", where, op->dilation_h,
                        op->dilation_w);
    if (filter && (op->filter_h < 1 || op->filter_w < 1))
        return tt_error(TT_INVALID_MODEL, "%s: pool filter must be >= 1, got filter_height=%d, filter_width=%d",
                        where, op->filter_h, op->filter_w);
    return TT_OK;
}

tt_status tt_require_const(const tt_model *m, const tt_op *op, int k, const char *what, int integer,
                           const char *where) {
    int32_t ti = op->inputs[k];
    const tt_tensor *t = &m->tensors[ti];
    if (integer ? t->idata == NULL : t->data == NULL)
        return tt_error(TT_INVALID_MODEL, "%s: %s (input %d, tensor %d '%.60s') must be a constant %s tensor with data",
                        where, what, k, ti, t->name, integer ? "integer" : "float or quantized");
    return TT_OK;
}

tt_status tt_require_bias(const tt_model *m, const tt_op *op, int32_t out_c, const char *where) {
    if (op->n_inputs <= 2 || op->inputs[2] < 0) return TT_OK; /* no bias: optional in TFLite */
    tt_status s = tt_require_const(m, op, 2, "bias", 0, where);
    if (s) return s;
    const tt_tensor *b = &m->tensors[op->inputs[2]];
    if (b->size != out_c)
        return tt_error(TT_INVALID_MODEL, "%s: bias tensor %d has %lld values, expected %d (output channels)", where,
                        op->inputs[2], (long long)b->size, out_c);
    return TT_OK;
}

/* "CONV_2D, DEPTHWISE_CONV_2D, ..." of the resolver into buf. */
static const char *supported_list(const tt_op_resolver *ops, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t k = 0; k < ops->n && used < n; k++)
        used += (size_t)snprintf(buf + used, n - used, k ? ", %s" : "%s", ops->kinds[k]->name);
    return buf;
}

static tt_status read_op(fb *f, const fb_table *ot, const int32_t *codes, uint32_t n_codes, const tt_op_resolver *ops,
                         tt_model *m, tt_op *op, int32_t index) {
    tt_status s;
    int32_t opcode_index;
    if ((s = fb_i32(f, ot, 0, 0, &opcode_index))) return s;
    if ((uint32_t)opcode_index >= n_codes)
        return tt_error(TT_INVALID_MODEL, "%s: opcode_index %u is out of range (the model has %u operator codes)",
                        f->where, (uint32_t)opcode_index, n_codes);
    int32_t code = codes[opcode_index];
    op->builtin_code = code;
    const tt_op_kind *kind = NULL;
    for (int32_t k = 0; k < ops->n; k++)
        if (ops->kinds[k]->builtin_code == code) kind = ops->kinds[k];
    if (!kind) {
        char list[512];
        return tt_error(TT_UNSUPPORTED, "operator %d is %s (builtin code %d), which is not supported; supported: %s",
                        index, tt_builtin_name(code), code, supported_list(ops, list, sizeof list));
    }
    op->type = kind->type;
    op->kind = kind;
    snprintf(f->where, sizeof f->where, "operator %d (%s)", index, tt_builtin_name(code));

    size_t ins, outs;
    uint32_t n_in, n_out;
    if ((s = fb_vector(f, ot, 1, 4, &ins, &n_in)) || (s = fb_vector(f, ot, 2, 4, &outs, &n_out))) return s;
    if ((int32_t)n_in < kind->min_inputs || (int32_t)n_in > kind->max_inputs)
        return tt_error(n_in > TT_MAX_OP_INPUTS ? TT_UNSUPPORTED : TT_INVALID_MODEL,
                        "%s has %u inputs, expected %d to %d", f->where, n_in, kind->min_inputs, kind->max_inputs);
    if (n_out != 1) return tt_error(TT_INVALID_MODEL, "%s has %u outputs, expected 1", f->where, n_out);
    op->n_inputs = (int32_t)n_in;
    for (int k = 0; k < TT_MAX_OP_INPUTS; k++) op->inputs[k] = -1;
    for (uint32_t k = 0; k < n_in; k++) {
        int32_t ti = (int32_t)ld32(f->buf + ins + 4 * (size_t)k);
        if (ti < -1 || ti >= m->n_tensors)
            return tt_error(TT_INVALID_MODEL, "%s: input %u refers to tensor %d, out of range (the model has %d "
                            "tensors)", f->where, k, ti, m->n_tensors);
        op->inputs[k] = ti;
    }
    op->output = (int32_t)ld32(f->buf + outs);
    if (op->output < 0 || op->output >= m->n_tensors)
        return tt_error(TT_INVALID_MODEL, "%s: output refers to tensor %d, out of range (the model has %d tensors)",
                        f->where, op->output, m->n_tensors);

    uint8_t opt_type;
    size_t opt_pos;
    if ((s = fb_u8(f, ot, 3, 0, &opt_type)) || (s = fb_deref(f, ot, 4, &opt_pos))) return s;
    tt_options o = {.f = f};
    if (opt_pos && opt_type != 0) {
        if (opt_type != kind->options_type)
            return tt_error(TT_INVALID_MODEL, "%s: builtin options have union type %d, expected %d", f->where, opt_type,
                            kind->options_type);
        if ((s = fb_open_table(f, opt_pos, &o.t))) return s;
    }
    op->dilation_h = op->dilation_w = 1;
    if (kind->parse && (s = kind->parse(&o, op))) return s;

    for (int k = 0; k < op->n_inputs; k++)
        if (op->inputs[k] < 0 && !(kind->optional_inputs & (1u << k)))
            return tt_error(TT_INVALID_MODEL, "%s: input %d is missing (-1) but required", f->where, k);
    if (m->tensors[op->output].data || m->tensors[op->output].idata)
        return tt_error(TT_INVALID_MODEL, "%s: output tensor %d is a constant", f->where, op->output);
    return kind->check ? kind->check(m, op, f->where) : TT_OK;
}

/* ---- model ------------------------------------------------------------------ */

static tt_status read_index_vector(fb *f, const fb_table *t, int idx, const tt_model *m, tt_arena *a,
                                   const char *what, int32_t *n_out, const int32_t **out) {
    size_t v;
    uint32_t n;
    tt_status s = fb_vector(f, t, idx, 4, &v, &n);
    if (s) return s;
    int32_t *d = (int32_t *)tt_arena_alloc(a, sizeof(int32_t) * ((size_t)n + 1));
    if (!d) return tt_error(TT_OUT_OF_MEMORY, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        d[i] = (int32_t)ld32(f->buf + v + 4 * (size_t)i);
        if (d[i] < 0 || d[i] >= m->n_tensors)
            return tt_error(TT_INVALID_MODEL, "subgraph 0: %s %u refers to tensor %d, out of range (the model has %d "
                            "tensors)", what, i, d[i], m->n_tensors);
    }
    *n_out = (int32_t)n;
    *out = d;
    return TT_OK;
}

static tt_status parse(fb *f, tt_arena *a, const tt_op_resolver *ops, tt_model *m) {
    tt_status s;
    snprintf(f->where, sizeof f->where, "model header");
    if (f->len < 8) return tt_error(TT_INVALID_MODEL, "file is too short for a TFLite model (%zu bytes; a flatbuffer "
                                    "needs at least 8)", f->len);
    if (memcmp(f->buf + 4, "TFL3", 4) != 0) {
        char id[20];
        snprintf(id, sizeof id, "%02x %02x %02x %02x", f->buf[4], f->buf[5], f->buf[6], f->buf[7]);
        return tt_error(TT_INVALID_MODEL, "not a TFLite model: file identifier (bytes 4..7) is %s, expected \"TFL3\"",
                        id);
    }
    uint32_t root = ld32(f->buf);
    fb_table model, sg;
    snprintf(f->where, sizeof f->where, "Model table");
    if ((s = fb_open_table(f, root, &model))) return s;
    if ((s = fb_i32(f, &model, 0, 0, (int32_t *)&m->version))) return s;
    if ((s = fb_string(f, &model, 3, a, &m->description))) return s;

    size_t codes_v, subgraphs_v, buffers_v;
    uint32_t n_codes, n_subgraphs, n_buffers;
    snprintf(f->where, sizeof f->where, "Model.operator_codes");
    if ((s = fb_vector(f, &model, 1, 4, &codes_v, &n_codes))) return s;
    snprintf(f->where, sizeof f->where, "Model.subgraphs");
    if ((s = fb_vector(f, &model, 2, 4, &subgraphs_v, &n_subgraphs))) return s;
    snprintf(f->where, sizeof f->where, "Model.buffers");
    if ((s = fb_vector(f, &model, 4, 4, &buffers_v, &n_buffers))) return s;
    if (n_subgraphs == 0) return tt_error(TT_INVALID_MODEL, "the model has no subgraph");

    int32_t *codes = (int32_t *)tt_arena_alloc(a, sizeof(int32_t) * ((size_t)n_codes + 1));
    if (!codes) return tt_error(TT_OUT_OF_MEMORY, "out of memory");
    for (uint32_t i = 0; i < n_codes; i++) {
        fb_table ct;
        uint8_t dep;
        int32_t code;
        snprintf(f->where, sizeof f->where, "operator code %u", i);
        if ((s = fb_vector_table(f, codes_v, i, &ct)) || (s = fb_u8(f, &ct, 0, 0, &dep)) ||
            (s = fb_i32(f, &ct, 3, 0, &code)))
            return s;
        /* Old files only have the int8 field, new ones write 127 there for codes above it:
         * TFLite takes the larger of the two. */
        int32_t d = (int8_t)dep;
        codes[i] = d > code ? d : code;
    }

    snprintf(f->where, sizeof f->where, "subgraph 0");
    if ((s = fb_vector_table(f, subgraphs_v, 0, &sg))) return s;
    size_t tensors_v, ops_v;
    uint32_t n_tensors, n_ops;
    if ((s = fb_vector(f, &sg, 0, 4, &tensors_v, &n_tensors)) || (s = fb_vector(f, &sg, 3, 4, &ops_v, &n_ops)))
        return s;
    m->n_tensors = (int32_t)n_tensors;
    m->tensors = (tt_tensor *)tt_arena_alloc(a, sizeof(tt_tensor) * ((size_t)n_tensors + 1));
    m->n_ops = (int32_t)n_ops;
    m->ops = (tt_op *)tt_arena_alloc(a, sizeof(tt_op) * ((size_t)n_ops + 1));
    if (!m->tensors || !m->ops) return tt_error(TT_OUT_OF_MEMORY, "out of memory");
    for (uint32_t i = 0; i < n_tensors; i++) {
        fb_table tt;
        snprintf(f->where, sizeof f->where, "tensor %u", i);
        if ((s = fb_vector_table(f, tensors_v, i, &tt))) return s;
        if ((s = read_tensor(f, &tt, &model, buffers_v, n_buffers, &m->tensors[i], a))) return s;
    }
    snprintf(f->where, sizeof f->where, "subgraph 0");
    if ((s = read_index_vector(f, &sg, 1, m, a, "input", &m->n_inputs, &m->inputs)) ||
        (s = read_index_vector(f, &sg, 2, m, a, "output", &m->n_outputs, &m->outputs)))
        return s;
    for (uint32_t i = 0; i < n_ops; i++) {
        fb_table ot;
        snprintf(f->where, sizeof f->where, "operator %u", i);
        if ((s = fb_vector_table(f, ops_v, i, &ot))) return s;
        if ((s = read_op(f, &ot, codes, n_codes, ops, m, &m->ops[i], (int32_t)i))) return s;
    }
    return TT_OK;
}

tt_status tt_model_load(const uint8_t *buf, size_t len, const tt_op_resolver *ops, tt_model **out) {
    *out = NULL;
    if ((!buf && len) || !ops) return tt_error(TT_INVALID_ARGUMENT, "tt_model_load: NULL buffer or op table");
    if (len == 0) return tt_error(TT_INVALID_MODEL, "the model is empty (0 bytes)");
    if (len > 0x7fffffffu)
        return tt_error(TT_UNSUPPORTED, "the model has %zu bytes; flatbuffers above 2 GiB are not supported", len);
    tt_arena *a = tt_arena_create();
    fb *f = (fb *)calloc(1, sizeof *f);
    tt_model *m = NULL;
    tt_status s = TT_OK;
    if (!a || !f) {
        s = tt_error(TT_OUT_OF_MEMORY, "out of memory");
        goto error;
    }
    m = (tt_model *)tt_arena_alloc(a, sizeof *m);
    if (!m) {
        s = tt_error(TT_OUT_OF_MEMORY, "out of memory");
        goto error;
    }
    m->arena = a;
    m->description = "";
    f->buf = buf;
    f->len = len;
    if ((s = parse(f, a, ops, m))) goto error;
    free(f);
    *out = m;
    return TT_OK;
error:
    free(f);
    tt_arena_free(a);
    return s;
}

void tt_model_destroy(tt_model *model) {
    if (model) tt_arena_free((tt_arena *)model->arena);
}

tt_status tt_model_set_constant(tt_model *model, int32_t tensor, const float *data, int64_t size) {
    if (tensor < 0 || tensor >= model->n_tensors || !model->tensors[tensor].data)
        return tt_error(TT_INVALID_ARGUMENT, "tensor %d is not a float constant of the model", tensor);
    if (size != model->tensors[tensor].size)
        return tt_error(TT_INVALID_ARGUMENT, "tensor %d ('%s') has %lld values, got %lld", tensor,
                        model->tensors[tensor].name, (long long)model->tensors[tensor].size, (long long)size);
    /* the arena owns the data; the model hands it out as const to readers only */
    memcpy((float *)model->tensors[tensor].data, data, sizeof(float) * (size_t)size);
    return TT_OK;
}
