/* plan.c - graph analysis of an engine, before any primitive exists: the ops
 * the output needs and every tensor's shape (through each op's shape rule in
 * the op table), PAD folding, liveness (with the training boundary: every
 * tensor a trainable op reads or writes lives on), residual-ADD fusion (below
 * the boundary only), expand + depthwise fusion (inference engines only) and
 * whether the batch may run in chunks.
 */
#include "engine/tt_plan.h"

#include <stdlib.h>
#include <string.h>

tt_status tt_plan_shapes(const tt_model *m, int32_t batch, int32_t in_h, int32_t in_w, int32_t output_tensor,
                         tt_shape *shapes, bool *needed, int32_t *producer) {
    if (m->n_inputs < 1) return tt_error(TT_INVALID_ARGUMENT, "the model has no input tensor");
    int32_t in = m->inputs[0];
    const tt_tensor *it = &m->tensors[in];
    if (it->rank != 4)
        return tt_error(TT_UNSUPPORTED, "the model's input tensor %d has rank %d; only NHWC (rank 4) is supported", in,
                        it->rank);
    if (batch < 1 || in_h < 0 || in_w < 0 || output_tensor < 0 || output_tensor >= m->n_tensors)
        return tt_error(TT_INVALID_ARGUMENT, "invalid engine arguments: batch=%d, height=%d, width=%d, "
                        "output_tensor=%d", batch, in_h, in_w, output_tensor);
    if (tt_is_const(&m->tensors[output_tensor]))
        return tt_error(TT_INVALID_ARGUMENT, "tensor %d ('%s') is a constant, not computed from the input",
                        output_tensor, m->tensors[output_tensor].name);
    for (int32_t t = 0; t < m->n_tensors; t++) producer[t] = -1;
    for (int32_t i = 0; i < m->n_ops; i++) {
        needed[i] = false;
        if (producer[m->ops[i].output] < 0) producer[m->ops[i].output] = i;
    }
    /* Backwards from the output: every op some needed op reads from. Ops are in
     * execution order, so a producer always has a smaller index than its readers. */
    /* Each needed op pushes its inputs once, so the stack never holds more than
     * the total input count of all ops (+ the output). */
    size_t cap = 1;
    for (int32_t i = 0; i < m->n_ops; i++) cap += (size_t)m->ops[i].n_inputs;
    int32_t *stack = (int32_t *)malloc(sizeof(int32_t) * cap);
    if (!stack) return tt_oom();
    int32_t sp = 0;
    stack[sp++] = output_tensor;
    tt_status s = TT_OK;
    while (sp > 0 && s == TT_OK) {
        int32_t t = stack[--sp];
        if (t == in || tt_is_const(&m->tensors[t])) continue;
        int32_t p = producer[t];
        if (p < 0) {
            s = tt_error(TT_INVALID_ARGUMENT, "tensor %d ('%s') is not computed from the model's first input (tensor "
                         "%d)", t, m->tensors[t].name, in);
            break;
        }
        if (needed[p]) continue;
        needed[p] = true;
        for (int32_t k = 0; k < m->ops[p].n_inputs; k++) {
            int32_t u = m->ops[p].inputs[k];
            if (u < 0) continue;
            if (producer[u] >= p) {
                s = tt_error(TT_INVALID_MODEL, "operator %d reads tensor %d before operator %d computes it", p, u,
                             producer[u]);
                break;
            }
            stack[sp++] = u; /* sp < cap: see above */
        }
    }
    free(stack);
    if (s) return s;
    memset(shapes, 0, sizeof(tt_shape) * (size_t)m->n_tensors);
    shapes[in] = (tt_shape){.rank = 4, .d = {batch, in_h ? in_h : it->shape[1], in_w ? in_w : it->shape[2],
                                             it->shape[3]}};
    for (int32_t i = 0; i < m->n_ops; i++) {
        if (!needed[i]) continue;
        if ((s = m->ops[i].kind->shape(m, i, shapes, &shapes[m->ops[i].output]))) return s;
    }
    return TT_OK;
}

/* ---- planning: liveness and residual fusion ------------------------------------------ */

/* A PAD whose output only feeds one CONV_2D / DEPTHWISE_CONV_2D (Keras' ZeroPadding2D
 * before a stride-2 conv) becomes that conv's padding: no copy, no plain layout. */
