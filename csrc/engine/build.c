/* build.c - the helpers op builders use (see tt_build.h): growable arrays,
 * memory descriptors, values and buffer slots, constant and parameter memory,
 * gradients, and appending primitives as steps. Calls no op builder.
 */
#include "engine/tt_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small growable arrays ---------------------------------------------------- */

/* Grows *arr (elements of `size` bytes) so that index `n` fits; 0 on success. */
int tt_grow(void **arr, int32_t *cap, int32_t n, size_t size) {
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

tt_status tt_oom(void) { return tt_error(TT_OUT_OF_MEMORY, "out of memory while building the engine"); }

/* ---- memory descriptors --------------------------------------------------------- */

/* Takes `md` from a dnnl_memory_desc_create_* / clone that returned `st` into the
 * engine (freed by tt_engine_destroy); NULL with the error recorded when `st` failed
 * (`what` names the call) or the engine's list cannot grow. */
static dnnl_memory_desc_t own_md(tt_engine *e, dnnl_status_t st, dnnl_memory_desc_t md, const char *what) {
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, what, st);
        return NULL;
    }
    if (!md) return NULL;
    if (TT_GROW(e, mds, n_mds, cap_mds)) {
        dnnl_memory_desc_destroy(md);
        tt_oom();
        return NULL;
    }
    e->mds[e->n_mds++] = md;
    return md;
}

dnnl_memory_desc_t tt_md_tag(tt_engine *e, int ndims, const int64_t *dims, dnnl_format_tag_t tag) {
    return tt_md_tag_dt(e, ndims, dims, dnnl_f32, tag);
}

dnnl_data_type_t tt_md_dt(const_dnnl_memory_desc_t md) {
    dnnl_data_type_t dt = dnnl_data_type_undef;
    dnnl_memory_desc_query(md, dnnl_query_data_type, &dt);
    return dt;
}

dnnl_memory_desc_t tt_md_tag_dt(tt_engine *e, int ndims, const int64_t *dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_create_with_tag(&md, ndims, dims, dt, tag);
    return own_md(e, st, md, "memory descriptor");
}

static dnnl_memory_desc_t md_strides_dt(tt_engine *e, int ndims, const int64_t *dims, dnnl_data_type_t dt,
                                        const int64_t *strides) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_create_with_strides(&md, ndims, dims, dt, strides);
    return own_md(e, st, md, "memory descriptor");
}

dnnl_memory_desc_t tt_md_strides(tt_engine *e, int ndims, const int64_t *dims, const int64_t *strides) {
    return md_strides_dt(e, ndims, dims, dnnl_f32, strides);
}

dnnl_memory_desc_t tt_md_strided_like(tt_engine *e, const_dnnl_memory_desc_t src, dnnl_data_type_t dt) {
    int64_t dims[DNNL_MAX_NDIMS], strides[DNNL_MAX_NDIMS];
    int nd = tt_md_ndims(src);
    tt_md_dims(src, dims);
    const dnnl_dims_t *st_ = NULL;
    dnnl_memory_desc_query(src, dnnl_query_strides, &st_);
    memcpy(strides, *st_, sizeof(int64_t) * (size_t)nd);
    return md_strides_dt(e, nd, dims, dt, strides);
}

dnnl_memory_desc_t tt_md_clone(tt_engine *e, const_dnnl_memory_desc_t src) {
    dnnl_memory_desc_t md = NULL;
    dnnl_status_t st = dnnl_memory_desc_clone(&md, src);
    return own_md(e, st, md, "memory descriptor clone");
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

dnnl_memory_t tt_new_memory(tt_engine *e, const_dnnl_memory_desc_t md, void *handle) {
    dnnl_memory_t mem = NULL;
    dnnl_status_t st = dnnl_memory_create(&mem, md, e->eng, handle);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, -1, "memory creation", st);
        return NULL;
    }
    if (TT_GROW(e, mems, n_mems, cap_mems)) {
        dnnl_memory_destroy(mem);
        tt_oom();
        return NULL;
    }
    e->mems[e->n_mems++] = mem;
    return mem;
}

