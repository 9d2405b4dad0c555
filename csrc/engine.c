/* engine.c - the oneDNN forward pass of a tt_model: planning (shapes, needed
 * ops, liveness, residual-ADD fusion), buffer slots, steps, create/run/destroy.
 * The per-op primitive builders live in op_*.c (see engine_internal.h).
 */
#include "engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small growable arrays ---------------------------------------------------- */

/* Grows *arr (elements of `size` bytes) so that index `n` fits; 0 on success. */
static int grow(void **arr, int32_t *cap, int32_t n, size_t size) {
    if (n < *cap) return 0;
    int32_t nc = *cap ? *cap * 2 : 16;
    while (nc <= n) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * size);
    if (!p) return -1;
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(nc - *cap) * size);
    *arr = p;
    *cap = nc;
    return 0;
}
#define GROW(e, arr, n, cap) grow((void **)&(e)->arr, &(e)->cap, (e)->n, sizeof *(e)->arr)

static const char *dnnl_status_str(dnnl_status_t st) {
    switch (st) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "no implementation for these shapes/layouts";
    case dnnl_last_impl_reached: return "last implementation reached";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown error";
    }
}

tt_status tt_dnnl_fail(tt_engine *e, int32_t i, const char *what, dnnl_status_t st) {
    const char *op = i >= 0 ? tt_builtin_name(e->model->ops[i].builtin_code) : "engine";
    tt_status s = st == dnnl_out_of_memory ? TT_OUT_OF_MEMORY
                  : st == dnnl_unimplemented ? TT_UNSUPPORTED
                                             : TT_RUNTIME_ERROR;
    return tt_error(s, "operator %d (%s): oneDNN %s failed: %s", i, op, what, dnnl_status_str(st));
}

static tt_status oom(void) { return tt_error(TT_OUT_OF_MEMORY, "out of memory while building the engine"); }

/* ---- memory descriptors --------------------------------------------------------- */

static dnnl_memory_desc_t own_md(tt_engine *e, dnnl_memory_desc_t md) {
    if (!md) return NULL;
    if (GROW(e, mds, n_mds, cap_mds)) {
        dnnl_memory_desc_destroy(md);
        oom();
        return NULL;
    }
    e->mds[e->n_mds++] = md;
    return md;
}

dnnl_memory_desc_t tt_md_tag(tt_engine *e, int ndims, const int64_t *dims, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_create_with_tag(&md, ndims, dims, dnnl_f32, tag);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, "memory descriptor", st);
        return NULL;
    }
    return own_md(e, md);
}

dnnl_memory_desc_t tt_md_strides(tt_engine *e, int ndims, const int64_t *dims, const int64_t *strides) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_create_with_strides(&md, ndims, dims, dnnl_f32, strides);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, "memory descriptor", st);
        return NULL;
    }
    return own_md(e, md);
}

dnnl_memory_desc_t tt_md_clone(tt_engine *e, const_dnnl_memory_desc_t src) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_clone(&md, src);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, "memory descriptor clone", st);
        return NULL;
    }
    return own_md(e, md);
}

int tt_md_ndims(const_dnnl_memory_desc_t md) {
    int nd = 0;
    dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd);
    return nd;
}

void tt_md_dims(const_dnnl_memory_desc_t md, int64_t dims[DNNL_MAX_NDIMS]) {
    const dnnl_dims_t *d = NULL;
    memset(dims, 0, sizeof(int64_t) * DNNL_MAX_NDIMS);
    if (dnnl_memory_desc_query(md, dnnl_query_dims, &d) == dnnl_success && d)
        memcpy(dims, *d, sizeof(int64_t) * (size_t)tt_md_ndims(md));
}

/* Row-major strides of `dims`, except 4D {N, C, H, W}, which is laid out NHWC. */
static void plain_strides(int nd, const int64_t *dims, int64_t *strides) {
    if (nd == 4) {
        strides[1] = 1;
        strides[3] = dims[1];
        strides[2] = dims[1] * dims[3];
        strides[0] = dims[1] * dims[3] * dims[2];
        return;
    }
    int64_t s = 1;
    for (int k = nd - 1; k >= 0; k--) {
        strides[k] = s;
        s *= dims[k];
    }
}

dnnl_memory_desc_t tt_md_plain_like(tt_engine *e, const_dnnl_memory_desc_t md) {
    int64_t dims[DNNL_MAX_NDIMS], strides[DNNL_MAX_NDIMS];
    int nd = tt_md_ndims(md);
    tt_md_dims(md, dims);
    plain_strides(nd, dims, strides);
    return tt_md_strides(e, nd, dims, strides);
}

dnnl_memory_desc_t tt_md_for_shape(tt_engine *e, const tt_shape *s) {
    int64_t dims[DNNL_MAX_NDIMS], strides[DNNL_MAX_NDIMS];
    int nd = s->rank;
    if (nd == 0) { /* a scalar: oneDNN wants at least one dim */
        nd = 1;
        dims[0] = 1;
    } else if (nd == 4) {
        dims[0] = s->d[0];
        dims[1] = s->d[3];
        dims[2] = s->d[1];
        dims[3] = s->d[2];
    } else {
        for (int k = 0; k < nd; k++) dims[k] = s->d[k];
    }
    plain_strides(nd, dims, strides);
    return tt_md_strides(e, nd, dims, strides);
}

