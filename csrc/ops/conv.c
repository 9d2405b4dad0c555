/* conv.c - CONV_2D and DEPTHWISE_CONV_2D as oneDNN convolutions.
 *
 * Depthwise (depth_multiplier 1) is a grouped convolution with groups = C.
 * Layouts are left to oneDNN (format_tag_any for src, weights, dst); the
 * TFLite filter is reordered once, at create, into the layout the chosen
 * kernel wants. Padding follows TF's SAME/VALID rule, asymmetric when the
 * total is odd (the extra row/column at the bottom/right). A fused RELU/RELU6
 * is an eltwise post-op; a residual ADD planned by plan.c (fuse_add, below the
 * training boundary only) becomes a sum post-op with the conv writing into the
 * residual's buffer. In an inference engine a 1x1 expand conv runs the 3x3
 * depthwise after it as oneDNN's depthwise post-op (plan.c: fuse_dw; conv_fused.c). Trainable
 * convs take their weights from the bound parameters (tt_weights_memory) and
 * keep their forward pd as backward hint.
 */
#include "engine/tt_build.h"
#include "ops/conv_geo.h"
#include "ops/tt_ops.h"

#include <string.h>

#define OPNAME(op) tt_builtin_name((op)->builtin_code)

/* ---- reader: options and constant inputs ------------------------------------ */

/* Conv2DOptions / DepthwiseConv2DOptions (depthwise has depth_multiplier at
 * field 3, shifting the rest by one). */
static tt_status conv_parse(const tt_options *o, tt_op *op) {
    tt_status s;
    uint8_t u8 = 0, act = 0;
    int32_t i32 = 0;
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    int k = dw ? 1 : 0;
    if ((s = tt_options_u8(o, 0, 0, &u8)) || (s = tt_options_i32(o, 1, 0, &op->stride_w)) ||
        (s = tt_options_i32(o, 2, 0, &op->stride_h)) || (s = tt_options_u8(o, 3 + k, 0, &act)) ||
        (s = tt_options_i32(o, 4 + k, 1, &op->dilation_w)) || (s = tt_options_i32(o, 5 + k, 1, &op->dilation_h)))
        return s;
    op->padding = (tt_padding)(int8_t)u8;
    if (dw) {
        if ((s = tt_options_i32(o, 3, 0, &i32))) return s;
        op->depth_multiplier = i32 == 0 ? 1 : i32; /* 0 = not written; TFLite derives it from shapes */
        if (op->depth_multiplier != 1)
            return tt_error(TT_UNSUPPORTED, "%s has depth_multiplier %d; only depth_multiplier 1 is supported",
                            tt_options_where(o), op->depth_multiplier);
    }
    if ((s = tt_options_activation(o, (int8_t)act, op))) return s;
    return tt_options_window(o, op, 1, 0);
}

/* filter: constant [O, KH, KW, I] (depthwise [1, KH, KW, C]); bias: constant [O] or absent. */
static tt_status conv_check(const tt_model *m, const tt_op *op, const char *where) {
    tt_status s;
    if ((s = tt_require_const(m, op, 1, "filter", 0, where))) return s;
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    if (w->rank != 4)
        return tt_error(TT_INVALID_MODEL, "%s: filter tensor %d has rank %d, expected 4", where, op->inputs[1],
                        w->rank);
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    if (dw && w->shape[0] != 1)
        return tt_error(TT_INVALID_MODEL, "%s: depthwise filter tensor %d must have shape [1, KH, KW, C], got first "
                        "dimension %d", where, op->inputs[1], w->shape[0]);
    int32_t out_c = dw ? w->shape[3] : w->shape[0];
    return tt_require_bias(m, op, out_c, where);
}

/* ---- shape: x [N, H, W, Cin] -> y [N, OH, OW, O] (depthwise: O = C) ------------ */

