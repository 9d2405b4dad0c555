/* pool.c - AVERAGE_POOL_2D, MAX_POOL_2D and MEAN over H, W as oneDNN pooling.
 *
 * AVERAGE_POOL_2D divides by the number of input pixels under the window
 * (TF's SAME semantics: padding is excluded), so it is pooling_avg_exclude_padding;
 * MAX_POOL_2D ignores padding too. MEAN over axes [1, 2] is a global average pool
 * (kernel = H x W); without keep_dims its [N, C] output keeps the {N, C, 1, 1}
 * layout, whose plain bytes are the [N, C] row-major tensor.
 */
#include "engine/tt_build.h"
#include "ops/tt_ops.h"

#include <string.h>

#define OPNAME(op) tt_builtin_name((op)->builtin_code)

/* ---- reader ------------------------------------------------------------------------ */

/* Pool2DOptions. */
static tt_status pool_parse(const tt_options *o, tt_op *op) {
    tt_status s;
    uint8_t u8 = 0, act = 0;
    if ((s = tt_options_u8(o, 0, 0, &u8)) || (s = tt_options_i32(o, 1, 0, &op->stride_w)) ||
        (s = tt_options_i32(o, 2, 0, &op->stride_h)) || (s = tt_options_i32(o, 3, 0, &op->filter_w)) ||
        (s = tt_options_i32(o, 4, 0, &op->filter_h)) || (s = tt_options_u8(o, 5, 0, &act)))
        return s;
    op->padding = (tt_padding)(int8_t)u8;
    if ((s = tt_options_activation(o, (int8_t)act, op))) return s;
    return tt_options_window(o, op, 0, 1);
}

/* ReducerOptions. */
static tt_status mean_parse(const tt_options *o, tt_op *op) {
    uint8_t u8 = 0;
    tt_status s = tt_options_u8(o, 0, 0, &u8);
    op->keep_dims = u8 != 0;
    return s;
}

/* axes: constant int32. */
static tt_status mean_check(const tt_model *m, const tt_op *op, const char *where) {
    return tt_require_const(m, op, 1, "axes", 1, where);
}

/* ---- shapes ------------------------------------------------------------------------- */

/* x [N, H, W, C] -> [N, OH, OW, C]. */
static tt_status pool_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    const tt_shape *x = &shapes[op->inputs[0]];
    char b1[128];
    if (x->rank != 4)
        return tt_error(TT_UNSUPPORTED, "operator %d (%s): input must be NHWC, got %s", i, OPNAME(op),
                        tt_shape_str(x, b1));
    return tt_window_shape(op, i, x, op->filter_h, op->filter_w, x->d[3], out);
}

/* x [N, H, W, C], axes {1, 2} -> [N, 1, 1, C] (keep_dims) or [N, C]. */
static tt_status mean_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    const tt_shape *x = &shapes[op->inputs[0]];
    const tt_tensor *ax = &m->tensors[op->inputs[1]];
    bool h = false, w = false, other = x->rank != 4;
    for (int64_t k = 0; k < ax->size; k++) {
        int32_t a = ax->idata[k] < 0 ? ax->idata[k] + x->rank : ax->idata[k];
        if (a == 1) h = true;
        else if (a == 2) w = true;
        else other = true;
    }
    if (!h || !w || other)
        return tt_error(TT_UNSUPPORTED, "operator %d (MEAN): only the mean over H and W (axes [1, 2]) of an NHWC "
                        "tensor is supported", i);
    *out = op->keep_dims ? (tt_shape){.rank = 4, .d = {x->d[0], 1, 1, x->d[3]}}
                         : (tt_shape){.rank = 2, .d = {x->d[0], x->d[3]}};
    return TT_OK;
}

/* ---- forward --------------------------------------------------------------------------- */

/* Kernel, strides and paddings of op i on x. */
static void pool_geometry(const tt_op *op, const tt_shape *x, dnnl_dims_t kernel, dnnl_dims_t strides,
                          dnnl_dims_t pad_l, dnnl_dims_t pad_r, int64_t *oh, int64_t *ow) {
    *oh = *ow = 1;
    if (op->type == TT_OP_MEAN) {
        kernel[0] = x->d[1];
        kernel[1] = x->d[2];
        strides[0] = strides[1] = 1;
        return;
    }
    kernel[0] = op->filter_h;
    kernel[1] = op->filter_w;
    strides[0] = op->stride_h;
    strides[1] = op->stride_w;
    tt_tf_padding(op->padding, x->d[1], kernel[0], strides[0], 1, oh, &pad_l[0], &pad_r[0]);
    tt_tf_padding(op->padding, x->d[2], kernel[1], strides[1], 1, ow, &pad_l[1], &pad_r[1]);
}

