/* conv_fused.c - the expand 1x1 + depthwise 3x3 pair of an inference engine
 * (plan.c: fuse_dw) as one oneDNN convolution with a depthwise post-op, and the
 * kernel choice that keeps an unfused pair on the fused primitive's own kernels
 * (same bits whether oneDNN fuses a pair or not). Called from conv.c's forward.
 */
#include "engine/tt_build.h"
#include "ops/conv_geo.h"

#include <string.h>

/* ---- expand 1x1 + depthwise 3x3 as one primitive (plan.c: fuse_dw) ------------------ */

/* The post-ops of the fused pair: act_i on the 1x1 output, the depthwise conv
 * (weights in the engine's conv type, float32 bias, output in the engine's conv
 * type), act_j on its output. */
static dnnl_status_t dw_fused_attr(tt_engine *e, tt_activation act_i, const tt_op *dwop, int64_t stride, int64_t pad,
                                   dnnl_primitive_attr_t *attr) {
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = dnnl_post_ops_create(&po);
    tt_activation acts[2] = {act_i, dwop->activation};
    for (int k = 0; k < 2 && st == dnnl_success; k++) {
        if (k == 1) st = dnnl_post_ops_append_dw(po, e->conv_dt, dnnl_f32, e->conv_dt, 3, stride, pad);
        if (st == dnnl_success && acts[k] == TT_ACT_RELU)
            st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_relu, 0.f, 0.f);
        if (st == dnnl_success && acts[k] == TT_ACT_RELU6)
            st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_clip, 0.f, 6.f);
        if (st == dnnl_success && acts[k] != TT_ACT_NONE && acts[k] != TT_ACT_RELU && acts[k] != TT_ACT_RELU6)
            st = dnnl_unimplemented;
    }
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return st;
}

/* Builds 1x1 conv i (x [N, H, W, Cin] -> [N, H, W, C], act_i) with depthwise j
 * (3x3, stride s, act_j -> y [N, OH, OW, C], the value of j's output) as one
 * oneDNN primitive: the expanded [N, H, W, C] tensor is only ever held a few rows
 * at a time. oneDNN's depthwise post-op takes padding_l on top and left and makes
 * the output ceil(H / s) rows, the rest of the padding at the bottom and right:
 * TF's SAME, and Keras' ZeroPadding2D(((0, 1), (0, 1))) + VALID of the stride-2
 * blocks; any other padding is not fused. *fused false: nothing was built (other
 * padding, no kernel, or only a reference kernel) and the pair runs as two convs. */
tt_status tt_conv_forward_dw_fused(tt_engine *e, int32_t i, const conv_geo *g, int32_t j, bool *fused) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i], *dwop = &m->ops[j];
    *fused = false;
    conv_geo gd;
    tt_status s = tt_conv_geometry_of(e, j, false, &gd);
    if (s) return s;
    const tt_shape *mid = &e->shapes[op->output], *y = &e->shapes[dwop->output];
    int64_t st = gd.strides[0], pad = gd.pad_l[0], ih = mid->d[1], iw = mid->d[2];
    int64_t oh = (ih + st - 1) / st, ow = (iw + st - 1) / st;
    if (gd.strides[1] != st || gd.pad_l[1] != pad || y->d[1] != oh || y->d[2] != ow ||
        gd.pad_r[0] != (oh - 1) * st + 3 - ih - pad || gd.pad_r[1] != (ow - 1) * st + 3 - iw - pad)
        return TT_OK;
    int32_t xv = g->xv;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t ds = dnnl_unimplemented;
    for (int attempt = 0; attempt < 2 && ds != dnnl_success; attempt++) {
        bool own_src = attempt == 0; /* the input's own layout first: no reorder */
        if (own_src && tt_md_dt(e->values[xv].md) != e->conv_dt) continue;
        dnnl_primitive_attr_t attr = NULL;
        if (dw_fused_attr(e, op->activation, dwop, st, pad, &attr) != dnnl_success) return TT_OK;
        ds = dnnl_convolution_forward_primitive_desc_create(
            &pd, e->eng, dnnl_forward_inference, dnnl_convolution_direct, own_src ? e->values[xv].md : g->src_any,
            g->w_any, g->b_md, g->dst_any, g->strides, g->dilates, g->pad_l, g->pad_r, attr);
        dnnl_primitive_attr_destroy(attr);
        if (ds != dnnl_success) continue;
        /* a reference kernel (ref_fused_convolution: the two convs one after the other) gains nothing */
        const char *impl = NULL;
        int64_t yd[DNNL_MAX_NDIMS];
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        tt_md_dims(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), yd);
        if (!impl || strncmp(impl, "ref", 3) == 0 || yd[0] != y->d[0] || yd[1] != y->d[3] || yd[2] != oh ||
            yd[3] != ow) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
            ds = dnnl_unimplemented;
        }
    }
    if (ds != dnnl_success) return TT_OK;
    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t y_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const_dnnl_memory_desc_t dw_w_md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
    const_dnnl_memory_desc_t dw_b_md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS);
    dnnl_memory_t src = (dw_w_md && dw_b_md) ? tt_value_as(e, i, xv, src_md) : NULL;
    dnnl_memory_t wmem = src ? tt_weights_memory(e, i, op->inputs[1], g->w_user, w_md) : NULL;
    dnnl_memory_t bmem = (wmem && g->b) ? tt_weights_memory(e, i, op->inputs[2], g->b_md, g->b_md) : NULL;
    dnnl_memory_t dw_w = (wmem && (!g->b || bmem)) ? tt_weights_memory(e, j, dwop->inputs[1], gd.w_user, dw_w_md)
                                                   : NULL;
    dnnl_memory_t dw_b = dw_w ? tt_weights_memory(e, j, dwop->inputs[2], gd.b_md, dw_b_md) : NULL;
    int32_t yv = dw_b ? tt_new_value(e, dwop->output, y_md, e->last_use[dwop->output]) : -1;
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[yv].mem},
                               {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, dw_w},
                               {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, dw_b}, {DNNL_ARG_BIAS, bmem}};
    if ((s = tt_add_primitive(e, i, pd, g->b ? 6 : 5, args))) return s;
    e->op_done[j] = true;
    *fused = true;
    return TT_OK;
}