static tt_status conv_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0;
    char b1[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    if (x->rank != 4 || w->shape[3] != x->d[3])
        return tt_error(TT_INVALID_ARGUMENT, "operator %d (%s): input shape %s does not fit the filter's %d input "
                        "channels", i, OPNAME(op), tt_shape_str(x, b1), w->shape[3]);
    return tt_window_shape(op, i, x, w->shape[1], w->shape[2], dw ? w->shape[3] : w->shape[0], out);
}

/* ---- forward ------------------------------------------------------------------- */

/* with_x false: op i's input has no value yet (a depthwise fused into the conv
 * before it); g->xv is -1 and the shapes come from the plan. */
tt_status tt_conv_geometry_of(tt_engine *e, int32_t i, bool with_x, conv_geo *g) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    g->w = &m->tensors[op->inputs[1]];
    g->b = (op->n_inputs > 2 && op->inputs[2] >= 0) ? &m->tensors[op->inputs[2]] : NULL;
    g->xv = with_x ? tt_input_value(e, i, tt_op_input(e, i, 0)) : -1;
    if (with_x && g->xv < 0) return TT_INVALID_MODEL;
    const tt_shape *x = with_x ? &e->values[g->xv].shape : &e->shapes[tt_op_input(e, i, 0)];
    const tt_shape *xp = &e->shapes[op->inputs[0]]; /* after a folded PAD, if any */
    const tt_shape *y = &e->shapes[op->output];
    int64_t kh = g->w->shape[1], kw = g->w->shape[2], cin = x->d[3], cout = y->d[3];
    int64_t oh, ow, pt, pb, pl, pr;
    tt_tf_padding(op->padding, xp->d[1], kh, op->stride_h, op->dilation_h, &oh, &pt, &pb);
    tt_tf_padding(op->padding, xp->d[2], kw, op->stride_w, op->dilation_w, &ow, &pl, &pr);
    if (e->fold_pad[i] >= 0) { /* zero padding of the PAD op, in front of the conv's own */
        const int32_t *pads = m->tensors[m->ops[e->fold_pad[i]].inputs[1]].idata;
        pt += pads[2];
        pb += pads[3];
        pl += pads[4];
        pr += pads[5];
    }
    int64_t src_dims[4] = {x->d[0], cin, x->d[1], x->d[2]};
    int64_t dst_dims[4] = {y->d[0], cout, oh, ow};
    g->strides[0] = op->stride_h;
    g->strides[1] = op->stride_w;
    g->dilates[0] = op->dilation_h - 1; /* oneDNN counts from 0 */
    g->dilates[1] = op->dilation_w - 1;
    g->pad_l[0] = pt;
    g->pad_l[1] = pl;
    g->pad_r[0] = pb;
    g->pad_r[1] = pr;
    /* Filter as stored (TFLite), described with strides over oneDNN's logical dims. */
    if (dw) {
        int64_t wd[5] = {cin, 1, 1, kh, kw};            /* {G, O/G, I/G, KH, KW} */
        int64_t ws[5] = {1, 1, 1, kw * cin, cin};       /* [1, KH, KW, C] */
        g->w_user = tt_md_strides(e, 5, wd, ws);
        g->w_any = tt_md_tag_dt(e, 5, wd, e->conv_dt, dnnl_format_tag_any);
    } else {
        int64_t wd[4] = {cout, cin, kh, kw};             /* {O, I, KH, KW} */
        int64_t ws[4] = {kh * kw * cin, 1, kw * cin, cin}; /* [O, KH, KW, I] */
        g->w_user = tt_md_strides(e, 4, wd, ws);
        g->w_any = tt_md_tag_dt(e, 4, wd, e->conv_dt, dnnl_format_tag_any);
    }
    int64_t bd[1] = {cout};
    g->b_md = g->b ? tt_md_tag(e, 1, bd, dnnl_a) : NULL;
    /* e->conv_dt: f32, or bf16 for a bfloat16 engine (weights reordered to bf16 at create,
     * activations stored as bf16, float32 bias and accumulation) */
    g->src_any = tt_md_tag_dt(e, 4, src_dims, e->conv_dt, dnnl_format_tag_any);
    g->dst_any = tt_md_tag_dt(e, 4, dst_dims, e->conv_dt, dnnl_format_tag_any);
    if (!g->w_user || !g->w_any || (g->b && !g->b_md) || !g->src_any || !g->dst_any) return TT_RUNTIME_ERROR;
    return TT_OK;
}