/* A float temporary (live until now) holding int8 value xv dequantized, in xv's layout. -1 on failure. */
static int32_t dequantize_value(tt_engine *e, int32_t i, int32_t xv) {
    const tt_value *x = &e->values[xv];
    dnnl_format_kind_t kind = dnnl_format_kind_undef;
    dnnl_memory_desc_query(x->md, dnnl_query_format_kind, &kind);
    int32_t inner = 0;
    dnnl_memory_desc_query(x->md, dnnl_query_inner_nblks_s32, &inner);
    /* same strides when xv has no inner blocks (plain or blocked-as-strides NHWC/nchw), else plain */
    dnnl_memory_desc_t md = inner == 0 && kind == dnnl_blocked ? tt_md_strided_like(e, x->md, dnnl_f32)
                                                               : tt_md_plain_like(e, x->md);
    float qs = x->qscale;
    int32_t qz = x->qzp;
    int32_t v = md ? tt_new_value(e, -1, md, e->now) : -1;
    dnnl_memory_t m_s = tt_scales_memory(e, &qs, 1), m_z = tt_zero_point_memory(e, qz);
    if (v < 0 || !m_s || !m_z) return -1;
    e->values[v].shape = e->values[xv].shape;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_SRC, 0);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_zero_points_mask(attr, DNNL_ARG_SRC, 0);
    dnnl_primitive_desc_t pd = NULL;
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, e->values[xv].md, e->eng, e->values[v].md, e->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "dequantizing reorder", st), -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_FROM, e->values[xv].mem}, {DNNL_ARG_TO, e->values[v].mem},
                               {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, m_s},
                               {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m_z}};
    return tt_add_primitive(e, i, pd, 4, args) ? -1 : v;
}

/* MEAN over H, W in an INT8_TFLITE engine: TFLite's integer mean (engine/quant.c,
 * tt_add_int8_mean_step), the pooled features rounded to int8 with the output tensor's
 * quantization as LiteRT's reference kernel does. x: s8 [N, H, W, C]; y: s8 [N, 1, 1, C] or
 * [N, C], plain; the output reorder dequantizes it. */
static tt_status mean_forward_int8_tflite(tt_engine *e, int32_t i, int32_t xv) {
    const tt_op *op = &e->model->ops[i];
    float ys;
    int32_t yz;
    tt_status s = tt_tensor_qparams(e, i, op->output, &ys, &yz);
    if (s) return s;
    tt_shape x = e->values[xv].shape;
    int64_t xd[DNNL_MAX_NDIMS];
    tt_md_dims(e->values[xv].md, xd);
    dnnl_memory_desc_t x_nhwc = tt_md_tag_dt(e, 4, xd, dnnl_s8, dnnl_nhwc);
    dnnl_memory_t xm = x_nhwc ? tt_value_as(e, i, xv, x_nhwc) : NULL; /* s8 NHWC (tt_value_plain is f32) */
    dnnl_memory_desc_t f = xm ? tt_md_for_shape(e, &e->shapes[op->output]) : NULL;
    dnnl_memory_desc_t own = f ? tt_md_strided_like(e, f, dnnl_s8) : NULL;
    int32_t yv = own ? tt_new_value(e, op->output, own, e->last_use[op->output]) : -1;
    if (yv < 0) return TT_RUNTIME_ERROR;
    e->values[yv].qscale = ys;
    e->values[yv].qzp = yz;
    return tt_add_int8_mean_step(e, xm, e->values[yv].mem, x.d[0], x.d[1] * x.d[2], x.d[3],
                                 e->values[xv].qscale, e->values[xv].qzp, ys, yz);
}

/* Builds op i. x: [N, H, W, C]; y: [N, OH, OW, C] (MEAN: [N, 1, 1, C] or [N, C]). */
static tt_status pool_forward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    const tt_shape *x = &e->values[xv].shape;
    dnnl_dims_t kernel = {0}, strides = {0}, pad_l = {0}, pad_r = {0}, dil = {0};
    int64_t oh, ow;
    dnnl_alg_kind_t alg = op->type == TT_OP_MAX_POOL_2D ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    pool_geometry(op, x, kernel, strides, pad_l, pad_r, &oh, &ow);
    int64_t dst_dims[4] = {x->d[0], x->d[3], oh, ow};
    /* Pooling takes its source layout as given (no format_tag_any); blocked layouts
     * from a conv are what it is fastest on. Its output keeps the source's data type
     * (bf16 in a bfloat16 engine; the output reorder converts to f32). */
    /* An int8 input (average pooling / MEAN in an int8 engine) is dequantized first,
     * real = scale * (q - zp), by a reorder into float (oneDNN 3.2 has no s8 -> f32
     * pooling with a linear post-op); the pooling then averages real values, so the
     * pooled features are not rounded to int8. */
    if (e->precision == TT_PRECISION_INT8_TFLITE && op->type == TT_OP_MEAN && e->values[xv].qscale > 0.f &&
        tt_md_dt(e->values[xv].md) == dnnl_s8)
        return mean_forward_int8_tflite(e, i, xv);
    if (e->values[xv].qscale > 0.f && alg != dnnl_pooling_max) {
        if ((xv = dequantize_value(e, i, xv)) < 0) return TT_RUNTIME_ERROR;
    }
    const_dnnl_memory_desc_t src_md = e->values[xv].md;
    dnnl_memory_desc_t dst_any = tt_md_tag_dt(e, 4, dst_dims, tt_md_dt(src_md), dnnl_format_tag_any);
    if (!dst_any) return TT_RUNTIME_ERROR;
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, op->type == TT_OP_MEAN ? TT_ACT_NONE : op->activation, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_pooling_forward_primitive_desc_create(&pd, e->eng, tt_prop(e, i), alg, src_md,
                                                                  dst_any, strides, kernel, dil, pad_l, pad_r, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "pooling descriptor", st);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int32_t yv = tt_new_value(e, op->output, dst_md, e->last_use[op->output]);
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, e->values[xv].mem}, {DNNL_ARG_DST, e->values[yv].mem}};
    return tt_add_forward(e, i, pd, 2, args);
}