/* The kernel prefix op i must use when it runs unfused although plan.c proposed
 * fusing it (oneDNN declined: its heuristics depend on the thread count and the
 * batch): the kernels the fused primitive is made of, so that its results are the
 * same bits fused or not, whatever the threads or the micro-batch. NULL: any. */
const char *tt_conv_dw_pair_kernel(const tt_engine *e, int32_t i) {
    bool bf16 = e->conv_dt == dnnl_bf16;
    if (e->fuse_dw[i] >= 0) return bf16 ? "jit_bf16_1x1:" : "jit_1x1:";
    const tt_model *m = e->model;
    if (m->ops[i].type != TT_OP_DEPTHWISE_CONV_2D) return NULL;
    int32_t p = e->producer[tt_op_input(e, i, 0)];
    return (p >= 0 && e->fuse_dw[p] == i) ? "jit_dw:" : NULL;
}

/* The dst md of depthwise i's own-layout attempt: dst_any, except for the depthwise
 * of a pair that runs unfused (tt_conv_dw_pair_kernel) on an NHWC input, which gets an NHWC
 * dst. oneDNN 3.2 offers its jit_dw kernel on NHWC only when dst is NHWC too (with
 * format_tag_any only brdgmm_dw, seen on AVX2: a different sum order, other bits
 * than the fused primitive's jit_dw). NULL: out of memory (error recorded). */
const_dnnl_memory_desc_t tt_conv_dw_pair_dst(tt_engine *e, int32_t i, const_dnnl_memory_desc_t src,
                                              const_dnnl_memory_desc_t dst_any) {
    if (!tt_conv_dw_pair_kernel(e, i) || e->model->ops[i].type != TT_OP_DEPTHWISE_CONV_2D) return dst_any;
    int64_t xd[DNNL_MAX_NDIMS], yd[DNNL_MAX_NDIMS];
    tt_md_dims(src, xd);
    tt_md_dims(dst_any, yd);
    dnnl_data_type_t dt = tt_md_dt(src);
    dnnl_memory_desc_t nhwc = tt_md_tag_dt(e, 4, xd, dt, dnnl_acdb);
    if (!nhwc) return NULL;
    if (!dnnl_memory_desc_equal(nhwc, src)) return dst_any;
    return tt_md_tag_dt(e, 4, yd, tt_md_dt(dst_any), dnnl_acdb);
}

/* Moves *pd to its first implementation whose name starts with prefix. When none
 * does, *pd is left on the implementation it had: next_impl only moves forward and
 * ends on a reference kernel, so a clone (which keeps the implementation but cannot
 * iterate) is the way back. */
void tt_conv_pd_prefer(dnnl_primitive_desc_t *pd, const char *prefix) {
    if (!prefix) return;
    dnnl_primitive_desc_t first = NULL;
    if (dnnl_primitive_desc_clone(&first, *pd) != dnnl_success) return;
    const char *impl = NULL;
    dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl);
    while (impl && strncmp(impl, prefix, strlen(prefix)) != 0) {
        if (dnnl_primitive_desc_next_impl(*pd) != dnnl_success) {
            impl = NULL;
            break;
        }
        dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl);
    }
    if (impl) {
        dnnl_primitive_desc_destroy(first);
        return;
    }
    dnnl_primitive_desc_destroy(*pd);
    *pd = first;
}