/* ---- memories, values, slots ------------------------------------------------------ */

static dnnl_memory_t new_memory(tt_engine *e, const_dnnl_memory_desc_t md, void *handle) {
    dnnl_memory_t mem = NULL;
    dnnl_status_t st = dnnl_memory_create(&mem, md, e->eng, handle);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, "memory creation", st);
        return NULL;
    }
    if (GROW(e, mems, n_mems, cap_mems)) {
        dnnl_memory_destroy(mem);
        oom();
        return NULL;
    }
    e->mems[e->n_mems++] = mem;
    return mem;
}

static int bind(tt_engine *e, dnnl_memory_t mem, int32_t slot) {
    if (GROW(e, bindings, n_bindings, cap_bindings)) return -1;
    e->bindings[e->n_bindings].mem = mem;
    e->bindings[e->n_bindings].slot = slot;
    e->n_bindings++;
    return 0;
}

/* A free slot (busy_until < `now`) for `bytes`, preferring the smallest that fits. */
static int32_t take_slot(tt_engine *e, size_t bytes, int32_t now, int32_t busy_until) {
    int32_t best = -1;
    for (int32_t s = 0; s < e->n_slots; s++) {
        tt_slot *sl = &e->slots[s];
        if (sl->busy_until >= now) continue;
        if (best < 0) {
            best = s;
            continue;
        }
        tt_slot *b = &e->slots[best];
        bool fits = sl->bytes >= bytes, bfits = b->bytes >= bytes;
        if ((fits && (!bfits || sl->bytes < b->bytes)) || (!fits && !bfits && sl->bytes > b->bytes)) best = s;
    }
    if (best < 0) {
        if (GROW(e, slots, n_slots, cap_slots)) return -1;
        best = e->n_slots++;
    }
    if (e->slots[best].bytes < bytes) e->slots[best].bytes = bytes;
    e->slots[best].busy_until = busy_until;
    return best;
}

/* Appends value {shape, md, mem, slot} for tensor t (-1: an engine-internal value);
 * the caller has made room with GROW. Returns its index. */
static int32_t push_value(tt_engine *e, int32_t t, const tt_shape *shape, dnnl_memory_desc_t md,
                          dnnl_memory_t mem, int32_t slot) {
    int32_t v = e->n_values++;
    tt_value *val = &e->values[v];
    memset(val, 0, sizeof *val);
    if (shape) val->shape = *shape;
    val->md = md;
    val->mem = mem;
    val->slot = slot;
    if (t >= 0) e->tensor_value[t] = v;
    return v;
}

/* Room for one more value and an engine-owned copy of `md` (NULL on failure, error set). */
static dnnl_memory_desc_t reserve_value(tt_engine *e, const_dnnl_memory_desc_t md) {
    if (GROW(e, values, n_values, cap_values)) {
        oom();
        return NULL;
    }
    return tt_md_clone(e, md);
}

int32_t tt_new_value(tt_engine *e, int32_t t, const_dnnl_memory_desc_t md, int32_t last_use) {
    dnnl_memory_desc_t own = reserve_value(e, md);
    if (!own) return -1;
    /* Slots whose values died before the op being built are free; the op's own
     * inputs are still busy (their last use is >= e->now). */
    int32_t slot = take_slot(e, dnnl_memory_desc_get_size(md), e->now, last_use);
    dnnl_memory_t mem = slot >= 0 ? new_memory(e, own, NULL) : NULL;
    if (slot < 0 || !mem || bind(e, mem, slot)) {
        if (slot < 0 || mem) oom();
        return -1;
    }
    return push_value(e, t, t >= 0 ? &e->shapes[t] : NULL, own, mem, slot);
}

int32_t tt_view_value(tt_engine *e, int32_t t, int32_t src, const_dnnl_memory_desc_t md) {
    dnnl_memory_desc_t own = reserve_value(e, md);
    if (!own) return -1;
    int32_t slot = e->values[src].slot;
    dnnl_memory_t mem = new_memory(e, own, NULL);
    if (!mem || bind(e, mem, slot)) {
        if (mem) oom();
        return -1;
    }
    /* the bytes stay busy while the view is read */
    if (t >= 0 && slot >= 0 && e->slots[slot].busy_until < e->last_use[t]) e->slots[slot].busy_until = e->last_use[t];
    return push_value(e, t, t >= 0 ? &e->shapes[t] : &e->values[src].shape, own, mem, slot);
}

int32_t tt_value_plain(tt_engine *e, int32_t i, int32_t v) {
    dnnl_memory_desc_t plain = tt_md_plain_like(e, e->values[v].md);
    if (!plain) return -1;
    if (dnnl_memory_desc_equal(e->values[v].md, plain)) return v;
    int32_t n_before = e->n_values;
    if (!tt_value_as(e, i, v, plain)) return -1;
    return n_before; /* tt_value_as made exactly this temporary */
}

