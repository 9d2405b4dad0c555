/* shape.c - shape helpers of the model layer, shared by the op shape rules
 * (ops/<family>.c) and the planner (engine/plan.c). */
#include "model/tt_model.h"

#include <stdio.h>

tt_shape tt_stored_shape(const tt_tensor *t) {
    tt_shape s = {.rank = t->rank};
    for (int32_t k = 0; k < t->rank; k++) s.d[k] = t->shape[k];
    return s;
}

const tt_shape *tt_input_shape(const tt_model *m, const tt_shape *shapes, tt_shape *tmp, int32_t t) {
    if (tt_is_const(&m->tensors[t])) {
        *tmp = tt_stored_shape(&m->tensors[t]);
        return tmp;
    }
    return &shapes[t];
}

const char *tt_shape_str(const tt_shape *s, char buf[128]) {
    size_t n = 0;
    buf[n++] = '[';
    buf[n] = '\0';
    for (int32_t k = 0; k < s->rank && n < 100; k++)
        n += (size_t)snprintf(buf + n, 128 - n, k ? ", %lld" : "%lld", (long long)s->d[k]);
    snprintf(buf + n, 128 - n, "]");
    return buf;
}

void tt_tf_padding(tt_padding padding, int64_t in, int64_t k, int64_t stride, int64_t dilation, int64_t *out,
                   int64_t *pad_l, int64_t *pad_r) {
    int64_t dk = (k - 1) * dilation + 1;
    int64_t o = padding == TT_PADDING_SAME ? (in + stride - 1) / stride : (in >= dk ? (in - dk) / stride + 1 : 0);
    int64_t total = o > 0 ? (o - 1) * stride + dk - in : 0;
    if (total < 0) total = 0;
    *out = o;
    *pad_l = total / 2;
    *pad_r = total - total / 2;
}

#define OPNAME(op) tt_builtin_name((op)->builtin_code)

tt_status tt_window_shape(const tt_op *op, int32_t i, const tt_shape *x, int64_t kh, int64_t kw, int64_t c,
                          tt_shape *out) {
    int64_t oh, ow, pl, pr;
    tt_tf_padding(op->padding, x->d[1], kh, op->stride_h, op->dilation_h ? op->dilation_h : 1, &oh, &pl, &pr);
    tt_tf_padding(op->padding, x->d[2], kw, op->stride_w, op->dilation_w ? op->dilation_w : 1, &ow, &pl, &pr);
    if (oh < 1 || ow < 1)
        return tt_error(TT_INVALID_ARGUMENT, "operator %d (%s): the %lldx%lld input is smaller than the %lldx%lld "
                        "window (VALID padding); use a larger input", i, OPNAME(op), (long long)x->d[1],
                        (long long)x->d[2], (long long)kh, (long long)kw);
    *out = (tt_shape){.rank = 4, .d = {x->d[0], oh, ow, c}};
    return TT_OK;
}