/* ---- backward ----------------------------------------------------------------------------- */

/* AVERAGE_POOL_2D / MEAN: dL/dx [N, H, W, C] from dL/dy (through the fused
 * activation's backward from the saved y), each input pixel getting its
 * windows' gradients divided by their pixel counts (padding excluded). */
static tt_status avg_pool_backward(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t xt = op->inputs[0];
    if (!tt_wants_grad(e, xt)) return TT_OK;
    dnnl_primitive_desc_t hint = e->fwd_pd[i];
    if (!hint) return tt_error(TT_RUNTIME_ERROR, "operator %d: no forward primitive to guide its backward", i);
    tt_activation act = op->type == TT_OP_MEAN ? TT_ACT_NONE : op->activation;
    int32_t dpre = tt_activation_backward(e, i, act, e->tensor_value[op->output], tt_grad(e, op->output));
    if (dpre < 0) return TT_RUNTIME_ERROR;
    const tt_shape *x = &e->shapes[xt];
    dnnl_dims_t kernel = {0}, strides = {0}, pad_l = {0}, pad_r = {0}, dil = {0};
    int64_t oh, ow;
    pool_geometry(op, x, kernel, strides, pad_l, pad_r, &oh, &ow);
    int64_t src_dims[4] = {x->d[0], x->d[3], x->d[1], x->d[2]};
    dnnl_memory_desc_t dsrc_any = tt_md_tag(e, 4, src_dims, dnnl_format_tag_any);
    if (!dsrc_any) return TT_RUNTIME_ERROR;
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_pooling_backward_primitive_desc_create(
        &pd, e->eng, dnnl_pooling_avg_exclude_padding, dsrc_any, dnnl_primitive_desc_query_md(hint, dnnl_query_dst_md, 0),
        strides, kernel, dil, pad_l, pad_r, hint, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "pooling backward descriptor", st);
    int32_t tmp = -1;
    dnnl_memory_t dy = tt_value_as(e, i, dpre, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0));
    dnnl_memory_t dx = dy ? tt_grad_target(e, i, xt, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), &tmp)
                          : NULL;
    if (!dx) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_SRC, dx}};
    if ((s = tt_add_primitive(e, i, pd, 2, args))) return s;
    return tt_grad_commit(e, i, xt, tmp);
}

/* ---- table entries ---------------------------------------------------------------------- */

const tt_op_kind tt_op_average_pool_2d = {
    .name = "AVERAGE_POOL_2D", .builtin_code = 1, .type = TT_OP_AVERAGE_POOL_2D, .options_type = 5,
    .min_inputs = 1, .max_inputs = 1, .fields = TT_FIELD_PADDING | TT_FIELD_FILTER | TT_FIELD_ACTIVATION,
    .parse = pool_parse, .shape = pool_shape, .forward = pool_forward, .backward = avg_pool_backward,
};

const tt_op_kind tt_op_max_pool_2d = {
    .name = "MAX_POOL_2D", .builtin_code = 17, .type = TT_OP_MAX_POOL_2D, .options_type = 5,
    .min_inputs = 1, .max_inputs = 1, .fields = TT_FIELD_PADDING | TT_FIELD_FILTER | TT_FIELD_ACTIVATION,
    .parse = pool_parse, .shape = pool_shape, .forward = pool_forward,
};

const tt_op_kind tt_op_mean = {
    .name = "MEAN", .builtin_code = 40, .type = TT_OP_MEAN, .options_type = 27,
    .min_inputs = 2, .max_inputs = 2, .fields = TT_FIELD_KEEP_DIMS,
    .parse = mean_parse, .check = mean_check, .shape = mean_shape, .forward = pool_forward,
    .backward = avg_pool_backward,
};
