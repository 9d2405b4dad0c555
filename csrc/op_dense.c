/* op_dense.c - FULLY_CONNECTED as a oneDNN inner product.
 *
 * TFLite flattens the input to [M, I] (I = the weights' input size, M = all
 * the rest), so the input is brought to plain layout and viewed as [M, I].
 */
#include "engine_internal.h"

/* Builds op i. x: any shape with I | size; weights [O, I]; bias [O] or absent; y: [M, O]
 * (keep_num_dims: x's shape with its last dim O). */
tt_status fc_forward_build(tt_engine *e, int32_t i) {
    const tt_model *m = e->model;
    const tt_op *op = &m->ops[i];
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    const tt_tensor *b = (op->n_inputs > 2 && op->inputs[2] >= 0) ? &m->tensors[op->inputs[2]] : NULL;
    int32_t xv = tt_input_value(e, i, op->inputs[0]);
    if (xv < 0) return TT_INVALID_MODEL;
    int64_t total = 1;
    for (int32_t k = 0; k < e->values[xv].shape.rank; k++) total *= e->values[xv].shape.d[k];
    int64_t in_f = w->shape[1], out_f = w->shape[0];
    int64_t sd[2] = {total / in_f, in_f}, wd[2] = {out_f, in_f}, dd[2] = {total / in_f, out_f}, bd[1] = {out_f};
    dnnl_memory_desc_t src_md = tt_md_tag(e, 2, sd, dnnl_ab);
    dnnl_memory_desc_t w_user = tt_md_tag(e, 2, wd, dnnl_ab); /* TFLite [O, I] row-major */
    dnnl_memory_desc_t w_any = tt_md_tag(e, 2, wd, dnnl_format_tag_any);
    dnnl_memory_desc_t dst_any = tt_md_tag(e, 2, dd, dnnl_format_tag_any);
    dnnl_memory_desc_t b_md = b ? tt_md_tag(e, 1, bd, dnnl_a) : NULL;
    if (!src_md || !w_user || !w_any || !dst_any || (b && !b_md)) return TT_RUNTIME_ERROR;
    int32_t pv = tt_value_plain(e, i, xv);
    int32_t sv = pv >= 0 ? tt_view_value(e, -1, pv, src_md) : -1;
    if (sv < 0) return TT_RUNTIME_ERROR;
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, op->activation, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_inner_product_forward_primitive_desc_create(&pd, e->eng, dnnl_forward_inference, src_md,
                                                                        w_any, b_md, dst_any, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "inner product descriptor", st);
    const_dnnl_memory_desc_t src_q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t dst_q = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src = tt_value_as(e, i, sv, src_q);
    dnnl_memory_t wmem = src ? tt_const_memory(e, i, w->data, w_user, w_q) : NULL;
    dnnl_memory_t bmem = (wmem && b) ? tt_const_memory(e, i, b->data, b_md, b_md) : NULL;
    int32_t yv = (wmem && (!b || bmem)) ? tt_new_value(e, op->output, dst_q, e->last_use[op->output]) : -1;
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[yv].mem},
                               {DNNL_ARG_BIAS, bmem}};
    return tt_add_primitive(e, i, pd, b ? 4 : 3, args);
}