static tt_status conv_geometry(tt_engine *e, int32_t i, conv_geo *g) { return tt_conv_geometry_of(e, i, true, g); }

/* int8 attributes: per-tensor src/dst scales and zero points, per-channel weight
 * scales (mask over {O, I, KH, KW} or grouped {G, O/G, ...}), the fused activation
 * on real values, and (fuse) the residual as a sum post-op that dequantizes it. */
static tt_status conv_attr_int8(tt_engine *e, int32_t i, bool dw, int32_t n_wscales, tt_activation act, bool fuse,
                                float r_scale, int32_t r_zp, bool x_zp, bool y_zp, dnnl_primitive_attr_t *attr) {
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    int wmask = n_wscales > 1 ? (dw ? 3 : 1) : 0;
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(*attr, DNNL_ARG_SRC, 0);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(*attr, DNNL_ARG_WEIGHTS, wmask);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(*attr, DNNL_ARG_DST, 0);
    /* no zero point at all where it is 0: oneDNN then skips the compensation */
    if (st == dnnl_success && x_zp) st = dnnl_primitive_attr_set_zero_points_mask(*attr, DNNL_ARG_SRC, 0);
    if (st == dnnl_success && y_zp) st = dnnl_primitive_attr_set_zero_points_mask(*attr, DNNL_ARG_DST, 0);
    if (st == dnnl_success) st = tt_attr_post_ops(*attr, act, fuse, r_scale, r_zp);
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return tt_dnnl_fail(e, i, "int8 attributes", st);
    }
    return TT_OK;
}

/* The TFLite filter layout over oneDNN's logical dims (g->w_user) as s8; engine-owned. NULL on failure. */
static dnnl_memory_desc_t int8_weights_md(tt_engine *e, const conv_geo *g) {
    return tt_md_strided_like(e, g->w_user, dnnl_s8);
}

/* Op i in an INT8_TFLITE engine: oneDNN accumulates sum((x - x_zp) * w) exactly into s32
 * [N, H, W, C] (NHWC; no scales, no bias, no post-ops), then TFLite's integer
 * requantization (engine/quant.c) writes y s8 [N, H, W, C] with the output tensor's
 * scale and zero point. Never fused with the ADD after it (TFLite rounds y first). */
