/* shape.c - ops that move bytes without arithmetic: RESHAPE (a view of the
 * plain bytes), QUANTIZE / DEQUANTIZE (identity in float: a view), CONCATENATION
 * (oneDNN concat) and PAD (constant zero, plain C on NHWC).
 */
#include "engine/tt_build.h"
#include "ops/tt_ops.h"

#include <string.h>

/* ---- reader and shapes ----------------------------------------------------------------- */

/* ConcatenationOptions. */
static tt_status concat_parse(const tt_options *o, tt_op *op) {
    uint8_t act = 0;
    tt_status s;
    if ((s = tt_options_i32(o, 0, 0, &op->axis)) || (s = tt_options_u8(o, 1, 0, &act))) return s;
    return tt_options_activation(o, (int8_t)act, op);
}

/* paddings: constant int32 [rank, 2]. */
static tt_status pad_check(const tt_model *m, const tt_op *op, const char *where) {
    tt_status s = tt_require_const(m, op, 1, "paddings", 1, where);
    if (s) return s;
    const tt_tensor *p = &m->tensors[op->inputs[1]];
    if (p->rank != 2 || p->shape[1] != 2)
        return tt_error(TT_INVALID_MODEL, "%s: paddings tensor %d must have shape [rank, 2]", where, op->inputs[1]);
    return TT_OK;
}

/* x [N, H, W, C] -> padded by the constant paddings (before, after per dim). */
static tt_status pad_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0;
    char b1[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    const tt_tensor *p = &m->tensors[op->inputs[1]];
    if (x->rank != 4 || p->shape[0] != 4)
        return tt_error(TT_UNSUPPORTED, "operator %d (PAD): only rank-4 NHWC inputs are supported, got %s", i,
                        tt_shape_str(x, b1));
    *out = *x;
    for (int k = 0; k < 4; k++) {
        if (p->idata[2 * k] < 0 || p->idata[2 * k + 1] < 0)
            return tt_error(TT_UNSUPPORTED, "operator %d (PAD): negative paddings are not supported", i);
        out->d[k] += p->idata[2 * k] + p->idata[2 * k + 1];
    }
    return TT_OK;
}

/* x -> the stored output shape with the batch dimension following x's. */
static tt_status reshape_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0;
    char b1[128], b2[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    const tt_tensor *o = &m->tensors[op->output];
    int64_t total = 1, per = 1;
    for (int32_t k = 0; k < x->rank; k++) total *= x->d[k];
    for (int32_t k = 1; k < o->rank; k++) per *= o->shape[k];
    /* The stored shape is for batch 1: the batch dimension follows N. */
    if (o->rank < 1 || per * x->d[0] != total) {
        tt_shape so = tt_stored_shape(o);
        return tt_error(TT_INVALID_ARGUMENT, "operator %d (RESHAPE): cannot reshape %s into %s with the batch "
                        "dimension following N (an input size other than the model's own?)", i,
                        tt_shape_str(x, b1), tt_shape_str(&so, b2));
    }
    *out = tt_stored_shape(o);
    out->d[0] = x->d[0];
    return TT_OK;
}

/* inputs equal except along axis -> their concatenation. */
static tt_status concat_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0, t1;
    char b1[128], b2[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    int32_t axis = op->axis < 0 ? op->axis + x->rank : op->axis;
    if (axis < 0 || axis >= x->rank)
        return tt_error(TT_INVALID_MODEL, "operator %d (CONCATENATION): axis %d is out of range for rank %d", i,
                        op->axis, x->rank);
    *out = *x;
    for (int32_t k = 1; k < op->n_inputs; k++) {
        const tt_shape *y = tt_input_shape(m, shapes, &t1, op->inputs[k]);
        bool ok = y->rank == x->rank;
        for (int32_t d = 0; ok && d < x->rank; d++) ok = d == axis || y->d[d] == x->d[d];
        if (!ok)
            return tt_error(TT_INVALID_ARGUMENT, "operator %d (CONCATENATION): input shapes %s and %s differ "
                            "outside axis %d", i, tt_shape_str(x, b1), tt_shape_str(y, b2), axis);
        out->d[axis] += y->d[axis];
    }
    return TT_OK;
}