int32_t tt_input_value(tt_engine *e, int32_t i, int32_t t) {
    int32_t v = e->tensor_value[t];
    if (v < 0)
        tt_error(TT_INVALID_MODEL, "operator %d (%s) reads tensor %d ('%s'), which is not computed before it", i,
                 tt_builtin_name(e->model->ops[i].builtin_code), t, e->model->tensors[t].name);
    return v;
}

dnnl_memory_t tt_value_as(tt_engine *e, int32_t i, int32_t v, const_dnnl_memory_desc_t want) {
    if (dnnl_memory_desc_equal(e->values[v].md, want)) return e->values[v].mem;
    int32_t tmp = tt_new_value(e, -1, want, i);
    if (tmp < 0) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, e->values[v].md, e->eng, want, e->eng, NULL);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, i, "reorder", st);
        return NULL;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, e->values[v].mem}, {DNNL_ARG_TO, e->values[tmp].mem}};
    if (tt_add_primitive(e, i, pd, 2, args)) return NULL;
    return e->values[tmp].mem;
}

dnnl_memory_t tt_const_memory(tt_engine *e, int32_t i, const float *data, const_dnnl_memory_desc_t src_md,
                              const_dnnl_memory_desc_t want) {
    size_t bytes = dnnl_memory_desc_get_size(want);
    void *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!buf || GROW(e, bufs, n_bufs, cap_bufs)) {
        free(buf);
        oom();
        return NULL;
    }
    e->bufs[e->n_bufs++] = buf;
    memset(buf, 0, bytes);
    dnnl_memory_t dst = new_memory(e, want, buf);
    dnnl_memory_t src = new_memory(e, src_md, (void *)data); /* oneDNN only reads it */
    if (!dst || !src) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, src_md, e->eng, want, e->eng, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        st = dnnl_primitive_execute(prim, e->stream, 2, args);
        if (st == dnnl_success) st = dnnl_stream_wait(e->stream);
    }
    dnnl_primitive_destroy(prim);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, i, "weights reorder", st);
        return NULL;
    }
    return dst;
}

tt_status tt_attr(tt_engine *e, int32_t i, tt_activation act, bool sum, dnnl_primitive_attr_t *attr) {
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && (sum || act != TT_ACT_NONE)) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success && sum) st = dnnl_post_ops_append_sum(po, 1.0f, 0, dnnl_data_type_undef);
        if (st == dnnl_success && act == TT_ACT_RELU) st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_relu, 0.f, 0.f);
        /* RELU6 = clip to [0, 6] */
        if (st == dnnl_success && act == TT_ACT_RELU6) st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_clip, 0.f, 6.f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
        dnnl_post_ops_destroy(po);
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return tt_dnnl_fail(e, i, "attributes", st);
    }
    return TT_OK;
}

tt_status tt_add_primitive(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args) {
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    const_dnnl_memory_desc_t scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = scratch ? dnnl_memory_desc_get_size(scratch) : 0;
    dnnl_memory_t smem = NULL;
    if (st == dnnl_success && sbytes > 0) {
        smem = new_memory(e, scratch, NULL);
        if (!smem || GROW(e, scratch_mems, n_scratch_mems, cap_scratch_mems)) {
            dnnl_primitive_desc_destroy(pd);
            dnnl_primitive_destroy(prim);
            return smem ? oom() : TT_RUNTIME_ERROR;
        }
        e->scratch_mems[e->n_scratch_mems++] = smem;
        if (sbytes > e->scratch_bytes) e->scratch_bytes = sbytes;
    }
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "primitive creation", st);
    if (GROW(e, steps, n_steps, cap_steps)) {
        dnnl_primitive_destroy(prim);
        return oom();
    }
    tt_step *s = &e->steps[e->n_steps++];
    memset(s, 0, sizeof *s);
    s->prim = prim;
    for (int k = 0; k < nargs; k++) s->args[k] = args[k];
    s->nargs = nargs;
    if (smem) {
        s->args[s->nargs].arg = DNNL_ARG_SCRATCHPAD;
        s->args[s->nargs].memory = smem;
        s->nargs++;
    }
    return TT_OK;
}