static tt_status conv_forward_int8_tflite(tt_engine *e, int32_t i, const conv_geo *g, int32_t xv, const int8_t *wq,
                                          const float *wscales, int32_t n_ws) {
    const tt_op *op = &e->model->ops[i];
    float y_scale;
    int32_t y_zp;
    tt_status s = tt_tensor_qparams(e, i, op->output, &y_scale, &y_zp);
    if (s) return s;
    dnnl_memory_desc_t w_user = int8_weights_md(e, g);
    int64_t yd[DNNL_MAX_NDIMS];
    tt_md_dims(g->dst_any, yd);
    dnnl_memory_desc_t acc_md = w_user ? tt_md_tag_dt(e, 4, yd, dnnl_s32, dnnl_nhwc) : NULL;
    dnnl_memory_desc_t y_md = acc_md ? tt_md_tag_dt(e, 4, yd, dnnl_s8, dnnl_nhwc) : NULL;
    if (!y_md) return TT_RUNTIME_ERROR;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    for (int attempt = 0; attempt < 2 && st != dnnl_success; attempt++) {
        dnnl_primitive_attr_t attr = NULL;
        st = dnnl_primitive_attr_create(&attr);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_zero_points_mask(attr, DNNL_ARG_SRC, 0);
        if (st == dnnl_success)
            st = dnnl_convolution_forward_primitive_desc_create(
                &pd, e->eng, dnnl_forward_inference, dnnl_convolution_direct,
                attempt == 0 ? e->values[xv].md : g->src_any, g->w_any, NULL, acc_md, g->strides, g->dilates,
                g->pad_l, g->pad_r, attr);
        dnnl_primitive_attr_destroy(attr);
    }
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "int8 (TFLite arithmetic) convolution descriptor", st);
    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    float x_scale = e->values[xv].qscale;
    dnnl_memory_t src = tt_value_as(e, i, xv, src_md);
    dnnl_memory_t wmem = src ? tt_const_memory(e, i, (const float *)(const void *)wq, w_user, w_md) : NULL;
    dnnl_memory_t m_xz = wmem ? tt_zero_point_memory(e, e->values[xv].qzp) : NULL;
    int32_t accv = m_xz ? tt_new_value(e, -1, acc_md, e->now) : -1;
    int32_t yv = accv >= 0 ? tt_new_value(e, op->output, y_md, e->last_use[op->output]) : -1;
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    e->values[yv].qscale = y_scale;
    e->values[yv].qzp = y_zp;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[accv].mem},
                               {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m_xz}};
    if ((s = tt_add_primitive(e, i, pd, 4, args))) return s;
    const tt_tensor *b = g->b;
    return tt_add_requant_step(e, i, e->values[accv].mem, e->values[yv].mem, yd[0] * yd[1] * yd[2] * yd[3], yd[1],
                               b ? b->data : NULL, b ? b->quant.scale : NULL, b ? b->quant.n : 0, x_scale, wscales,
                               n_ws, wscales == g->w->quant.scale, y_scale, y_zp, op->activation);
}

/* A RELU / RELU6 output with zero point -128 (TFLite's for [0, 6]) is stored as u8
 * with zero point 0: the s8 tensor plus 128, rounded and clamped alike (round(v / s)
 * clamped to [0, 255] instead of round(v / s) - 128 clamped to [-128, 127]). Its
 * readers, which must all be convolutions, then read it without a zero point: no
 * compensation pass, and oneDNN's u8 depthwise kernel (brdgmm_dw) instead of the
 * zero-point one (jit_int8), 10% less time per image (README). Padding with 0 is
 * padding with real zero either way. Not for the engine's output, nor for a conv
 * writing into a residual. */
static bool int8_output_as_u8(const tt_engine *e, int32_t out_t, int32_t y_zp, tt_activation act, bool residual) {
    const tt_model *m = e->model;
    if (y_zp != -128 || residual || out_t == e->output_tensor || (act != TT_ACT_RELU && act != TT_ACT_RELU6))
        return false;
    for (int32_t q = 0; q < m->n_ops; q++) {
        if (!e->needed[q]) continue;
        for (int32_t k = 0; k < m->ops[q].n_inputs; k++) {
            if (tt_op_input(e, q, k) != out_t) continue;
            if (k != 0 || (m->ops[q].type != TT_OP_CONV_2D && m->ops[q].type != TT_OP_DEPTHWISE_CONV_2D)) return false;
        }
    }
    return true;
}

/* Builds op i in an int8 engine: x s8 [N, H, W, Cin] (its tensor's scale and zero
 * point), filter s8 requantized exactly from the file with its per-channel scales,
 * float bias (dequantized int32), y s8 with the output tensor's quantization. A
 * planned residual ADD is fused as a sum post-op (the residual dequantized with its
 * own scale and zero point) and y takes the ADD output's quantization: the conv's own
 * output is not rounded to int8 first (TFLite rounds it), which only removes one
 * rounding. */