void tt_plan_pad_folding(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = 0; i < m->n_ops; i++) e->fold_pad[i] = -1;
    for (int32_t i = 0; i < m->n_ops; i++) {
        const tt_op *op = &m->ops[i];
        if (!e->needed[i] || (op->type != TT_OP_CONV_2D && op->type != TT_OP_DEPTHWISE_CONV_2D)) continue;
        int32_t t = op->inputs[0], p = e->producer[t];
        if (p < 0 || m->ops[p].type != TT_OP_PAD || t == e->output_tensor) continue;
        const int32_t *pads = m->tensors[m->ops[p].inputs[1]].idata;
        if (pads[0] || pads[1] || pads[6] || pads[7]) continue; /* batch or channel padding */
        int32_t readers = 0;
        for (int32_t q = 0; q < m->n_ops; q++) {
            if (!e->needed[q]) continue;
            for (int32_t k = 0; k < m->ops[q].n_inputs; k++) readers += m->ops[q].inputs[k] == t;
        }
        if (readers != 1) continue;
        e->fold_pad[i] = p;
        e->needed[p] = false; /* the conv reads the PAD's input directly */
    }
}

void tt_plan_liveness(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t t = 0; t < m->n_tensors; t++) {
        e->last_use[t] = -1;
        e->consumers[t] = 0;
    }
    for (int32_t i = 0; i < m->n_ops; i++) {
        if (!e->needed[i]) continue;
        for (int32_t k = 0; k < m->ops[i].n_inputs; k++) {
            int32_t t = tt_op_input(e, i, k);
            if (t < 0) continue;
            e->last_use[t] = i;
            e->consumers[t]++;
        }
    }
    e->last_use[e->output_tensor] = TT_LIVE_FOREVER;
    /* Training: everything a trainable op reads or writes is kept for backward. */
    for (int32_t i = e->train_from; i < m->n_ops; i++) {
        if (!e->needed[i]) continue;
        for (int32_t k = 0; k < m->ops[i].n_inputs; k++) {
            int32_t t = tt_op_input(e, i, k);
            if (t >= 0 && !tt_is_const(&m->tensors[t])) e->last_use[t] = TT_LIVE_FOREVER;
        }
        e->last_use[m->ops[i].output] = TT_LIVE_FOREVER;
    }
}

static bool is_view_op(const tt_op *op) { return op->kind->view != 0; }

/* The MobileNetV2 residual: y = conv(x) + r with conv's output read only by the
 * ADD. The conv can write into r's buffer with a sum post-op when r is not read
 * after the conv starts (its other readers all run before the conv). Checked
 * again when building (layouts, slots). */
void tt_plan_fusion(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = 0; i < m->n_ops; i++) e->fuse_add[i] = -1;
    if (e->precision == TT_PRECISION_INT8_TFLITE) return; /* TFLite rounds the conv output, then adds */
    for (int32_t k = 0; k < m->n_ops; k++) {
        const tt_op *add = &m->ops[k];
        /* a trainable ADD stays an ADD: the sum post-op would overwrite its input */
        if (!e->needed[k] || add->type != TT_OP_ADD || k >= e->train_from) continue;
        for (int side = 0; side < 2; side++) {
            int32_t a = add->inputs[side], r = add->inputs[1 - side];
            if (a == r || a < 0 || r < 0) continue;
            int32_t j = e->producer[a];
            if (j < 0 || m->ops[j].type != TT_OP_CONV_2D || m->ops[j].activation != TT_ACT_NONE) continue;
            if (e->consumers[a] != 1 || a == e->output_tensor || r == e->output_tensor) continue;
            if (tt_is_const(&m->tensors[r]) || r == m->inputs[0] || e->producer[r] < 0 || e->producer[r] >= j) continue;
            if (e->shapes[a].rank != 4 || memcmp(&e->shapes[a], &e->shapes[r], sizeof(tt_shape)) != 0) continue;
            if (e->fuse_add[j] >= 0) continue;
            /* Every other reader of r must run before the conv, and r's bytes must be
             * r's alone: no view (RESHAPE, QUANTIZE, DEQUANTIZE) of r or under r. */
            bool ok = !is_view_op(&m->ops[e->producer[r]]);
            for (int32_t q = 0; q < m->n_ops && ok; q++) {
                if (!e->needed[q] || q == k) continue;
                for (int32_t u = 0; u < m->ops[q].n_inputs; u++)
                    if (tt_op_input(e, q, u) == r && (q >= j || is_view_op(&m->ops[q]))) ok = false;
            }
            if (!ok) continue;
            e->fuse_add[j] = k;
            break;
        }
    }
}