tt_status tt_add_c_step(tt_engine *e, tt_c_kernel kernel, dnnl_memory_t src, dnnl_memory_t dst, const int64_t *p,
                        int np) {
    if (GROW(e, steps, n_steps, cap_steps)) return oom();
    tt_step *s = &e->steps[e->n_steps++];
    memset(s, 0, sizeof *s);
    s->kernel = kernel;
    s->nargs = 2;
    s->args[0].arg = DNNL_ARG_SRC;
    s->args[0].memory = src;
    s->args[1].arg = DNNL_ARG_DST;
    s->args[1].memory = dst;
    for (int k = 0; k < np && k < 12; k++) s->p[k] = p[k];
    return TT_OK;
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

/* ---- planning: needed ops and shapes ------------------------------------------------ */

static const char *shape_str(const tt_shape *s, char buf[128]) {
    size_t n = 0;
    buf[n++] = '[';
    buf[n] = '\0';
    for (int32_t k = 0; k < s->rank && n < 100; k++)
        n += (size_t)snprintf(buf + n, 128 - n, k ? ", %lld" : "%lld", (long long)s->d[k]);
    snprintf(buf + n, 128 - n, "]");
    return buf;
}

static tt_shape stored_shape(const tt_tensor *t) {
    tt_shape s = {.rank = t->rank};
    for (int32_t k = 0; k < t->rank; k++) s.d[k] = t->shape[k];
    return s;
}

static bool is_const(const tt_tensor *t) { return t->data != NULL || t->idata != NULL; }

/* Shape of an op input: propagated for activations, stored for constants. */
static const tt_shape *in_shape(const tt_model *m, tt_shape *shapes, tt_shape *tmp, int32_t t) {
    if (is_const(&m->tensors[t])) {
        *tmp = stored_shape(&m->tensors[t]);
        return tmp;
    }
    return &shapes[t];
}

#define OPNAME(op) tt_builtin_name((op)->builtin_code)

static tt_status window_shape(const tt_op *op, int32_t i, const tt_shape *x, int64_t kh, int64_t kw, int64_t c,
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

static tt_status op_out_shape(const tt_model *m, int32_t i, tt_shape *shapes, tt_shape *out) {
    const tt_op *op = &m->ops[i];
    tt_shape t0, t1;
    const tt_shape *x = in_shape(m, shapes, &t0, op->inputs[0]);
    char b1[128], b2[128];
    switch (op->type) {
    case TT_OP_CONV_2D:
    case TT_OP_DEPTHWISE_CONV_2D: {
        const tt_tensor *w = &m->tensors[op->inputs[1]];
        bool dw = op->type == TT_OP_DEPTHWISE_CONV_2D;
        if (x->rank != 4 || w->shape[3] != x->d[3])
            return tt_error(TT_INVALID_ARGUMENT, "operator %d (%s): input shape %s does not fit the filter's %d input "
                            "channels", i, OPNAME(op), shape_str(x, b1), w->shape[3]);
        return window_shape(op, i, x, w->shape[1], w->shape[2], dw ? w->shape[3] : w->shape[0], out);
    }
    case TT_OP_AVERAGE_POOL_2D:
    case TT_OP_MAX_POOL_2D:
        if (x->rank != 4)
            return tt_error(TT_UNSUPPORTED, "operator %d (%s): input must be NHWC, got %s", i, OPNAME(op),
                            shape_str(x, b1));
        return window_shape(op, i, x, op->filter_h, op->filter_w, x->d[3], out);
    case TT_OP_MEAN: {
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
    case TT_OP_ADD: {
        const tt_shape *y = in_shape(m, shapes, &t1, op->inputs[1]);
        int32_t r = x->rank > y->rank ? x->rank : y->rank;
        out->rank = r;
        for (int32_t k = 0; k < r; k++) {
            int64_t a = k - (r - x->rank) >= 0 ? x->d[k - (r - x->rank)] : 1;
            int64_t b = k - (r - y->rank) >= 0 ? y->d[k - (r - y->rank)] : 1;
            if (a != b && a != 1 && b != 1)
                return tt_error(TT_INVALID_ARGUMENT, "operator %d (ADD): shapes %s and %s cannot be broadcast", i,
                                shape_str(x, b1), shape_str(y, b2));
            out->d[k] = a > b ? a : b;
        }
        return TT_OK;
    }
    case TT_OP_PAD: {
        const tt_tensor *p = &m->tensors[op->inputs[1]];
        if (x->rank != 4 || p->shape[0] != 4)
            return tt_error(TT_UNSUPPORTED, "operator %d (PAD): only rank-4 NHWC inputs are supported, got %s", i,
                            shape_str(x, b1));
        *out = *x;
        for (int k = 0; k < 4; k++) {
            if (p->idata[2 * k] < 0 || p->idata[2 * k + 1] < 0)
                return tt_error(TT_UNSUPPORTED, "operator %d (PAD): negative paddings are not supported", i);
            out->d[k] += p->idata[2 * k] + p->idata[2 * k + 1];
        }
        return TT_OK;
    }
    case TT_OP_RESHAPE: {
        const tt_tensor *o = &m->tensors[op->output];
        int64_t total = 1, per = 1;
        for (int32_t k = 0; k < x->rank; k++) total *= x->d[k];
        for (int32_t k = 1; k < o->rank; k++) per *= o->shape[k];
        /* The stored shape is for batch 1: the batch dimension follows N. */
        if (o->rank < 1 || per * x->d[0] != total) {
            tt_shape so = stored_shape(o);
            return tt_error(TT_INVALID_ARGUMENT, "operator %d (RESHAPE): cannot reshape %s into %s with the batch "
                            "dimension following N (an input size other than the model's own?)", i,
                            shape_str(x, b1), shape_str(&so, b2));
        }
        *out = stored_shape(o);
        out->d[0] = x->d[0];
        return TT_OK;
    }
    case TT_OP_FULLY_CONNECTED: {
        const tt_tensor *w = &m->tensors[op->inputs[1]];
        int64_t total = 1;
        for (int32_t k = 0; k < x->rank; k++) total *= x->d[k];
        if (total % w->shape[1] != 0 || (op->keep_dims && x->d[x->rank - 1] != w->shape[1]))
            return tt_error(TT_INVALID_ARGUMENT, "operator %d (FULLY_CONNECTED): input %s does not fit weights with %d "
                            "inputs", i, shape_str(x, b1), w->shape[1]);
        if (op->keep_dims) {
            *out = *x;
            out->d[x->rank - 1] = w->shape[0];
        } else {
            *out = (tt_shape){.rank = 2, .d = {total / w->shape[1], w->shape[0]}};
        }
        return TT_OK;
    }
    case TT_OP_CONCATENATION: {
        int32_t axis = op->axis < 0 ? op->axis + x->rank : op->axis;
        if (axis < 0 || axis >= x->rank)
            return tt_error(TT_INVALID_MODEL, "operator %d (CONCATENATION): axis %d is out of range for rank %d", i,
                            op->axis, x->rank);
        *out = *x;
        for (int32_t k = 1; k < op->n_inputs; k++) {
            const tt_shape *y = in_shape(m, shapes, &t1, op->inputs[k]);
            bool ok = y->rank == x->rank;
            for (int32_t d = 0; ok && d < x->rank; d++) ok = d == axis || y->d[d] == x->d[d];
            if (!ok)
                return tt_error(TT_INVALID_ARGUMENT, "operator %d (CONCATENATION): input shapes %s and %s differ "
                                "outside axis %d", i, shape_str(x, b1), shape_str(y, b2), axis);
            out->d[axis] += y->d[axis];
        }
        return TT_OK;
    }
    default: /* SOFTMAX, QUANTIZE, DEQUANTIZE */
        *out = *x;
        return TT_OK;
    }
}

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
    if (is_const(&m->tensors[output_tensor]))
        return tt_error(TT_INVALID_ARGUMENT, "tensor %d ('%s') is a constant, not computed from the input",
                        output_tensor, m->tensors[output_tensor].name);
    for (int32_t t = 0; t < m->n_tensors; t++) producer[t] = -1;
    for (int32_t i = 0; i < m->n_ops; i++) {
        needed[i] = false;
        if (producer[m->ops[i].output] < 0) producer[m->ops[i].output] = i;
    }
    /* Backwards from the output: every op some needed op reads from. Ops are in
     * execution order, so a producer always has a smaller index than its readers. */
    int32_t *stack = (int32_t *)malloc(sizeof(int32_t) * ((size_t)m->n_tensors + 1));
    if (!stack) return oom();
    int32_t sp = 0;
    stack[sp++] = output_tensor;
    tt_status s = TT_OK;
    while (sp > 0 && s == TT_OK) {
        int32_t t = stack[--sp];
        if (t == in || is_const(&m->tensors[t])) continue;
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
            if (sp < m->n_tensors) stack[sp++] = u;
        }
    }
    free(stack);
    if (s) return s;
    memset(shapes, 0, sizeof(tt_shape) * (size_t)m->n_tensors);
    shapes[in] = (tt_shape){.rank = 4, .d = {batch, in_h ? in_h : it->shape[1], in_w ? in_w : it->shape[2],
                                             it->shape[3]}};
    for (int32_t i = 0; i < m->n_ops; i++) {
        if (!needed[i]) continue;
        if ((s = op_out_shape(m, i, shapes, &shapes[m->ops[i].output]))) return s;
    }
    return TT_OK;
}

tt_status tt_model_output_shape(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                int32_t output_tensor, int32_t *rank, int64_t shape[TT_MAX_RANK]) {
    tt_shape *shapes = (tt_shape *)calloc((size_t)model->n_tensors + 1, sizeof *shapes);
    bool *needed = (bool *)calloc((size_t)model->n_ops + 1, sizeof *needed);
    int32_t *producer = (int32_t *)calloc((size_t)model->n_tensors + 1, sizeof *producer);
    tt_status s = (shapes && needed && producer)
                      ? tt_plan_shapes(model, batch, in_h, in_w, output_tensor, shapes, needed, producer)
                      : oom();
    if (s == TT_OK) {
        *rank = shapes[output_tensor].rank;
        memcpy(shape, shapes[output_tensor].d, sizeof(int64_t) * TT_MAX_RANK);
    }
    free(shapes);
    free(needed);
    free(producer);
    return s;
}

/* ---- planning: liveness and residual fusion ------------------------------------------ */

/* A PAD whose output only feeds one CONV_2D / DEPTHWISE_CONV_2D (Keras' ZeroPadding2D
 * before a stride-2 conv) becomes that conv's padding: no copy, no plain layout. */
static void plan_pad_folding(tt_engine *e) {
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

/* Input k of op i as the engine reads it (a folded PAD's input for its conv). */
int32_t tt_op_input(const tt_engine *e, int32_t i, int32_t k) {
    if (k == 0 && e->fold_pad[i] >= 0) return e->model->ops[e->fold_pad[i]].inputs[0];
    return e->model->ops[i].inputs[k];
}

static void plan_liveness(tt_engine *e) {
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
}

static bool is_view_op(tt_op_type t) {
    return t == TT_OP_RESHAPE || t == TT_OP_QUANTIZE || t == TT_OP_DEQUANTIZE;
}

/* The MobileNetV2 residual: y = conv(x) + r with conv's output read only by the
 * ADD. The conv can write into r's buffer with a sum post-op when r is not read
 * after the conv starts (its other readers all run before the conv). Checked
 * again when building (layouts, slots). */
static void plan_fusion(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = 0; i < m->n_ops; i++) e->fuse_add[i] = -1;
    for (int32_t k = 0; k < m->n_ops; k++) {
        const tt_op *add = &m->ops[k];
        if (!e->needed[k] || add->type != TT_OP_ADD) continue;
        for (int side = 0; side < 2; side++) {
            int32_t a = add->inputs[side], r = add->inputs[1 - side];
            if (a == r || a < 0 || r < 0) continue;
            int32_t j = e->producer[a];
            if (j < 0 || m->ops[j].type != TT_OP_CONV_2D || m->ops[j].activation != TT_ACT_NONE) continue;
            if (e->consumers[a] != 1 || a == e->output_tensor || r == e->output_tensor) continue;
            if (is_const(&m->tensors[r]) || r == m->inputs[0] || e->producer[r] < 0 || e->producer[r] >= j) continue;
            if (e->shapes[a].rank != 4 || memcmp(&e->shapes[a], &e->shapes[r], sizeof(tt_shape)) != 0) continue;
            if (e->fuse_add[j] >= 0) continue;
            /* Every other reader of r must run before the conv, and r's bytes must be
             * r's alone: no view (RESHAPE, QUANTIZE, DEQUANTIZE) of r or under r. */
            bool ok = !is_view_op(m->ops[e->producer[r]].type);
            for (int32_t q = 0; q < m->n_ops && ok; q++) {
                if (!e->needed[q] || q == k) continue;
                for (int32_t u = 0; u < m->ops[q].n_inputs; u++)
                    if (tt_op_input(e, q, u) == r && (q >= j || is_view_op(m->ops[q].type))) ok = false;
            }
            if (!ok) continue;
            e->fuse_add[j] = k;
            break;
        }
    }
}

/* ---- create / run / destroy ----------------------------------------------------------- */

static tt_status build_op(tt_engine *e, int32_t i) {
    switch (e->model->ops[i].type) {
    case TT_OP_CONV_2D:
    case TT_OP_DEPTHWISE_CONV_2D: return conv_forward_build(e, i);
    case TT_OP_AVERAGE_POOL_2D:
    case TT_OP_MAX_POOL_2D:
    case TT_OP_MEAN: return pool_forward_build(e, i);
    case TT_OP_ADD: return e->add_done[i] ? TT_OK : add_forward_build(e, i);
    case TT_OP_SOFTMAX: return softmax_forward_build(e, i);
    case TT_OP_FULLY_CONNECTED: return fc_forward_build(e, i);
    case TT_OP_RESHAPE:
    case TT_OP_QUANTIZE:
    case TT_OP_DEQUANTIZE: return reshape_forward_build(e, i);
    case TT_OP_CONCATENATION: return concat_forward_build(e, i);
    case TT_OP_PAD: return pad_forward_build(e, i);
    default: return tt_error(TT_UNSUPPORTED, "operator %d: unsupported type", i);
    }
}

/* Builds one engine that runs the whole batch at once. */
static tt_status engine_build(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                              int32_t output_tensor, tt_engine **out) {
    *out = NULL;
    tt_status s = TT_OK;
    dnnl_status_t st;
    tt_engine *e = (tt_engine *)calloc(1, sizeof *e);
    if (!e) return oom();
    e->model = model;
    e->batch = batch;
    e->output_tensor = output_tensor;
    size_t nt = (size_t)model->n_tensors + 1, no = (size_t)model->n_ops + 1;
    e->shapes = (tt_shape *)calloc(nt, sizeof *e->shapes);
    e->needed = (bool *)calloc(no, sizeof *e->needed);
    e->producer = (int32_t *)calloc(nt, sizeof(int32_t));
    e->last_use = (int32_t *)calloc(nt, sizeof(int32_t));
    e->consumers = (int32_t *)calloc(nt, sizeof(int32_t));
    e->tensor_value = (int32_t *)calloc(nt, sizeof(int32_t));
    e->fuse_add = (int32_t *)calloc(no, sizeof(int32_t));
    e->add_done = (bool *)calloc(no, sizeof(bool));
    e->fold_pad = (int32_t *)calloc(no, sizeof(int32_t));
    if (!e->fold_pad || !e->shapes || !e->needed || !e->producer || !e->last_use || !e->consumers || !e->tensor_value ||
        !e->fuse_add || !e->add_done) {
        s = oom();
        goto error;
    }
    if ((s = tt_plan_shapes(model, batch, in_h, in_w, output_tensor, e->shapes, e->needed, e->producer))) goto error;
    int32_t in = model->inputs[0];
    e->in_h = (int32_t)e->shapes[in].d[1];
    e->in_w = (int32_t)e->shapes[in].d[2];
    plan_pad_folding(e);
    plan_liveness(e);
    plan_fusion(e);
    for (size_t t = 0; t < nt; t++) e->tensor_value[t] = -1;

    if ((st = dnnl_engine_create(&e->eng, dnnl_cpu, 0)) != dnnl_success ||
        (st = dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags)) != dnnl_success) {
        s = tt_dnnl_fail(e, -1, "engine/stream creation", st);
        goto error;
    }

    /* The caller's input: NHWC, bound at run. */
    {
        dnnl_memory_desc_t md = tt_md_for_shape(e, &e->shapes[in]);
        if (!md || GROW(e, values, n_values, cap_values)) {
            s = md ? oom() : TT_RUNTIME_ERROR;
            goto error;
        }
        dnnl_memory_t mem = new_memory(e, md, NULL);
        if (!mem || bind(e, mem, -1)) {
            s = mem ? oom() : TT_RUNTIME_ERROR;
            goto error;
        }
        tt_value *v = &e->values[e->n_values];
        v->shape = e->shapes[in];
        v->md = md;
        v->mem = mem;
        v->slot = -1;
        e->tensor_value[in] = e->n_values++;
    }

    for (int32_t i = 0; i < model->n_ops; i++) {
        if (!e->needed[i]) continue;
        e->now = i;
        if ((s = build_op(e, i))) goto error;
    }

    /* The output: a reorder into the caller's plain buffer. */
    {
        e->now = model->n_ops;
        int32_t v = e->tensor_value[output_tensor];
        if (v < 0) {
            s = tt_error(TT_INVALID_ARGUMENT, "tensor %d was not computed", output_tensor);
            goto error;
        }
        e->out_shape = e->values[v].shape;
        dnnl_memory_desc_t plain = tt_md_plain_like(e, e->values[v].md);
        if (!plain || !(e->out_mem = new_memory(e, plain, NULL))) {
            s = TT_RUNTIME_ERROR;
            goto error;
        }
        dnnl_primitive_desc_t pd = NULL;
        if ((st = dnnl_reorder_primitive_desc_create(&pd, e->values[v].md, e->eng, plain, e->eng, NULL))) {
            s = tt_dnnl_fail(e, -1, "output reorder", st);
            goto error;
        }
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, e->values[v].mem}, {DNNL_ARG_TO, e->out_mem}};
        if ((s = tt_add_primitive(e, -1, pd, 2, args))) goto error;
    }

    /* Buffers: one allocation per slot, one shared scratchpad. */
    for (int32_t k = 0; k < e->n_slots; k++) {
        size_t bytes = (e->slots[k].bytes + 63) & ~(size_t)63;
        e->slots[k].ptr = aligned_alloc(64, bytes ? bytes : 64);
        if (!e->slots[k].ptr) {
            s = oom();
            goto error;
        }
    }
    for (int32_t k = 0; k < e->n_bindings; k++) {
        if (e->bindings[k].slot < 0) continue;
        if ((st = dnnl_memory_set_data_handle(e->bindings[k].mem, e->slots[e->bindings[k].slot].ptr))) {
            s = tt_dnnl_fail(e, -1, "binding buffers", st);
            goto error;
        }
    }
    if (e->scratch_bytes) {
        e->scratch = aligned_alloc(64, (e->scratch_bytes + 63) & ~(size_t)63);
        if (!e->scratch) {
            s = oom();
            goto error;
        }
        for (int32_t k = 0; k < e->n_scratch_mems; k++) dnnl_memory_set_data_handle(e->scratch_mems[k], e->scratch);
    }
    *out = e;
    return TT_OK;
