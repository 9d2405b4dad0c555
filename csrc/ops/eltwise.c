/* eltwise.c - ADD (oneDNN binary add, with NumPy broadcasting), SOFTMAX
 * (oneDNN softmax over the last TFLite axis) and in-place eltwise activations.
 * Below the training boundary the residual ADD of MobileNetV2 never gets here:
 * plan.c folds it into the projecting conv as a sum post-op (conv.c).
 */
#include "engine/tt_build.h"
#include "ops/tt_ops.h"

#include <math.h>
#include <string.h>

/* ---- reader and shapes --------------------------------------------------------------- */

/* AddOptions. */
static tt_status add_parse(const tt_options *o, tt_op *op) {
    uint8_t act = 0;
    tt_status s = tt_options_u8(o, 0, 0, &act);
    return s ? s : tt_options_activation(o, (int8_t)act, op);
}

/* SoftmaxOptions. */
static tt_status softmax_parse(const tt_options *o, tt_op *op) {
    tt_status s = tt_options_f32(o, 0, 0.0f, &op->beta);
    if (s) return s;
    if (!isfinite(op->beta) || op->beta <= 0.0f)
        return tt_error(TT_INVALID_MODEL, "%s: softmax beta must be a positive finite number, got %g",
                        tt_options_where(o), (double)op->beta);
    return TT_OK;
}

/* a, b: NumPy-broadcastable -> the broadcast shape. */
static tt_status add_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0, t1;
    char b1[128], b2[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    const tt_shape *y = tt_input_shape(m, shapes, &t1, op->inputs[1]);
    int32_t r = x->rank > y->rank ? x->rank : y->rank;
    out->rank = r;
    for (int32_t k = 0; k < r; k++) {
        int64_t a = k - (r - x->rank) >= 0 ? x->d[k - (r - x->rank)] : 1;
        int64_t b = k - (r - y->rank) >= 0 ? y->d[k - (r - y->rank)] : 1;
        if (a != b && a != 1 && b != 1)
            return tt_error(TT_INVALID_ARGUMENT, "operator %d (ADD): shapes %s and %s cannot be broadcast", i,
                            tt_shape_str(x, b1), tt_shape_str(y, b2));
        out->d[k] = a > b ? a : b;
    }
    return TT_OK;
}

/* y has x's shape (SOFTMAX, QUANTIZE, DEQUANTIZE). */
tt_status tt_same_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    tt_shape t0;
    *out = *tt_input_shape(m, shapes, &t0, m->ops[i].inputs[0]);
    return TT_OK;
}

/* Memory for ADD operand tensor t (activation value or constant), with logical
 * dims broadcast-aligned to `rank` (oneDNN order). */
static dnnl_memory_t operand(tt_engine *e, int32_t i, int32_t t, int32_t rank, dnnl_memory_desc_t *md) {
    const tt_tensor *tt = &e->model->tensors[t];
    if (tt->data) {
        tt_shape s = {.rank = rank};
        for (int32_t k = 0; k < rank; k++) {
            int32_t src = k - (rank - tt->rank);
            s.d[k] = src >= 0 ? tt->shape[src] : 1;
        }
        *md = tt_md_for_shape(e, &s);
        if (!*md) return NULL;
        return tt_const_memory(e, i, tt->data, *md, *md);
    }
    int32_t v = tt_input_value(e, i, t);
    if (v < 0) return NULL;
    *md = e->values[v].md;
    return e->values[v].mem;
}

/* True when tensor t, right-aligned, already has the full output shape y. */
static bool full_size(tt_engine *e, int32_t t, const tt_shape *y) {
    const tt_tensor *tt = &e->model->tensors[t];
    int32_t rank = tt->data ? tt->rank : e->shapes[t].rank;
    int64_t total = 1, ytotal = 1;
    for (int32_t k = 0; k < rank; k++) total *= tt->data ? tt->shape[k] : e->shapes[t].d[k];
    for (int32_t k = 0; k < y->rank; k++) ytotal *= y->d[k];
    return total == ytotal;
}

/* Builds op i. a, b: broadcastable shapes (NumPy rules); y: the broadcast shape.
 * Nothing to build when its conv computed it with a sum post-op (op_done). */