/* The MobileNetV2 expand + depthwise pair: a 1x1 CONV_2D (stride 1) whose
 * output only feeds a 3x3 DEPTHWISE_CONV_2D (directly or through a folded PAD),
 * in an inference engine. oneDNN runs both in one primitive with a depthwise
 * post-op (dnnl_post_ops_append_dw): the expanded tensor, the network's largest,
 * never goes to memory in full. Only a proposal: conv.c checks the padding, the kernel
 * oneDNN picks and falls back to two convolutions. Float engines only (f32, bf16).
 * TFLITE_TRANSFER_DW_FUSION=0 turns it off (A/B runs). */
void tt_plan_dw_fusion(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = 0; i < m->n_ops; i++) e->fuse_dw[i] = -1;
    /* A training engine keeps its frozen bottom unfused: the same kernels, and so the
     * same bits, as before fusion existed, which the fine-tuning gradients were
     * checked with against Keras (tests/test_finetune_grad.py: fused, a ReLU6 edge
     * flips and one kernel gradient moves by 2e-3 relative). */
    if (tt_is_int8(e) || e->train_from < m->n_ops) return;
    const char *env = getenv("TFLITE_TRANSFER_DW_FUSION");
    if (env && strcmp(env, "0") == 0) return;
    for (int32_t j = 0; j < m->n_ops; j++) {
        const tt_op *dw = &m->ops[j];
        if (!e->needed[j] || dw->type != TT_OP_DEPTHWISE_CONV_2D) continue;
        const tt_tensor *w = &m->tensors[dw->inputs[1]];
        if (w->shape[1] != 3 || w->shape[2] != 3 || dw->stride_h != dw->stride_w || dw->stride_h < 1 ||
            dw->stride_h > 2 || dw->dilation_h != 1 || dw->dilation_w != 1 || dw->n_inputs < 3 || dw->inputs[2] < 0)
            continue;
        int32_t a = tt_op_input(e, j, 0), i = e->producer[a];
        if (i < 0 || !e->needed[i] || m->ops[i].type != TT_OP_CONV_2D || e->fuse_add[i] >= 0) continue;
        const tt_op *pw = &m->ops[i];
        const tt_tensor *pwt = &m->tensors[pw->inputs[1]];
        if (pwt->shape[1] != 1 || pwt->shape[2] != 1 || pw->stride_h != 1 || pw->stride_w != 1) continue;
        if (e->consumers[a] != 1 || a == e->output_tensor || e->last_use[a] != j) continue;
        /* At 7x7 (MobileNetV2's last blocks) oneDNN 3.2 has only its reference fusion, and
         * the fused primitive's own kernels, which an unfused pair must then run for equal
         * bits (conv.c), are slower there than its default ones: not proposed. */
        if (e->shapes[a].d[1] * e->shapes[a].d[2] < 14 * 14) continue;
        e->fuse_dw[i] = j;
    }
}

bool tt_plan_images_independent(const tt_engine *e) {
    const tt_model *m = e->model;
    const tt_shape *o = &e->out_shape;
    if (o->rank < 1 || o->d[0] != e->batch) return false;
    for (int32_t i = 0; i < m->n_ops; i++) {
        if (!e->needed[i]) continue;
        if (m->ops[i].kind->mixes_images && m->ops[i].kind->mixes_images(m, i, e->shapes)) return false;
    }
    return true;
}

tt_status tt_model_output_shape(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                int32_t output_tensor, int32_t *rank, int64_t shape[TT_MAX_RANK]) {
    tt_shape *shapes = (tt_shape *)calloc((size_t)model->n_tensors + 1, sizeof *shapes);
    bool *needed = (bool *)calloc((size_t)model->n_ops + 1, sizeof *needed);
    int32_t *producer = (int32_t *)calloc((size_t)model->n_tensors + 1, sizeof *producer);
    tt_status s = (shapes && needed && producer)
                      ? tt_plan_shapes(model, batch, in_h, in_w, output_tensor, shapes, needed, producer)
                      : tt_oom();
    if (s == TT_OK) {
        *rank = shapes[output_tensor].rank;
        memcpy(shape, shapes[output_tensor].d, sizeof(int64_t) * TT_MAX_RANK);
    }
    free(shapes);
    free(needed);
    free(producer);
    return s;
}
