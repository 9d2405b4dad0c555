/* op_pool.c - AVERAGE_POOL_2D, MAX_POOL_2D and MEAN over H, W as oneDNN pooling.
 *
 * AVERAGE_POOL_2D divides by the number of input pixels under the window
 * (TF's SAME semantics: padding is excluded), so it is pooling_avg_exclude_padding;
 * MAX_POOL_2D ignores padding too. MEAN over axes [1, 2] is a global average pool
 * (kernel = H x W); without keep_dims its [N, C] output keeps the {N, C, 1, 1}
 * layout, whose plain bytes are the [N, C] row-major tensor.
 */
#include "engine_internal.h"

/* Builds op i. x: [N, H, W, C]; y: [N, OH, OW, C] (MEAN: [N, 1, 1, C] or [N, C]). */
tt_status pool_forward_build(tt_engine *e, int32_t i) {
    const tt_op *op = &e->model->ops[i];
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    const tt_shape *x = &e->values[xv].shape;
    dnnl_dims_t kernel = {0}, strides = {0}, pad_l = {0}, pad_r = {0}, dil = {0};
    int64_t oh = 1, ow = 1;
    dnnl_alg_kind_t alg = op->type == TT_OP_MAX_POOL_2D ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    if (op->type == TT_OP_MEAN) {
        kernel[0] = x->d[1];
        kernel[1] = x->d[2];
        strides[0] = strides[1] = 1;
    } else {
        kernel[0] = op->filter_h;
        kernel[1] = op->filter_w;
        strides[0] = op->stride_h;
        strides[1] = op->stride_w;
        tt_tf_padding(op->padding, x->d[1], kernel[0], strides[0], 1, &oh, &pad_l[0], &pad_r[0]);
        tt_tf_padding(op->padding, x->d[2], kernel[1], strides[1], 1, &ow, &pad_l[1], &pad_r[1]);
    }
    int64_t dst_dims[4] = {x->d[0], x->d[3], oh, ow};
    dnnl_memory_desc_t dst_any = tt_md_tag(e, 4, dst_dims, dnnl_format_tag_any);
    if (!dst_any) return TT_RUNTIME_ERROR;
    /* Pooling takes its source layout as given (no format_tag_any); blocked layouts
     * from a conv are what it is fastest on. */
    const_dnnl_memory_desc_t src_md = e->values[xv].md;
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, op->type == TT_OP_MEAN ? TT_ACT_NONE : op->activation, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_pooling_forward_primitive_desc_create(&pd, e->eng, dnnl_forward_inference, alg, src_md,
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
    return tt_add_primitive(e, i, pd, 2, args);
}
