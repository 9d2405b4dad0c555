/* dense.c - FULLY_CONNECTED as a oneDNN inner product.
 *
 * TFLite flattens the input to [M, I] (I = the weights' input size, M = all
 * the rest), so the input is brought to plain layout and viewed as [M, I].
 */
#include "engine/tt_build.h"
#include "ops/tt_ops.h"

/* ---- reader and shape ------------------------------------------------------------------- */

/* FullyConnectedOptions. */
static tt_status fc_parse(const tt_options *o, tt_op *op) {
    tt_status s;
    uint8_t act = 0, u8 = 0;
    if ((s = tt_options_u8(o, 0, 0, &act)) || (s = tt_options_u8(o, 1, 0, &u8))) return s;
    if (u8 != 0)
        return tt_error(TT_UNSUPPORTED, "%s uses a shuffled weights format (%d); only DEFAULT is supported",
                        tt_options_where(o), u8);
    if ((s = tt_options_u8(o, 2, 0, &u8))) return s;
    op->keep_dims = u8 != 0;
    return tt_options_activation(o, (int8_t)act, op);
}

/* weights: constant [O, I]; bias: constant [O] or absent. */
static tt_status fc_check(const tt_model *m, const tt_op *op, const char *where) {
    tt_status s;
    if ((s = tt_require_const(m, op, 1, "weights", 0, where))) return s;
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    if (w->rank != 2)
        return tt_error(TT_INVALID_MODEL, "%s: weights tensor %d has rank %d, expected 2", where, op->inputs[1],
                        w->rank);
    return tt_require_bias(m, op, w->shape[0], where);
}

/* x: any shape with I | size -> [M, O] (keep_num_dims: x's shape with its last dim O). */
static tt_status fc_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0;
    char b1[128];
    const tt_shape *x = tt_input_shape(m, shapes, &t0, op->inputs[0]);
    const tt_tensor *w = &m->tensors[op->inputs[1]];
    int64_t total = 1;
    for (int32_t k = 0; k < x->rank; k++) total *= x->d[k];
    if (total % w->shape[1] != 0 || (op->keep_dims && x->d[x->rank - 1] != w->shape[1]))
        return tt_error(TT_INVALID_ARGUMENT, "operator %d (FULLY_CONNECTED): input %s does not fit weights with %d "
                        "inputs", i, tt_shape_str(x, b1), w->shape[1]);
    if (op->keep_dims) {
        *out = *x;
        out->d[x->rank - 1] = w->shape[0];
    } else {
        *out = (tt_shape){.rank = 2, .d = {total / w->shape[1], w->shape[0]}};
    }
    return TT_OK;
}

/* Rows of one image must not straddle images: each image's features are a whole number of rows. */
static int fc_mixes(const tt_model *m, int32_t i, const tt_shape *shapes) {
    const tt_op *op = &m->ops[i];
    const tt_shape *x = &shapes[op->inputs[0]];
    int64_t per_image = 1;
    for (int32_t k = 1; k < x->rank; k++) per_image *= x->d[k];
    return x->rank < 1 || per_image % m->tensors[op->inputs[1]].shape[1] != 0;
}

/* ---- forward -------------------------------------------------------------------------------- */

/* Builds op i. x: any shape with I | size; weights [O, I]; bias [O] or absent; y: [M, O]
 * (keep_num_dims: x's shape with its last dim O). */
static tt_status fc_forward(tt_engine *e, int32_t i) {
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
    dnnl_status_t st = dnnl_inner_product_forward_primitive_desc_create(&pd, e->eng, tt_prop(e, i), src_md,
                                                                        w_any, b_md, dst_any, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "inner product descriptor", st);
    const_dnnl_memory_desc_t src_q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t w_q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t dst_q = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src = tt_value_as(e, i, sv, src_q);
    dnnl_memory_t wmem = src ? tt_weights_memory(e, i, op->inputs[1], w_user, w_q) : NULL;
    dnnl_memory_t bmem = (wmem && b) ? tt_weights_memory(e, i, op->inputs[2], b_md, b_md) : NULL;
    int32_t yv = (wmem && (!b || bmem)) ? tt_new_value(e, op->output, dst_q, e->last_use[op->output]) : -1;
    if (yv < 0) {
        dnnl_primitive_desc_destroy(pd);
        return TT_RUNTIME_ERROR;
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, e->values[yv].mem},
                               {DNNL_ARG_BIAS, bmem}};
    return tt_add_forward(e, i, pd, b ? 4 : 3, args);
}

/* ---- table entry ------------------------------------------------------------------------------ */

const tt_op_kind tt_op_fully_connected = {
    .name = "FULLY_CONNECTED", .builtin_code = 9, .type = TT_OP_FULLY_CONNECTED, .options_type = 8,
    .min_inputs = 2, .max_inputs = 3, .optional_inputs = 1u << 2, .fields = TT_FIELD_ACTIVATION | TT_FIELD_KEEP_DIMS,
    .parse = fc_parse, .check = fc_check, .shape = fc_shape, .mixes_images = fc_mixes, .forward = fc_forward,
};