static int bind(tt_engine *e, dnnl_memory_t mem, int32_t slot) {
    if (TT_GROW(e, bindings, n_bindings, cap_bindings)) return -1;
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
        if (TT_GROW(e, slots, n_slots, cap_slots)) return -1;
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
    if (TT_GROW(e, values, n_values, cap_values)) {
        tt_oom();
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
    dnnl_memory_t mem = slot >= 0 ? tt_new_memory(e, own, NULL) : NULL;
    if (slot < 0 || !mem || bind(e, mem, slot)) {
        if (slot < 0 || mem) tt_oom();
        return -1;
    }
    return push_value(e, t, t >= 0 ? &e->shapes[t] : NULL, own, mem, slot);
}

int32_t tt_view_value(tt_engine *e, int32_t t, int32_t src, const_dnnl_memory_desc_t md) {
    dnnl_memory_desc_t own = reserve_value(e, md);
    if (!own) return -1;
    int32_t slot = e->values[src].slot;
    dnnl_memory_t mem = tt_new_memory(e, own, NULL);
    if (!mem || bind(e, mem, slot)) {
        if (mem) tt_oom();
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
    int32_t tmp = tt_new_value(e, -1, want, e->now);
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

void *tt_own_buffer(tt_engine *e, size_t bytes) {
    void *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!buf || TT_GROW(e, bufs, n_bufs, cap_bufs)) {
        free(buf);
        tt_oom();
        return NULL;
    }
    e->bufs[e->n_bufs++] = buf;
    memset(buf, 0, bytes);
    return buf;
}

dnnl_memory_t tt_const_memory(tt_engine *e, int32_t i, const float *data, const_dnnl_memory_desc_t src_md,
                              const_dnnl_memory_desc_t want) {
    size_t bytes = dnnl_memory_desc_get_size(want);
    void *buf = tt_own_buffer(e, bytes);
    if (!buf) return NULL;
    dnnl_memory_t dst = tt_new_memory(e, want, buf);
    dnnl_memory_t src = tt_new_memory(e, src_md, (void *)data); /* oneDNN only reads it */
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

dnnl_status_t tt_attr_post_ops(dnnl_primitive_attr_t attr, tt_activation act, bool sum, float sum_scale,
                               int32_t sum_zp) {
    if (!sum && act == TT_ACT_NONE) return dnnl_success;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_post_ops_create(&po);
    if (st == dnnl_success && sum) st = dnnl_post_ops_append_sum(po, sum_scale, sum_zp, dnnl_data_type_undef);
    if (st == dnnl_success && act == TT_ACT_RELU) st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_relu, 0.f, 0.f);
    /* RELU6 = clip to [0, 6] */
    if (st == dnnl_success && act == TT_ACT_RELU6) st = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_clip, 0.f, 6.f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return st;
}

tt_status tt_attr(tt_engine *e, int32_t i, tt_activation act, bool sum, dnnl_primitive_attr_t *attr) {
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = tt_attr_post_ops(*attr, act, sum, 1.0f, 0);
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return tt_dnnl_fail(e, i, "attributes", st);
    }
    return TT_OK;
}

/* Appends the primitive of pd; destroys pd unless keep. */
static tt_status add_primitive(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs,
                               const dnnl_exec_arg_t *args, bool keep) {
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    const_dnnl_memory_desc_t scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = scratch ? dnnl_memory_desc_get_size(scratch) : 0;
    dnnl_memory_t smem = NULL;
    if (st == dnnl_success && sbytes > 0) {
        smem = tt_new_memory(e, scratch, NULL);
        if (!smem || TT_GROW(e, scratch_mems, n_scratch_mems, cap_scratch_mems)) {
            if (!keep) dnnl_primitive_desc_destroy(pd);
            dnnl_primitive_destroy(prim);
            return smem ? tt_oom() : TT_RUNTIME_ERROR;
        }
        e->scratch_mems[e->n_scratch_mems++] = smem;
        if (sbytes > e->scratch_bytes) e->scratch_bytes = sbytes;
    }
    if (!keep) dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "primitive creation", st);
    tt_steps *list = e->cur;
    if (tt_grow((void **)&list->s, &list->cap, list->n, sizeof *list->s)) {
        dnnl_primitive_destroy(prim);
        return tt_oom();
    }
    tt_step *s = &list->s[list->n++];
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

tt_status tt_add_primitive(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args) {
    return add_primitive(e, i, pd, nargs, args, false);
}

tt_status tt_add_forward(tt_engine *e, int32_t i, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args) {
    if (i < 0 || !tt_trainable(e, i)) return add_primitive(e, i, pd, nargs, args, false);
    tt_status s = add_primitive(e, i, pd, nargs, args, true);
    if (s) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    if (e->fwd_pd[i]) dnnl_primitive_desc_destroy(e->fwd_pd[i]);
    e->fwd_pd[i] = pd; /* the last forward primitive of op i: the backward hint */
    return TT_OK;
}

dnnl_prop_kind_t tt_prop(const tt_engine *e, int32_t i) {
    return tt_trainable(e, i) ? dnnl_forward_training : dnnl_forward_inference;
}

/* Parameter for tensor t of op i, registered on first use. -1 on failure. */
static int32_t param_of(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t user_md) {
    for (int32_t k = 0; k < e->n_params; k++)
        if (e->params[k].tensor == t) return k;
    if (TT_GROW(e, params, n_params, cap_params)) {
        tt_oom();
        return -1;
    }
    tt_param *p = &e->params[e->n_params];
    memset(p, 0, sizeof *p);
    p->op = i;
    p->tensor = t;
    p->size = e->model->tensors[t].size;
    p->user_md = tt_md_clone(e, user_md);
    p->value = p->user_md ? tt_new_memory(e, p->user_md, NULL) : NULL;
    p->grad = p->value ? tt_new_memory(e, p->user_md, NULL) : NULL;
    if (!p->grad) return -1;
    return e->n_params++;
}

dnnl_memory_t tt_weights_memory(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t user_md,
                                const_dnnl_memory_desc_t want) {
    const float *data = e->model->tensors[t].data;
    if (!tt_trainable(e, i)) return tt_const_memory(e, i, data, user_md, want);
    int32_t k = param_of(e, i, t, user_md);
    if (k < 0) return NULL;
    /* a buffer in the wanted layout, filled from the caller's value before each training forward */
    dnnl_memory_t dst = tt_const_memory(e, i, data, user_md, want);
    if (!dst) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, e->params[k].user_md, e->eng, want, e->eng, NULL);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "parameter reorder", st), NULL;
    tt_steps *saved = e->cur;
    e->cur = &e->refresh;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, e->params[k].value}, {DNNL_ARG_TO, dst}};
    tt_status s = tt_add_primitive(e, i, pd, 2, args);
    e->cur = saved;
    return s ? NULL : dst;
}