/* ADD in an INT8_TFLITE engine: a, b s8 in one layout (NHWC, the convolutions' outputs),
 * y s8 in it with the output tensor's quantization, by TFLite's integer ADD (engine/quant.c). */
static tt_status add_forward_int8_tflite(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t av = tt_input_value(e, i, op->inputs[0]), bv = tt_input_value(e, i, op->inputs[1]);
    if (av < 0 || bv < 0) return TT_INVALID_MODEL;
    tt_value *a = &e->values[av], *b = &e->values[bv];
    if (tt_md_dt(a->md) != dnnl_s8 || tt_md_dt(b->md) != dnnl_s8 || !(a->qscale > 0.f) || !(b->qscale > 0.f) ||
        !dnnl_memory_desc_equal(a->md, b->md))
        return tt_error(TT_UNSUPPORTED, "operator %d (ADD): TFLite int8 arithmetic needs two int8 operands of one "
                        "shape and layout", i);
    float ys;
    int32_t yz;
    tt_status s = tt_tensor_qparams(e, i, op->output, &ys, &yz);
    if (s) return s;
    int32_t yv = tt_new_value(e, op->output, a->md, e->last_use[op->output]);
    if (yv < 0) return TT_RUNTIME_ERROR;
    a = &e->values[av]; /* tt_new_value may have moved the values array */
    b = &e->values[bv];
    e->values[yv].qscale = ys;
    e->values[yv].qzp = yz;
    return tt_add_int8_add_step(e, a->mem, b->mem, e->values[yv].mem, (int64_t)dnnl_memory_desc_get_size(a->md),
                                a->qscale, a->qzp, b->qscale, b->qzp, ys, yz, op->activation);
}

static tt_status add_forward(tt_engine *e, int32_t i) {
    if (e->op_done[i]) return TT_OK;
    if (e->precision == TT_PRECISION_INT8_TFLITE) return add_forward_int8_tflite(e, i);
    const tt_op *op = &e->model->ops[i];
    const tt_shape *y = &e->shapes[op->output];
    /* oneDNN broadcasts src1 only: the full-size operand goes first. */
    int32_t ta = op->inputs[0], tb = op->inputs[1];
    if (!full_size(e, ta, y)) {
        ta = op->inputs[1];
        tb = op->inputs[0];
    }
    if (!full_size(e, ta, y))
        return tt_error(TT_UNSUPPORTED, "operator %d (ADD): broadcasting both operands is not supported", i);
    dnnl_memory_desc_t a_md, b_md;
    dnnl_memory_t a = operand(e, i, ta, y->rank, &a_md);
    dnnl_memory_t b = a ? operand(e, i, tb, y->rank, &b_md) : NULL;
    if (!a || !b) return TT_RUNTIME_ERROR;
    if (tt_md_ndims(a_md) != tt_md_ndims(b_md))
        return tt_error(TT_UNSUPPORTED, "operator %d (ADD): operands of different ranks in this layout", i);
    int64_t ad[DNNL_MAX_NDIMS], bd[DNNL_MAX_NDIMS];
    tt_md_dims(a_md, ad);
    tt_md_dims(b_md, bd);
    /* Same shape, different layouts: give src1 src0's layout so the kernel streams both alike. */
    if (memcmp(ad, bd, sizeof ad) == 0 && !dnnl_memory_desc_equal(a_md, b_md) && !e->model->tensors[tb].data) {
        b = tt_value_as(e, i, e->tensor_value[tb], a_md);
        if (!b) return TT_RUNTIME_ERROR;
        b_md = a_md;
    }
    /* the output keeps the operands' data type (bf16 in a bfloat16 engine) */
    dnnl_memory_desc_t dst_any = tt_md_tag_dt(e, tt_md_ndims(a_md), ad, tt_md_dt(a_md), dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = dst_any ? tt_attr(e, i, op->activation, false, &attr) : TT_RUNTIME_ERROR;
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_binary_primitive_desc_create(&pd, e->eng, dnnl_binary_add, a_md, b_md, dst_any, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "binary add descriptor", st);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int32_t yv = tt_new_value(e, op->output, dst_md, e->last_use[op->output]);
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, e->values[yv].mem}};
    return tt_add_forward(e, i, pd, 3, args);
}