static tt_status conv_forward_int8(tt_engine *e, int32_t i, const conv_geo *g) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    int32_t xv = g->xv;
    tt_value *x = &e->values[xv];
    const float *wscales = NULL;
    int32_t n_ws = 0;
    const int8_t *wq = tt_weights_s8(e, i, op->inputs[1], &wscales, &n_ws);
    if (!wq) return TT_UNSUPPORTED;
    if (tt_md_dt(x->md) == dnnl_f32 && !(x->qscale > 0.f) && op->inputs[0] == m->inputs[0] &&
        m->tensors[m->inputs[0]].quant.n == 1) {
        /* a quantized model input read by the conv directly (no QUANTIZE op: the
         * quant-aware file's uint8 input): quantize the caller's floats with its params */
        if ((xv = tt_quantize_value(e, i, xv, op->inputs[0])) < 0) return TT_RUNTIME_ERROR;
        x = &e->values[xv];
    }
    bool x_u8 = tt_md_dt(x->md) == dnnl_u8 && x->qzp == 0; /* int8_output_as_u8 */
    if ((tt_md_dt(x->md) != dnnl_s8 && !x_u8) || !(x->qscale > 0.f))
        return tt_error(TT_UNSUPPORTED, "operator %d (%s): int8 needs an int8 input from a QUANTIZE or an int8 op", i,
                        OPNAME(op));
    if (e->precision == TT_PRECISION_INT8_TFLITE) return conv_forward_int8_tflite(e, i, g, xv, wq, wscales, n_ws);
    int32_t add = e->fuse_add[i], rv = -1, out_t = op->output;
    if (add >= 0) {
        const tt_op *a = &m->ops[add];
        int32_t r = a->inputs[0] == op->output ? a->inputs[1] : a->inputs[0];
        rv = e->tensor_value[r];
        if (rv < 0 || e->values[rv].slot < 0 || e->slots[e->values[rv].slot].busy_until != add ||
            e->values[rv].slot == e->values[xv].slot || tt_md_ndims(e->values[rv].md) != 4 ||
            tt_md_dt(e->values[rv].md) != dnnl_s8)
            return tt_error(TT_UNSUPPORTED, "operator %d (ADD): int8 runs the residual ADD only fused into the conv "
                            "before it", add);
        out_t = a->output;
    }
    float y_scale, r_scale = 0.f;
    int32_t y_zp, r_zp = 0;
    tt_status s = tt_tensor_qparams(e, i, out_t, &y_scale, &y_zp);
    if (s) return s;
    if (rv >= 0) {
        r_scale = e->values[rv].qscale;
        r_zp = e->values[rv].qzp;
    }
    tt_activation act = rv >= 0 ? m->ops[add].activation : op->activation;
    bool y_u8 = int8_output_as_u8(e, out_t, y_zp, act, rv >= 0);
    if (y_u8) y_zp = 0;
    dnnl_memory_desc_t w_user = int8_weights_md(e, g);
    int64_t xd[DNNL_MAX_NDIMS], yd[DNNL_MAX_NDIMS];
    tt_md_dims(g->src_any, xd);
    tt_md_dims(g->dst_any, yd);
    dnnl_memory_desc_t src_any = x_u8 ? tt_md_tag_dt(e, 4, xd, dnnl_u8, dnnl_format_tag_any) : g->src_any;
    dnnl_memory_desc_t dst_any = y_u8 ? tt_md_tag_dt(e, 4, yd, dnnl_u8, dnnl_format_tag_any) : g->dst_any;
    if (!w_user || !src_any || !dst_any) return TT_RUNTIME_ERROR;

    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    for (int attempt = 0; attempt < 2 && st != dnnl_success; attempt++) {
        dnnl_primitive_attr_t attr = NULL;
        if ((s = conv_attr_int8(e, i, dw, n_ws, act, rv >= 0, r_scale, r_zp, x->qzp != 0, y_zp != 0, &attr))) return s;
        st = dnnl_convolution_forward_primitive_desc_create(
            &pd, e->eng, dnnl_forward_inference, dnnl_convolution_direct, attempt == 0 ? x->md : src_any, g->w_any,
            g->b_md, rv >= 0 ? e->values[rv].md : dst_any, g->strides, g->dilates, g->pad_l, g->pad_r, attr);
        dnnl_primitive_attr_destroy(attr);
    }
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "int8 convolution descriptor", st);
    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src = tt_value_as(e, i, xv, src_md);
    dnnl_memory_t wmem = src ? tt_const_memory(e, i, (const float *)(const void *)wq, w_user, w_md) : NULL;
    dnnl_memory_t bmem = (wmem && g->b) ? tt_const_memory(e, i, g->b->data, g->b_md, g->b_md) : NULL;
    float xs = x->qscale;
    dnnl_memory_t m_xs = tt_scales_memory(e, &xs, 1), m_ws = tt_scales_memory(e, wscales, n_ws);
    dnnl_memory_t m_ys = tt_scales_memory(e, &y_scale, 1);
    /* zero points only where they are not 0 (the attributes name none then; a u8 ReLU6 output has none) */
    dnnl_memory_t m_xz = x->qzp ? tt_zero_point_memory(e, x->qzp) : NULL;
    dnnl_memory_t m_yz = y_zp ? tt_zero_point_memory(e, y_zp) : NULL;
    int32_t yv = -1;
    if (wmem && (!g->b || bmem) && m_xs && m_ws && m_ys && (!x->qzp || m_xz) && (!y_zp || m_yz)) {
        if (rv >= 0) {
            yv = tt_view_value(e, out_t, rv, e->values[rv].md);
            e->op_done[add] = true;
        } else {
            yv = tt_new_value(e, out_t, dst_md, e->last_use[out_t]);
        }
    }
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    e->values[yv].qscale = y_scale;
    e->values[yv].qzp = y_zp;
    dnnl_exec_arg_t args[10] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[yv].mem},
                                {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, m_xs},
                                {DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, m_ws},
                                {DNNL_ARG_ATTR_SCALES | DNNL_ARG_DST, m_ys},
                               };
    int n = 6;
    if (x->qzp != 0) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m_xz};
    if (y_zp != 0) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, m_yz};
    if (g->b) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, bmem};
    return tt_add_primitive(e, i, pd, n, args);
}