tt_status tt_add_c_step(tt_engine *e, tt_c_kernel kernel, dnnl_memory_t src, dnnl_memory_t dst, const int64_t *p,
                        int np) {
    tt_steps *list = e->cur;
    if (tt_grow((void **)&list->s, &list->cap, list->n, sizeof *list->s)) return tt_oom();
    tt_step *s = &list->s[list->n++];
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

int32_t tt_op_input(const tt_engine *e, int32_t i, int32_t k) {
    if (k == 0 && e->fold_pad[i] >= 0) return e->model->ops[e->fold_pad[i]].inputs[0];
    return e->model->ops[i].inputs[k];
}

/* ---- parameters' gradients ------------------------------------------------------------------- */

static int32_t param_index(const tt_engine *e, int32_t t) {
    for (int32_t k = 0; k < e->n_params; k++)
        if (e->params[k].tensor == t) return k;
    return -1;
}

dnnl_memory_t tt_param_grad_memory(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t have) {
    int32_t k = param_index(e, t);
    if (k < 0) {
        tt_error(TT_RUNTIME_ERROR, "operator %d: tensor %d is not a parameter of this engine", i, t);
        return NULL;
    }
    if (dnnl_memory_desc_equal(have, e->params[k].user_md)) return e->params[k].grad;
    int32_t v = tt_new_value(e, -1, have, e->now);
    return v < 0 ? NULL : e->values[v].mem;
}

tt_status tt_param_grad_finish(tt_engine *e, int32_t i, int32_t t, dnnl_memory_t src) {
    int32_t k = param_index(e, t);
    if (k < 0 || src == e->params[k].grad) return TT_OK;
    const_dnnl_memory_desc_t have = NULL;
    dnnl_memory_get_memory_desc(src, &have);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, have, e->eng, e->params[k].user_md, e->eng, NULL);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "gradient reorder", st);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, e->params[k].grad}};
    return tt_add_primitive(e, i, pd, 2, args);
}

/* ---- activations' gradients ---------------------------------------------------------------------- */

bool tt_wants_grad(const tt_engine *e, int32_t t) {
    if (t < 0 || tt_is_const(&e->model->tensors[t])) return false;
    int32_t p = e->producer[t];
    return p >= e->train_from && e->needed[p];
}

int32_t tt_grad(tt_engine *e, int32_t t) { return e->grad_value[t]; }

/* Time of the last reader of dL/dt: its producer's backward. */
static int32_t grad_busy(const tt_engine *e, int32_t t) { return tt_bwd_time(e, e->producer[t]); }