error:
    tt_engine_destroy(e);
    return s;
}

void tt_engine_output_shape(const tt_engine *engine, int32_t *rank, int64_t shape[TT_MAX_RANK]) {
    *rank = engine->out_shape.rank;
    memcpy(shape, engine->out_shape.d, sizeof(int64_t) * TT_MAX_RANK);
}

/* True when every image of the batch is computed independently of the others
 * (no op mixes the batch dimension), so the batch may run in chunks. */
static bool images_independent(const tt_engine *e) {
    const tt_model *m = e->model;
    const tt_shape *o = &e->out_shape;
    if (o->rank < 1 || o->d[0] != e->batch) return false;
    for (int32_t i = 0; i < m->n_ops; i++) {
        if (!e->needed[i]) continue;
        const tt_op *op = &m->ops[i];
        const tt_shape *x = &e->shapes[op->inputs[0]];
        if (op->type == TT_OP_CONCATENATION && (op->axis == 0 || op->axis == -x->rank)) return false;
        if (op->type == TT_OP_PAD) {
            const int32_t *pads = m->tensors[op->inputs[1]].idata;
            if (pads[0] || pads[1]) return false;
        }
        if (op->type == TT_OP_FULLY_CONNECTED) {
            int64_t per_image = 1;
            for (int32_t k = 1; k < x->rank; k++) per_image *= x->d[k];
            if (x->rank < 1 || per_image % m->tensors[op->inputs[1]].shape[1] != 0) return false;
        }
    }
    return true;
}

