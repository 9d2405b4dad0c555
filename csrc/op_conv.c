/* op_conv.c - CONV_2D and DEPTHWISE_CONV_2D as oneDNN convolutions.
 *
 * Depthwise (depth_multiplier 1) is a grouped convolution with groups = C.
 * Layouts are left to oneDNN (format_tag_any for src, weights, dst); the
 * TFLite filter is reordered once, at create, into the layout the chosen
 * kernel wants. Padding follows TF's SAME/VALID rule, asymmetric when the
 * total is odd (the extra row/column at the bottom/right). A fused RELU/RELU6
 * is an eltwise post-op; a residual ADD planned by engine.c (fuse_add) becomes a
 * sum post-op with the conv writing into the residual's buffer.
 */
#include "engine_internal.h"

#include <string.h>

/* Builds op i. x: [N, H, W, Cin] NHWC; filter: CONV [O, KH, KW, Cin], DW [1, KH, KW, C];
 * bias [O] or absent; y: [N, OH, OW, O]. */
tt_status conv_forward_build(tt_engine *e, int32_t i) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    const tt_tensor *b = (op->n_inputs > 2 && op->inputs[2] >= 0) ? &m->tensors[op->inputs[2]] : NULL;
    int32_t xv = tt_input_value(e, i, tt_op_input(e, i, 0));
    if (xv < 0) return TT_INVALID_MODEL;
    const tt_shape *x = &e->values[xv].shape;
    const tt_shape *xp = &e->shapes[op->inputs[0]]; /* after a folded PAD, if any */
    const tt_shape *y = &e->shapes[op->output];
    int64_t kh = w->shape[1], kw = w->shape[2], cin = x->d[3], cout = y->d[3];
    int64_t oh, ow, pt, pb, pl, pr;
    tt_tf_padding(op->padding, xp->d[1], kh, op->stride_h, op->dilation_h, &oh, &pt, &pb);
    tt_tf_padding(op->padding, xp->d[2], kw, op->stride_w, op->dilation_w, &ow, &pl, &pr);
    if (e->fold_pad[i] >= 0) { /* zero padding of the PAD op, in front of the conv's own */
        const int32_t *pads = e->model->tensors[e->model->ops[e->fold_pad[i]].inputs[1]].idata;
        pt += pads[2];
        pb += pads[3];
        pl += pads[4];
        pr += pads[5];
    }

    int64_t src_dims[4] = {x->d[0], cin, x->d[1], x->d[2]};
    int64_t dst_dims[4] = {y->d[0], cout, oh, ow};
    dnnl_dims_t strides = {op->stride_h, op->stride_w};
    dnnl_dims_t dilates = {op->dilation_h - 1, op->dilation_w - 1}; /* oneDNN counts from 0 */
    dnnl_dims_t pad_l = {pt, pl}, pad_r = {pb, pr};

    /* Filter as stored (TFLite), described with strides over oneDNN's logical dims. */
    dnnl_memory_desc_t w_user, w_any;
    if (dw) {
        int64_t wd[5] = {cin, 1, 1, kh, kw};            /* {G, O/G, I/G, KH, KW} */
        int64_t ws[5] = {1, 1, 1, kw * cin, cin};       /* [1, KH, KW, C] */
        w_user = tt_md_strides(e, 5, wd, ws);
        w_any = tt_md_tag(e, 5, wd, dnnl_format_tag_any);
    } else {
        int64_t wd[4] = {cout, cin, kh, kw};             /* {O, I, KH, KW} */
        int64_t ws[4] = {kh * kw * cin, 1, kw * cin, cin}; /* [O, KH, KW, I] */
        w_user = tt_md_strides(e, 4, wd, ws);
        w_any = tt_md_tag(e, 4, wd, dnnl_format_tag_any);
    }
    int64_t bd[1] = {cout};
    dnnl_memory_desc_t b_md = b ? tt_md_tag(e, 1, bd, dnnl_a) : NULL;
    dnnl_memory_desc_t src_any = tt_md_tag(e, 4, src_dims, dnnl_format_tag_any);
    dnnl_memory_desc_t dst_any = tt_md_tag(e, 4, dst_dims, dnnl_format_tag_any);
    if (!w_user || !w_any || (b && !b_md) || !src_any || !dst_any) return TT_RUNTIME_ERROR;

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
     * then format_tag_any with a reorder; each with the residual fused if planned. */
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    tt_status s;
    for (int attempt = 0; attempt < 4 && st != dnnl_success; attempt++) {
        bool fuse = attempt < 2, own_src = (attempt % 2) == 0;
        if (fuse && rv < 0) continue;
        dnnl_primitive_attr_t attr = NULL;
        tt_activation act = fuse ? m->ops[add].activation : op->activation;
        if ((s = tt_attr(e, i, act, fuse, &attr))) return s;
        st = dnnl_convolution_forward_primitive_desc_create(
            &pd, e->eng, dnnl_forward_inference, dnnl_convolution_direct, own_src ? e->values[xv].md : src_any,
            w_any, b_md, fuse ? e->values[rv].md : dst_any, strides, dilates, pad_l, pad_r, attr);
        dnnl_primitive_attr_destroy(attr);
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
    dnnl_memory_t wmem = src ? tt_const_memory(e, i, w->data, w_user, w_md) : NULL;
    dnnl_memory_t bmem = NULL;
    if (wmem && b) bmem = tt_const_memory(e, i, b->data, b_md, b_md);
    int32_t yv = -1;
    if (wmem && (!b || bmem)) {
        if (rv >= 0) {
            /* the ADD's output is the residual buffer after the conv has summed into it */
            const tt_op *a = &m->ops[add];
            yv = tt_view_value(e, a->output, rv, e->values[rv].md);
            e->add_done[add] = true;
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
    return tt_add_primitive(e, i, pd, b ? 4 : 3, args);
}