dnnl_memory_t tt_grad_target(tt_engine *e, int32_t i, int32_t t, const_dnnl_memory_desc_t md, int32_t *tmp) {
    int32_t v = tt_new_value(e, -1, md, e->grad_value[t] < 0 ? grad_busy(e, t) : e->now);
    *tmp = v;
    if (v >= 0) e->values[v].shape = e->shapes[t];
    return v < 0 ? NULL : e->values[v].mem;
}

/* dL/dt = g + v as a binary add step; in place into g unless g is shared. */
static tt_status grad_accumulate(tt_engine *e, int32_t i, int32_t t, int32_t v) {
    int32_t g = e->grad_value[t];
    dnnl_memory_t b = tt_value_as(e, i, v, e->values[g].md);
    if (!b) return TT_RUNTIME_ERROR;
    int32_t dst = g;
    if (e->values[g].shared) {
        if ((dst = tt_new_value(e, -1, e->values[g].md, grad_busy(e, t))) < 0) return TT_RUNTIME_ERROR;
        e->values[dst].shape = e->shapes[t];
    }
    dnnl_primitive_attr_t attr = NULL;
    tt_status s = tt_attr(e, i, TT_ACT_NONE, false, &attr);
    if (s) return s;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_binary_primitive_desc_create(&pd, e->eng, dnnl_binary_add, e->values[g].md,
                                                         e->values[g].md, e->values[dst].md, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "gradient accumulation", st);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, e->values[g].mem}, {DNNL_ARG_SRC_1, b},
                               {DNNL_ARG_DST, e->values[dst].mem}};
    if ((s = tt_add_primitive(e, i, pd, 3, args))) return s;
    e->grad_value[t] = dst;
    return TT_OK;
}

tt_status tt_grad_commit(tt_engine *e, int32_t i, int32_t t, int32_t tmp) {
    if (e->grad_value[t] < 0) {
        e->grad_value[t] = tmp;
        return TT_OK;
    }
    return grad_accumulate(e, i, t, tmp);
}

tt_status tt_grad_share(tt_engine *e, int32_t i, int32_t t, int32_t v) {
    if (e->grad_value[t] >= 0) return grad_accumulate(e, i, t, v);
    /* dL/dt views v's bytes: both are read-only from now on */
    int32_t slot = e->values[v].slot;
    if (TT_GROW(e, values, n_values, cap_values)) return tt_oom();
    tt_value *w = &e->values[e->n_values];
    *w = e->values[v];
    w->shape = e->shapes[t];
    w->shared = true;
    e->values[v].shared = true;
    if (slot >= 0 && e->slots[slot].busy_until < grad_busy(e, t)) e->slots[slot].busy_until = grad_busy(e, t);
    e->grad_value[t] = e->n_values++;
    return TT_OK;
}

int32_t tt_activation_backward(tt_engine *e, int32_t i, tt_activation act, int32_t yv, int32_t dyv) {
    if (act == TT_ACT_NONE) return dyv;
    dnnl_alg_kind_t alg = act == TT_ACT_RELU6 ? dnnl_eltwise_clip_v2_use_dst_for_bwd : dnnl_eltwise_relu_use_dst_for_bwd;
    float beta = act == TT_ACT_RELU6 ? 6.f : 0.f;
    const_dnnl_memory_desc_t y_md = e->values[yv].md;
    dnnl_memory_t dy = tt_value_as(e, i, dyv, y_md);
    if (!dy) return -1;
    int32_t dv = tt_new_value(e, -1, y_md, e->now);
    if (dv < 0) return -1;
    e->values[dv].shape = e->values[yv].shape;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    if (tt_attr(e, i, TT_ACT_NONE, false, &attr)) return -1;
    dnnl_status_t st = dnnl_eltwise_forward_primitive_desc_create(&hint, e->eng, dnnl_forward_training, alg, y_md, y_md,
                                                                  0.f, beta, NULL);
    if (st == dnnl_success)
        st = dnnl_eltwise_backward_primitive_desc_create(&pd, e->eng, alg, y_md, y_md, y_md, 0.f, beta, hint, attr);
    dnnl_primitive_desc_destroy(hint);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, i, "activation backward descriptor", st), -1;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DST, e->values[yv].mem}, {DNNL_ARG_DIFF_DST, dy},
                               {DNNL_ARG_DIFF_SRC, e->values[dv].mem}};
    return tt_add_primitive(e, i, pd, 3, args) ? -1 : dv;
}