tt_status tt_engine_create(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                           int32_t output_tensor, tt_engine **out) {
    *out = NULL;
    if (batch <= TT_MICRO_BATCH) return engine_build(model, batch, in_h, in_w, output_tensor, out);
    /* Micro-batching: MobileNetV2's early activations are ~5 MB per image, so a
     * batch of 32 streams through memory instead of cache; chunks of
     * TT_MICRO_BATCH images keep them cache-sized and the buffers small. */
    tt_engine *e = (tt_engine *)calloc(1, sizeof *e);
    if (!e) return oom();
    int32_t chunk = TT_MICRO_BATCH, rest = batch % chunk;
    tt_status s = engine_build(model, chunk, in_h, in_w, output_tensor, &e->sub[0]);
    if (s == TT_OK && !images_independent(e->sub[0])) { /* must run as one batch */
        tt_engine_destroy(e->sub[0]);
        free(e);
        return engine_build(model, batch, in_h, in_w, output_tensor, out);
    }
    if (s == TT_OK && rest) s = engine_build(model, rest, in_h, in_w, output_tensor, &e->sub[1]);
    if (s != TT_OK) {
        tt_engine_destroy(e);
        return s;
    }
    tt_engine *c = e->sub[0];
    e->model = model;
    e->batch = batch;
    e->in_h = c->in_h;
    e->in_w = c->in_w;
    e->output_tensor = output_tensor;
    e->n_chunks = batch / chunk;
    e->out_shape = c->out_shape;
    e->out_shape.d[0] = batch;
    const tt_tensor *in = &model->tensors[model->inputs[0]];
    e->in_chunk = (int64_t)chunk * c->in_h * c->in_w * in->shape[3];
    e->out_chunk = 1;
    for (int32_t k = 0; k < c->out_shape.rank; k++) e->out_chunk *= c->out_shape.d[k];
    *out = e;
    return TT_OK;
}