/* Batch padding and concatenation along the batch axis mix images. */
static int pad_mixes(const tt_model *m, int32_t i, const tt_shape *shapes) {
    const int32_t *pads = m->tensors[m->ops[i].inputs[1]].idata;
    return pads[0] || pads[1];
}
static int concat_mixes(const tt_model *m, int32_t i, const tt_shape *shapes) {
    const tt_op *op = &m->ops[i];
    const tt_shape *x = &shapes[op->inputs[0]];
    return op->axis == 0 || op->axis == -x->rank;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* QUANTIZE in an int8 engine: x (float, or int8 with its own scale) -> y s8 with the
 * output tensor's scale and zero point (tt_quantize_value). */
static tt_status quantize_int8(tt_engine *e, int32_t i, int32_t xv) {
    const tt_op *op = &e->model->ops[i];
    int32_t type = e->model->tensors[op->output].type;
    if (type != TT_TFLITE_INT8 && type != TT_TFLITE_UINT8)
        return tt_error(TT_UNSUPPORTED, "operator %d (QUANTIZE): int8 engines keep activations as int8; this one "
                        "outputs another type", i);
    return tt_quantize_value(e, i, xv, op->output) < 0 ? TT_RUNTIME_ERROR : TT_OK;
}

/* Builds op i. RESHAPE: y = x's plain bytes with y's shape; QUANTIZE/DEQUANTIZE: y = x. */
static tt_status reshape_forward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    if (op->type == TT_OP_QUANTIZE && tt_is_int8(e)) return quantize_int8(e, i, xv);
    if (op->type != TT_OP_RESHAPE) return tt_view_value(e, op->output, xv, e->values[xv].md) < 0 ? TT_RUNTIME_ERROR
                                                                                                  : TT_OK;
    int32_t pv = tt_value_plain(e, i, xv);
    dnnl_memory_desc_t md = pv >= 0 ? tt_md_for_shape(e, &e->shapes[op->output]) : NULL;
    if (!md) return TT_RUNTIME_ERROR;
    return tt_view_value(e, op->output, pv, md) < 0 ? TT_RUNTIME_ERROR : TT_OK;
}

/* Builds op i. inputs: equal shapes except along `axis`; y: their concatenation. */
static tt_status concat_forward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    const tt_shape *y = &e->shapes[op->output];
    int32_t axis = op->axis < 0 ? op->axis + y->rank : op->axis;
    static const int nhwc_to_logical[4] = {0, 2, 3, 1};
    int logical = y->rank == 4 ? nhwc_to_logical[axis] : axis;
    const_dnnl_memory_desc_t mds[TT_MAX_OP_INPUTS];
    dnnl_exec_arg_t args[TT_MAX_OP_INPUTS + 1];
    int nd = -1;
    for (int32_t k = 0; k < op->n_inputs; k++) {
        int32_t t = op->inputs[k];
        const tt_tensor *tt = &e->model->tensors[t];
        dnnl_memory_t mem;
        if (tt->data) {
            tt_shape s = {.rank = tt->rank};
            for (int32_t d = 0; d < tt->rank; d++) s.d[d] = tt->shape[d];
            dnnl_memory_desc_t md = tt_md_for_shape(e, &s);
            mem = md ? tt_const_memory(e, i, tt->data, md, md) : NULL;
            mds[k] = md;
        } else {
            int32_t v = tt_input_value(e, i, t);
            if (v < 0) return TT_INVALID_MODEL;
            mem = e->values[v].mem;
            mds[k] = e->values[v].md;
        }
        if (!mem) return TT_RUNTIME_ERROR;
        if (nd >= 0 && tt_md_ndims(mds[k]) != nd)
            return tt_error(TT_UNSUPPORTED, "operator %d (CONCATENATION): inputs have different layouts' ranks", i);
        nd = tt_md_ndims(mds[k]);
        args[k].arg = DNNL_ARG_MULTIPLE_SRC + k;
        args[k].memory = mem;
    }
    if (nd != (y->rank == 0 ? 1 : y->rank) && !(y->rank == 2 && nd == 4))
        return tt_error(TT_UNSUPPORTED, "operator %d (CONCATENATION): unsupported input layout", i);
    if (nd == 4 && y->rank == 2) logical = 1; /* [N, C] stored as {N, C, 1, 1} */
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
    if (s) return s;
    int64_t dd[DNNL_MAX_NDIMS];
    tt_md_dims(mds[0], dd);
    dd[logical] = 0;
    for (int32_t k = 0; k < op->n_inputs; k++) {
        int64_t kd[DNNL_MAX_NDIMS];
        tt_md_dims(mds[k], kd);
        dd[logical] += kd[logical];
    }
    dnnl_memory_desc_t dst_any = tt_md_tag(e, nd, dd, dnnl_format_tag_any);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dst_any ? dnnl_concat_primitive_desc_create(&pd, e->eng, dst_any, op->n_inputs, logical, mds,
                                                                   attr)
                               : dnnl_runtime_error;
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "concat descriptor", st);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int32_t yv = tt_new_value(e, op->output, dst_md, e->last_use[op->output]);
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    args[op->n_inputs].arg = DNNL_ARG_DST;
    args[op->n_inputs].memory = e->values[yv].mem;
    if ((s = tt_add_primitive(e, i, pd, op->n_inputs + 1, args))) return s;
    if (op->activation == TT_ACT_RELU) return tt_eltwise_forward_inplace(e, i, yv, dnnl_eltwise_relu, 0.f, 0.f);
    if (op->activation == TT_ACT_RELU6) return tt_eltwise_forward_inplace(e, i, yv, dnnl_eltwise_clip, 0.f, 6.f);
    return TT_OK;
}