/* Backward of op i (same-shape operands; the residual ADD): dL/da = dL/db = dL/dy
 * (through the fused activation's backward from the saved y), shared, not copied. */
static tt_status add_backward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    const tt_shape *y = &e->shapes[op->output];
    int32_t d = -1;
    for (int k = 0; k < 2; k++) {
        int32_t t = op->inputs[k];
        if (!tt_wants_grad(e, t)) continue;
        if (memcmp(&e->shapes[t], y, sizeof *y) != 0)
            return tt_error(TT_UNSUPPORTED, "operator %d (ADD): backward of a broadcasting ADD is not supported", i);
        if (d < 0 && (d = tt_activation_backward(e, i, op->activation, e->tensor_value[op->output],
                                                 tt_grad(e, op->output))) < 0)
            return TT_RUNTIME_ERROR;
        tt_status s = tt_grad_share(e, i, t, d);
        if (s) return s;
    }
    return TT_OK;
}

tt_status tt_eltwise_forward_inplace(tt_engine *e, int32_t i, int32_t v, int alg, float alpha, float beta) {
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_eltwise_forward_primitive_desc_create(&pd, e->eng, dnnl_forward_inference, (dnnl_alg_kind_t)alg,
                                                                  e->values[v].md, e->values[v].md, alpha, beta, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "eltwise descriptor", st);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, e->values[v].mem}, {DNNL_ARG_DST, e->values[v].mem}};
    return tt_add_primitive(e, i, pd, 2, args);
}

/* Builds op i. x: any shape; y = softmax(beta * x) over the last TFLite axis, same shape. */
static tt_status softmax_forward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    /* Plain layout: the last TFLite axis is logical dim 1 for rank 4 (NHWC), the last otherwise. */
    dnnl_memory_desc_t plain = tt_md_plain_like(e, e->values[xv].md);
    if (!plain) return TT_RUNTIME_ERROR;
    int nd = tt_md_ndims(plain);
    int axis = nd == 4 ? 1 : nd - 1;
    dnnl_memory_t src = tt_value_as(e, i, xv, plain);
    if (!src) return TT_RUNTIME_ERROR;
    if (op->beta != 1.0f) {
        /* softmax(beta * x): scale a private copy so the input value stays intact */
        int32_t tv = tt_new_value(e, -1, plain, i);
        if (tv < 0) return TT_RUNTIME_ERROR;
        dnnl_primitive_attr_t attr = NULL;
        tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
        if (s) return s;
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t st = dnnl_eltwise_forward_primitive_desc_create(&pd, e->eng, dnnl_forward_inference,
                                                                      dnnl_eltwise_linear, plain, plain, op->beta,
                                                                      0.0f, attr);
        dnnl_primitive_attr_destroy(attr);
        if (st != dnnl_success) return tt_dnnl_fail(e, i, "eltwise descriptor", st);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, e->values[tv].mem}};
        if ((s = tt_add_primitive(e, i, pd, 2, args))) return s;
        src = e->values[tv].mem;
    }
    int32_t yv = tt_new_value(e, op->output, plain, e->last_use[op->output]);
    if (yv < 0) return TT_RUNTIME_ERROR;
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_softmax_forward_primitive_desc_create(&pd, e->eng, dnnl_forward_inference,
                                                                  dnnl_softmax_accurate, plain, plain, axis, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "softmax descriptor", st);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, e->values[yv].mem}};
    return tt_add_primitive(e, i, pd, 2, args);
}

/* ---- table entries --------------------------------------------------------------------- */

const tt_op_kind tt_op_add = {
    .name = "ADD", .builtin_code = 0, .type = TT_OP_ADD, .options_type = 11, .min_inputs = 2, .max_inputs = 2,
    .fields = TT_FIELD_ACTIVATION, .parse = add_parse, .shape = add_shape, .forward = add_forward,
    .backward = add_backward,
};

const tt_op_kind tt_op_softmax = {
    .name = "SOFTMAX", .builtin_code = 25, .type = TT_OP_SOFTMAX, .options_type = 9, .min_inputs = 1,
    .max_inputs = 1, .fields = TT_FIELD_BETA, .parse = softmax_parse, .shape = tt_same_shape,
    .forward = softmax_forward,
};