tt_status tt_engine_run(tt_engine *e, const float *input, float *output) {
    if (e->sub[0]) {
        tt_status s = TT_OK;
        for (int32_t k = 0; k < e->n_chunks && s == TT_OK; k++)
            s = tt_engine_run(e->sub[0], input + k * e->in_chunk, output + k * e->out_chunk);
        if (s == TT_OK && e->sub[1])
            s = tt_engine_run(e->sub[1], input + e->n_chunks * e->in_chunk, output + e->n_chunks * e->out_chunk);
        return s;
    }
    for (int32_t k = 0; k < e->n_bindings; k++)
        if (e->bindings[k].slot < 0) dnnl_memory_set_data_handle(e->bindings[k].mem, (void *)input);
    dnnl_memory_set_data_handle(e->out_mem, output);
    for (int32_t k = 0; k < e->n_steps; k++) {
        tt_step *s = &e->steps[k];
        if (s->kernel) {
            dnnl_stream_wait(e->stream);
            s->kernel(s);
            continue;
        }
        dnnl_status_t st = dnnl_primitive_execute(s->prim, e->stream, s->nargs, s->args);
        if (st != dnnl_success) return tt_dnnl_fail(e, -1, "execution", st);
    }
    dnnl_status_t st = dnnl_stream_wait(e->stream);
    if (st != dnnl_success) return tt_dnnl_fail(e, -1, "execution", st);
    return TT_OK;
}