/* Builds op i. x: [N, H, W, Cin] NHWC; filter: CONV [O, KH, KW, Cin], DW [1, KH, KW, C];
 * bias [O] or absent; y: [N, OH, OW, O]. */
static tt_status conv_forward(tt_engine *e, int32_t i) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    if (e->op_done[i]) return TT_OK; /* a depthwise run by the 1x1 conv before it */
    conv_geo g;
    tt_status s = conv_geometry(e, i, &g);
    if (s) return s;
    if (tt_is_int8(e)) return conv_forward_int8(e, i, &g);
    if (e->fuse_dw[i] >= 0) {
        bool fused = false;
        if ((s = tt_conv_forward_dw_fused(e, i, &g, e->fuse_dw[i], &fused)) || fused) return s;
    }
    int32_t xv = g.xv;
    const tt_tensor *b = g.b;
    dnnl_memory_desc_t w_user = g.w_user, w_any = g.w_any, b_md = g.b_md, src_any = g.src_any, dst_any = g.dst_any;
    const int64_t *strides = g.strides, *dilates = g.dilates, *pad_l = g.pad_l, *pad_r = g.pad_r;

    /* Residual fusion: write into r's buffer, in r's layout, with a sum post-op. */
    int32_t add = e->fuse_add[i], rv = -1;
    if (add >= 0) {
        const tt_op *a = &m->ops[add];
        int32_t r = a->inputs[0] == op->output ? a->inputs[1] : a->inputs[0];
        rv = e->tensor_value[r];
        /* r must own its slot outright (no live views) and die at the ADD. */
        if (rv < 0 || e->values[rv].slot < 0 || e->slots[e->values[rv].slot].busy_until != add ||
            e->values[rv].slot == e->values[xv].slot || tt_md_ndims(e->values[rv].md) != 4)
            rv = -1;
    }

    /* Attempts, best first: the input's own layout (no reorder; oneDNN 3.2's
     * brgemm kernels run NHWC, so a whole NHWC chain needs no reorder at all),
     * then format_tag_any with a reorder; each with the residual fused if planned.
     * A trainable conv tries format_tag_any first: for forward_training oneDNN 3.2
     * has no NHWC depthwise kernel and falls back to a generic one (measured 5x
     * slower than jit_dw on nChw16c, forward and backward-weights alike). */
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    bool any_first = tt_trainable(e, i);
    for (int attempt = 0; attempt < 4 && st != dnnl_success; attempt++) {
        bool fuse = attempt < 2, own_src = ((attempt % 2) == 0) != any_first;
        if (fuse && rv < 0) continue;
        /* the input's own layout only in the engine's data type (a bf16 engine's f32 input is reordered) */
        if (own_src && tt_md_dt(e->values[xv].md) != e->conv_dt) continue;
        dnnl_primitive_attr_t attr = NULL;
        tt_activation act = fuse ? m->ops[add].activation : op->activation;
        if ((s = tt_attr(e, i, act, fuse, &attr))) return s;
        const_dnnl_memory_desc_t dst = fuse ? e->values[rv].md : dst_any;
        if (own_src && !fuse && (dst = tt_conv_dw_pair_dst(e, i, e->values[xv].md, dst_any)) == NULL) {
            dnnl_primitive_attr_destroy(attr);
            return TT_RUNTIME_ERROR;
        }
        st = dnnl_convolution_forward_primitive_desc_create(
            &pd, e->eng, tt_prop(e, i), dnnl_convolution_direct, own_src ? e->values[xv].md : src_any,
            w_any, b_md, dst, strides, dilates, pad_l, pad_r, attr);
        dnnl_primitive_attr_destroy(attr);
        if (st == dnnl_success) tt_conv_pd_prefer(&pd, tt_conv_dw_pair_kernel(e, i));
        /* Keep a reference kernel only as the last resort. */
        if (st == dnnl_success && attempt < 3) {
            const char *impl = NULL;
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            if (impl && strncmp(impl, "ref", 3) == 0) {
                dnnl_primitive_desc_destroy(pd);
                pd = NULL;
                st = dnnl_unimplemented;
            }
        }
        if (st == dnnl_success && !fuse) rv = -1; /* fused attempts failed: a separate binary ADD */
    }
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "convolution descriptor", st);

    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src = tt_value_as(e, i, xv, src_md);
    dnnl_memory_t wmem = src ? tt_weights_memory(e, i, op->inputs[1], w_user, w_md) : NULL;
    dnnl_memory_t bmem = NULL;
    if (wmem && b) bmem = tt_weights_memory(e, i, op->inputs[2], b_md, b_md);
    int32_t yv = -1;
    if (wmem && (!b || bmem)) {
        if (rv >= 0) {
            /* the ADD's output is the residual buffer after the conv has summed into it */
            const tt_op *a = &m->ops[add];
            yv = tt_view_value(e, a->output, rv, e->values[rv].md);
            e->op_done[add] = true;
        } else {
            yv = tt_new_value(e, op->output, dst_md, e->last_use[op->output]);
        }
    }
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[yv].mem},
                               {DNNL_ARG_BIAS, bmem}};
    return tt_add_forward(e, i, pd, b ? 4 : 3, args);
}