/* p: N, H, W, C of x; ON, OH, OW, OC of y; the leading pads n0, h0, w0, c0.
 * x: [N, H, W, C] NHWC plain; y: [ON, OH, OW, OC] NHWC plain, zeros around x. */
static void pad_kernel(const tt_step *s) {
    void *sp = NULL, *dp = NULL;
    dnnl_memory_get_data_handle(s->args[0].memory, &sp);
    dnnl_memory_get_data_handle(s->args[1].memory, &dp);
    const float *x = (const float *)sp;
    float *y = (float *)dp;
    const int64_t *p = s->p;
    int64_t n_ = p[0], h_ = p[1], w_ = p[2], c_ = p[3], oh = p[5], ow = p[6], oc = p[7];
    memset(y, 0, sizeof(float) * (size_t)(p[4] * oh * ow * oc));
    for (int64_t n = 0; n < n_; n++)
        for (int64_t h = 0; h < h_; h++)
            for (int64_t w = 0; w < w_; w++)
                memcpy(y + (((n + p[8]) * oh + h + p[9]) * ow + w + p[10]) * oc + p[11],
                       x + ((n * h_ + h) * w_ + w) * c_, sizeof(float) * (size_t)c_);
}

/* Builds op i. x: [N, H, W, C]; paddings [4, 2] (before, after per dim); y: padded with zeros. */
static tt_status pad_forward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    const int32_t *pads = e->model->tensors[op->inputs[1]].idata;
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    int32_t pv = tt_value_plain(e, i, xv);
    const tt_shape *x = &e->values[xv].shape, *y = &e->shapes[op->output];
    dnnl_memory_desc_t ymd = pv >= 0 ? tt_md_for_shape(e, y) : NULL;
    int32_t yv = ymd ? tt_new_value(e, op->output, ymd, e->last_use[op->output]) : -1;
    if (yv < 0) return TT_RUNTIME_ERROR;
    int64_t p[12] = {x->d[0], x->d[1], x->d[2], x->d[3], y->d[0], y->d[1], y->d[2], y->d[3],
                     pads[0], pads[2], pads[4], pads[6]};
    return tt_add_c_step(e, pad_kernel, e->values[pv].mem, e->values[yv].mem, p, 12);
}

/* ---- table entries ------------------------------------------------------------------------- */

const tt_op_kind tt_op_pad = {
    .name = "PAD", .builtin_code = 34, .type = TT_OP_PAD, .options_type = 22, .min_inputs = 2, .max_inputs = 2,
    .check = pad_check, .shape = pad_shape, .mixes_images = pad_mixes, .forward = pad_forward,
};

const tt_op_kind tt_op_reshape = {
    .name = "RESHAPE", .builtin_code = 22, .type = TT_OP_RESHAPE, .options_type = 17, .min_inputs = 1,
    .max_inputs = 2, .optional_inputs = (1u << 1) | (1u << 2), .view = 1, .shape = reshape_shape,
    .forward = reshape_forward,
};

const tt_op_kind tt_op_concatenation = {
    .name = "CONCATENATION", .builtin_code = 2, .type = TT_OP_CONCATENATION, .options_type = 10,
    .min_inputs = 1, .max_inputs = TT_MAX_OP_INPUTS, .fields = TT_FIELD_AXIS | TT_FIELD_ACTIVATION,
    .parse = concat_parse, .shape = concat_shape, .mixes_images = concat_mixes, .forward = concat_forward,
};

const tt_op_kind tt_op_quantize = {
    .name = "QUANTIZE", .builtin_code = 114, .type = TT_OP_QUANTIZE, .options_type = 89, .min_inputs = 1,
    .max_inputs = 1, .view = 1, .shape = tt_same_shape, .forward = reshape_forward,
};

const tt_op_kind tt_op_dequantize = {
    .name = "DEQUANTIZE", .builtin_code = 6, .type = TT_OP_DEQUANTIZE, .options_type = 38, .min_inputs = 1,
    .max_inputs = 1, .view = 1, .shape = tt_same_shape, .forward = reshape_forward,
};