void tt_engine_destroy(tt_engine *e) {
    if (!e) return;
    tt_engine_destroy(e->sub[0]);
    tt_engine_destroy(e->sub[1]);
    for (int32_t k = 0; k < e->n_steps; k++) dnnl_primitive_destroy(e->steps[k].prim);
    for (int32_t k = 0; k < e->n_mems; k++) dnnl_memory_destroy(e->mems[k]);
    for (int32_t k = 0; k < e->n_mds; k++) dnnl_memory_desc_destroy(e->mds[k]);
    for (int32_t k = 0; k < e->n_bufs; k++) free(e->bufs[k]);
    for (int32_t k = 0; k < e->n_slots; k++) free(e->slots[k].ptr);
    if (e->stream) dnnl_stream_destroy(e->stream);
    if (e->eng) dnnl_engine_destroy(e->eng);
    free(e->scratch);
    free(e->steps);
    free(e->mems);
    free(e->mds);
    free(e->bufs);
    free(e->slots);
    free(e->bindings);
    free(e->scratch_mems);
    free(e->values);
    free(e->shapes);
    free(e->needed);
    free(e->producer);
    free(e->last_use);
    free(e->consumers);
    free(e->tensor_value);
    free(e->fuse_add);
    free(e->add_done);
    free(e->fold_pad);
    free(e);
}