/* ---- backward ------------------------------------------------------------------------ */

/* Backward of op i from dL/dy (+ the fused activation's backward from the saved y):
 * dL/dW (TFLite layout) and dL/db into the bound parameter gradients, and
 * dL/dx (x: the PAD's input when folded) when x is computed by a trainable op.
 * The forward pd is the hint of both backward pds; oneDNN picks their layouts. */
static tt_status conv_backward(tt_engine *e, int32_t i) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    conv_geo g;
    tt_status s = conv_geometry(e, i, &g);
    if (s) return s;
    dnnl_primitive_desc_t hint = e->fwd_pd[i];
    if (!hint) return tt_error(TT_RUNTIME_ERROR, "operator %d: no forward primitive to guide its backward", i);
    int32_t dpre = tt_activation_backward(e, i, op->activation, e->tensor_value[op->output], tt_grad(e, op->output));
    if (dpre < 0) return TT_RUNTIME_ERROR;
    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(hint, dnnl_query_src_md, 0);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;

    /* dW, db */
    if ((s = tt_attr(e, i, TT_ACT_NONE, false, &attr))) return s;
    dnnl_status_t st = dnnl_convolution_backward_weights_primitive_desc_create(
        &pd, e->eng, dnnl_convolution_direct, src_md, g.w_any, g.b_md, g.dst_any, g.strides, g.dilates, g.pad_l,
        g.pad_r, hint, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "convolution backward-weights descriptor", st);
    dnnl_memory_t x = tt_value_as(e, i, g.xv, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
    dnnl_memory_t dy = x ? tt_value_as(e, i, dpre, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0)) : NULL;
    dnnl_memory_t dw = dy ? tt_param_grad_memory(e, i, op->inputs[1],
                                                 dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0))
                          : NULL;
    dnnl_memory_t db = (dw && g.b) ? tt_param_grad_memory(e, i, op->inputs[2], g.b_md) : NULL;
    if (!dw || (g.b && !db)) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                                {DNNL_ARG_DIFF_BIAS, db}};
    if ((s = tt_add_primitive(e, i, pd, g.b ? 4 : 3, wargs)) || (s = tt_param_grad_finish(e, i, op->inputs[1], dw)) ||
        (g.b && (s = tt_param_grad_finish(e, i, op->inputs[2], db))))
        return s;

    /* dx */
    int32_t xt = tt_op_input(e, i, 0);
    if (!tt_wants_grad(e, xt)) return TT_OK;
    if ((s = tt_attr(e, i, TT_ACT_NONE, false, &attr))) return s;
    st = dnnl_convolution_backward_data_primitive_desc_create(&pd, e->eng, dnnl_convolution_direct, g.src_any, g.w_any,
                                                              g.dst_any, g.strides, g.dilates, g.pad_l, g.pad_r, hint,
                                                              attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "convolution backward-data descriptor", st);
    int32_t tmp = -1;
    dnnl_memory_t wm = tt_weights_memory(e, i, op->inputs[1], g.w_user,
                                         dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    dy = wm ? tt_value_as(e, i, dpre, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0)) : NULL;
    dnnl_memory_t dx = dy ? tt_grad_target(e, i, xt, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), &tmp)
                          : NULL;
    if (!dx) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t dargs[3] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dx}};
    if ((s = tt_add_primitive(e, i, pd, 3, dargs))) return s;
    return tt_grad_commit(e, i, xt, tmp);
}

/* ---- table entries ---------------------------------------------------------------- */

const tt_op_kind tt_op_conv_2d = {
    .name = "CONV_2D", .builtin_code = 3, .type = TT_OP_CONV_2D, .options_type = 1,
    .min_inputs = 2, .max_inputs = 3, .optional_inputs = 1u << 2,
    .fields = TT_FIELD_PADDING | TT_FIELD_DILATION | TT_FIELD_ACTIVATION,
    .parse = conv_parse, .check = conv_check, .shape = conv_shape, .forward = conv_forward,
    .backward = conv_backward,
};

const tt_op_kind tt_op_depthwise_conv_2d = {
    .name = "DEPTHWISE_CONV_2D", .builtin_code = 4, .type = TT_OP_DEPTHWISE_CONV_2D, .options_type = 2,
    .min_inputs = 2, .max_inputs = 3, .optional_inputs = 1u << 2,
    .fields = TT_FIELD_PADDING | TT_FIELD_DILATION | TT_FIELD_DEPTH_MULT | TT_FIELD_ACTIVATION,
    .parse = conv_parse, .check = conv_check, .shape = conv_shape, .forward = conv_forward,
    .backward = conv_backward,
};
