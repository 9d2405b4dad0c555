/* engine.c - create / run / destroy of a tt_engine: runs the planning passes
 * (plan.c), calls each needed op's forward builder and, for a training engine,
 * each trainable op's backward builder in reverse, all through the op table
 * (op->kind); then allocates the buffer slots and binds the memories. The op
 * builders are in ops/, the helpers they use in build.c.
 */
#include "engine/tt_plan.h"

#include "core/tt_threads.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- create ----------------------------------------------------------------------- */

/* The caller's tensor `t` as a value with its own plain layout, bound to slot
 * `slot` (-1: the input, -2: d_output) at run; *mem gets its memory. -1 on failure. */
static int32_t caller_value(tt_engine *e, const tt_shape *shape, const_dnnl_memory_desc_t like, int32_t slot,
                            dnnl_memory_t *mem) {
    dnnl_memory_desc_t md = like ? tt_md_plain_like(e, like) : tt_md_for_shape(e, shape);
    if (!md || TT_GROW(e, values, n_values, cap_values)) {
        if (md) tt_oom();
        return -1;
    }
    *mem = tt_new_memory(e, md, NULL);
    if (!*mem || TT_GROW(e, bindings, n_bindings, cap_bindings)) {
        if (*mem) tt_oom();
        return -1;
    }
    e->bindings[e->n_bindings++] = (tt_binding){.mem = *mem, .slot = slot};
    tt_value *v = &e->values[e->n_values];
    memset(v, 0, sizeof *v);
    v->shape = *shape;
    v->md = md;
    v->mem = *mem;
    v->slot = slot;
    v->shared = slot == -2; /* the caller's d_output is never written */
    return e->n_values++;
}

/* The output: a reorder of its value into the caller's plain buffer (e->out). */
static tt_status build_output(tt_engine *e) {
    e->now = e->model->n_ops;
    int32_t v = e->tensor_value[e->output_tensor];
    if (v < 0) return tt_error(TT_INVALID_ARGUMENT, "tensor %d was not computed", e->output_tensor);
    e->out_shape = e->values[v].shape;
    dnnl_memory_desc_t plain = tt_md_plain_like(e, e->values[v].md);
    if (!plain || !(e->out_mem = tt_new_memory(e, plain, NULL))) return TT_RUNTIME_ERROR;
    /* an int8 value is dequantized on the way out: real = scale * (q - zero_point) */
    float qs = e->values[v].qscale;
    bool deq = qs > 0.f;
    dnnl_memory_t m_s = NULL, m_z = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t st = dnnl_success;
    if (deq) {
        m_s = tt_scales_memory(e, &qs, 1);
        m_z = tt_zero_point_memory(e, e->values[v].qzp);
        if (!m_s || !m_z) return TT_RUNTIME_ERROR;
        st = dnnl_primitive_attr_create(&attr);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_SRC, 0);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_zero_points_mask(attr, DNNL_ARG_SRC, 0);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, e->values[v].md, e->eng, plain, e->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return tt_dnnl_fail(e, -1, "output reorder", st);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_FROM, e->values[v].mem}, {DNNL_ARG_TO, e->out_mem},
                               {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, m_s},
                               {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m_z}};
    e->cur = &e->out;
    return tt_add_primitive(e, -1, pd, deq ? 4 : 2, args);
}

/* A reorder primitive a -> b (owned by the caller), NULL when the layouts are equal. */
static tt_status make_reorder(tt_engine *e, const_dnnl_memory_desc_t a, const_dnnl_memory_desc_t b,
                              dnnl_primitive_t *out) {
    *out = NULL;
    if (dnnl_memory_desc_equal(a, b)) return TT_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, a, e->eng, b, e->eng, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return st == dnnl_success ? TT_OK : tt_dnnl_fail(e, -1, "cut reorder", st);
}

/* The cut: every tensor read by a trainable op and computed below the boundary. */
static tt_status build_cut(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = e->train_from; i < m->n_ops; i++) {
        if (!e->needed[i]) continue;
        for (int32_t k = 0; k < m->ops[i].n_inputs; k++) {
            int32_t t = tt_op_input(e, i, k);
            if (t < 0 || tt_is_const(&m->tensors[t]) || e->producer[t] >= e->train_from) continue;
            bool seen = false;
            for (int32_t c = 0; c < e->n_cut; c++) seen |= e->cut[c].tensor == t;
            if (seen) continue;
            if (TT_GROW(e, cut, n_cut, cap_cut)) return tt_oom();
            tt_cut *c = &e->cut[e->n_cut++];
            memset(c, 0, sizeof *c);
            c->tensor = t;
            c->value = e->tensor_value[t];
            dnnl_memory_desc_t plain = tt_md_plain_like(e, e->values[c->value].md);
            if (!plain || !(c->user = tt_new_memory(e, plain, NULL))) return TT_RUNTIME_ERROR;
            tt_status s = make_reorder(e, e->values[c->value].md, plain, &c->to_user);
            if (!s) s = make_reorder(e, plain, e->values[c->value].md, &c->from_user);
            if (s) return s;
        }
    }
    return TT_OK;
}

/* Backward: d_output from the caller, then every trainable op in reverse. */
static tt_status build_backward(tt_engine *e) {
    const tt_model *m = e->model;
    for (int32_t i = e->train_from; i < m->n_ops; i++)
        if (e->needed[i] && !m->ops[i].kind->backward)
            return tt_error(TT_UNSUPPORTED, "operator %d (%s) has no backward pass, so the layers from it up cannot be "
                            "trained; freeze it (fine-tune from a later layer)", i, tt_builtin_name(m->ops[i].builtin_code));
    int32_t ov = e->tensor_value[e->output_tensor];
    int32_t dv = caller_value(e, &e->values[ov].shape, e->values[ov].md, -2, &e->dout_mem);
    if (dv < 0) return TT_RUNTIME_ERROR;
    e->grad_value[e->output_tensor] = dv;
    e->cur = &e->bwd;
    for (int32_t i = m->n_ops - 1; i >= e->train_from; i--) {
        if (!e->needed[i] || e->grad_value[m->ops[i].output] < 0) continue;
        e->now = tt_bwd_time(e, i);
        tt_status s = m->ops[i].kind->backward(e, i);
        if (s) return s;
    }
    return TT_OK;
}

/* One allocation per slot, one shared scratchpad; every memory bound to its slot. */
static tt_status allocate(tt_engine *e) {
    dnnl_status_t st;
    for (int32_t k = 0; k < e->n_slots; k++) {
        size_t bytes = (e->slots[k].bytes + 63) & ~(size_t)63;
        e->slots[k].ptr = aligned_alloc(64, bytes ? bytes : 64);
        if (!e->slots[k].ptr) return tt_oom();
    }
    for (int32_t k = 0; k < e->n_bindings; k++) {
        if (e->bindings[k].slot < 0) continue;
        if ((st = dnnl_memory_set_data_handle(e->bindings[k].mem, e->slots[e->bindings[k].slot].ptr)))
            return tt_dnnl_fail(e, -1, "binding buffers", st);
    }
    if (e->scratch_bytes) {
        e->scratch = aligned_alloc(64, (e->scratch_bytes + 63) & ~(size_t)63);
        if (!e->scratch) return tt_oom();
        for (int32_t k = 0; k < e->n_scratch_mems; k++)
            if ((st = dnnl_memory_set_data_handle(e->scratch_mems[k], e->scratch)))
                return tt_dnnl_fail(e, -1, "binding the scratchpad", st);
    }
    return TT_OK;
}

/* Builds one engine that runs the whole batch at once. */
static tt_status engine_build(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                              int32_t output_tensor, int32_t train_from, tt_precision precision, int threads,
                              tt_engine **out) {
    *out = NULL;
    tt_status s = TT_OK;
    dnnl_status_t st;
    tt_engine *e = (tt_engine *)calloc(1, sizeof *e);
    if (!e) return tt_oom();
    e->model = model;
    e->batch = batch;
    e->output_tensor = output_tensor;
    e->train_from = train_from;
    e->precision = precision;
    e->conv_dt = precision == TT_PRECISION_BF16 ? dnnl_bf16 : tt_is_int8(e) ? dnnl_s8 : dnnl_f32;
    /* primitives are created for the thread count they will run with (0: the process setting) */
    e->num_threads = tt_use_num_threads(threads);
    size_t nt = (size_t)model->n_tensors + 1, no = (size_t)model->n_ops + 1;
    e->shapes = (tt_shape *)calloc(nt, sizeof *e->shapes);
    e->needed = (bool *)calloc(no, sizeof *e->needed);
    e->producer = (int32_t *)calloc(nt, sizeof(int32_t));
    e->last_use = (int32_t *)calloc(nt, sizeof(int32_t));
    e->consumers = (int32_t *)calloc(nt, sizeof(int32_t));
    e->tensor_value = (int32_t *)calloc(nt, sizeof(int32_t));
    e->grad_value = (int32_t *)calloc(nt, sizeof(int32_t));
    e->fuse_add = (int32_t *)calloc(no, sizeof(int32_t));
    e->fuse_dw = (int32_t *)calloc(no, sizeof(int32_t));
    e->op_done = (bool *)calloc(no, sizeof(bool));
    e->fold_pad = (int32_t *)calloc(no, sizeof(int32_t));
    e->fwd_pd = (dnnl_primitive_desc_t *)calloc(no, sizeof(dnnl_primitive_desc_t));
    if (!e->fold_pad || !e->shapes || !e->needed || !e->producer || !e->last_use || !e->consumers || !e->tensor_value ||
        !e->grad_value || !e->fuse_add || !e->fuse_dw || !e->op_done || !e->fwd_pd) {
        s = tt_oom();
        goto error;
    }
    if ((s = tt_plan_shapes(model, batch, in_h, in_w, output_tensor, e->shapes, e->needed, e->producer))) goto error;
    int32_t in = model->inputs[0];
    e->in_h = (int32_t)e->shapes[in].d[1];
    e->in_w = (int32_t)e->shapes[in].d[2];
    tt_plan_pad_folding(e);
    tt_plan_liveness(e);
    tt_plan_fusion(e);
    tt_plan_dw_fusion(e);
    for (size_t t = 0; t < nt; t++) e->tensor_value[t] = e->grad_value[t] = -1;

    if ((st = dnnl_engine_create(&e->eng, dnnl_cpu, 0)) != dnnl_success ||
        (st = dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags)) != dnnl_success) {
        s = tt_dnnl_fail(e, -1, "engine/stream creation", st);
        goto error;
    }

    /* The caller's input: NHWC, bound at run. */
    dnnl_memory_t in_mem = NULL;
    if ((e->tensor_value[in] = caller_value(e, &e->shapes[in], NULL, -1, &in_mem)) < 0) {
        s = TT_RUNTIME_ERROR;
        goto error;
    }

    e->cur = &e->fwd;
    e->top_step = -1;
    for (int32_t i = 0; i < model->n_ops; i++) {
        if (!e->needed[i]) continue;
        if (i >= train_from && e->top_step < 0) e->top_step = e->fwd.n;
        e->now = i;
        if ((s = model->ops[i].kind->forward(e, i))) goto error;
    }
    if (e->top_step < 0) e->top_step = e->fwd.n;
    if ((s = build_output(e))) goto error;
    if (train_from < model->n_ops && ((s = build_cut(e)) || (s = build_backward(e)))) goto error;
    if ((s = allocate(e))) goto error;
    for (int32_t i = 0; i < model->n_ops; i++) { /* the hints are not needed once backward is built */
        dnnl_primitive_desc_destroy(e->fwd_pd[i]);
        e->fwd_pd[i] = NULL;
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

int tt_cpu_has_bf16(void) {
    /* the ISA values are nested bit masks: every ISA at or above avx512_core_bf16 contains its bits */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & bf16) == bf16;
}

int tt_cpu_has_vnni(void) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned avx2_vnni = (unsigned)dnnl_cpu_isa_avx2_vnni, avx512_vnni = (unsigned)dnnl_cpu_isa_avx512_core_vnni;
    return (isa & avx2_vnni) == avx2_vnni || (isa & avx512_vnni) == avx512_vnni;
}

const char *tt_cpu_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_fp16: return "avx512_core_fp16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "other";
    }
}

int32_t tt_engine_num_threads(const tt_engine *e) { return e->num_threads; }
int32_t tt_engine_last_run_threads(const tt_engine *e) { return e->last_run_threads; }

tt_status tt_engine_create(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                           int32_t output_tensor, tt_engine **out) {
    return tt_engine_create_precision(model, batch, in_h, in_w, output_tensor, TT_PRECISION_F32, out);
}

tt_status tt_engine_create_precision(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                     int32_t output_tensor, tt_precision precision, tt_engine **out) {
    *out = NULL;
    int32_t end = model->n_ops;
    if (precision != TT_PRECISION_F32 && precision != TT_PRECISION_BF16 && precision != TT_PRECISION_INT8 &&
        precision != TT_PRECISION_INT8_TFLITE)
        return tt_error(TT_INVALID_ARGUMENT, "unknown engine precision %d", (int)precision);
    if (precision == TT_PRECISION_BF16 && !tt_cpu_has_bf16())
        return tt_error(TT_UNSUPPORTED, "bfloat16 needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX); "
                        "oneDNN dispatches to %s here", tt_cpu_isa_name());
    if ((precision == TT_PRECISION_INT8 || precision == TT_PRECISION_INT8_TFLITE) && !tt_cpu_has_vnni())
        return tt_error(TT_UNSUPPORTED, "int8 needs a CPU with VNNI instructions (AVX512_VNNI, AVX_VNNI or AMX): "
                        "without them oneDNN's int8 convolutions multiply in 16 bits (saturating, and halving the "
                        "weights of an int8 source), not the file's int8 arithmetic; oneDNN dispatches to %s here",
                        tt_cpu_isa_name());
    if (batch <= TT_MICRO_BATCH) return engine_build(model, batch, in_h, in_w, output_tensor, end, precision, 0, out);
    /* Micro-batching: MobileNetV2's early activations are ~5 MB per image, so a
     * batch of 32 streams through memory instead of cache; chunks of
     * TT_MICRO_BATCH images keep them cache-sized and the buffers small. */
    tt_engine *e = (tt_engine *)calloc(1, sizeof *e);
    if (!e) return tt_oom();
    int32_t chunk = TT_MICRO_BATCH, rest = batch % chunk;
    tt_status s = engine_build(model, chunk, in_h, in_w, output_tensor, end, precision, 0, &e->sub[0]);
    if (s == TT_OK && !tt_plan_images_independent(e->sub[0])) { /* must run as one batch */
        tt_engine_destroy(e->sub[0]);
        free(e);
        return engine_build(model, batch, in_h, in_w, output_tensor, end, precision, 0, out);
    }
    if (s == TT_OK && rest) s = engine_build(model, rest, in_h, in_w, output_tensor, end, precision, 0, &e->sub[1]);
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
    e->train_from = end;
    e->precision = precision;
    e->conv_dt = c->conv_dt;
    e->num_threads = c->num_threads;
    e->n_chunks = batch / chunk;
    e->out_shape = c->out_shape;
    e->out_shape.d[0] = batch;
    const tt_tensor *in = &model->tensors[model->inputs[0]];
    e->in_chunk = (int64_t)chunk * c->in_h * c->in_w * in->shape[3];
    e->out_chunk = 1;
    for (int32_t k = 0; k < c->out_shape.rank; k++) e->out_chunk *= c->out_shape.d[k];
    /* Lanes: one single-threaded copy of the chunk engine per thread, when there are at
     * least two chunks for two threads. Each MobileNetV2 primitive is an OpenMP region with
     * a barrier; one thread per chunk keeps both threads busy between them (measured in
     * benchmarks/bench_peers.py). TFLITE_TRANSFER_LANES=1 turns it off (A/B runs). */
    const char *env = getenv("TFLITE_TRANSFER_LANES");
    int32_t lanes = c->num_threads < e->n_chunks ? c->num_threads : e->n_chunks;
    if (env && *env) lanes = atoi(env) < lanes ? atoi(env) : lanes;
    if (lanes > TT_MAX_LANES) lanes = TT_MAX_LANES;
    if (lanes >= 2) {
        for (int32_t k = 0; k < lanes; k++) {
            if ((s = engine_build(model, chunk, in_h, in_w, output_tensor, end, precision, 1, &e->lane[k]))) {
                tt_engine_destroy(e);
                return s;
            }
            e->n_lanes = k + 1;
        }
        tt_use_num_threads(e->num_threads); /* building for one thread set it on this thread */
    }
    *out = e;
    return TT_OK;
}

/* Runs the full chunks of micro-batched engine e on its lanes, chunk k on lane k mod
 * (threads in the team); the status of the first failing lane, with its message. */
static tt_status run_lanes(tt_engine *e, const float *input, float *output) {
    tt_status st[TT_MAX_LANES];
    char msg[TT_MAX_LANES][256];
    int32_t n = e->n_lanes;
    for (int32_t t = 0; t < n; t++) st[t] = TT_OK;
#pragma omp parallel num_threads(n)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        tt_status s = TT_OK;
        for (int32_t k = t; k < e->n_chunks && s == TT_OK; k += nt)
            s = tt_engine_run(e->lane[t], input + k * e->in_chunk, output + k * e->out_chunk);
        st[t] = s;
        if (s != TT_OK) snprintf(msg[t], sizeof msg[t], "%s", tt_last_error());
    }
    for (int32_t t = 0; t < n; t++)
        if (st[t] != TT_OK) return tt_error(st[t], "%s", msg[t]);
    return TT_OK;
}

tt_status tt_engine_create_training(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                    int32_t output_tensor, int32_t train_from, tt_engine **out) {
    *out = NULL;
    if (train_from < 0 || train_from > model->n_ops)
        return tt_error(TT_INVALID_ARGUMENT, "train_from must be in [0, %d] (the model's op count), got %d",
                        model->n_ops, train_from);
    return engine_build(model, batch, in_h, in_w, output_tensor, train_from, TT_PRECISION_F32, 0, out);
}

/* ---- run ----------------------------------------------------------------------------- */

static tt_status run_steps(tt_engine *e, const tt_steps *list, int32_t from, int32_t to) {
    dnnl_status_t st;
    for (int32_t k = from; k < to; k++) {
        const tt_step *s = &list->s[k];
        if (s->kernel) { /* plain C reads what the primitives before it wrote */
            if ((st = dnnl_stream_wait(e->stream)) != dnnl_success) return tt_dnnl_fail(e, -1, "execution", st);
            s->kernel(s);
            continue;
        }
        if ((st = dnnl_primitive_execute(s->prim, e->stream, s->nargs, s->args)) != dnnl_success)
            return tt_dnnl_fail(e, -1, "execution", st);
    }
    return TT_OK;
}

static tt_status wait(tt_engine *e) {
    dnnl_status_t st = dnnl_stream_wait(e->stream);
    return st == dnnl_success ? TT_OK : tt_dnnl_fail(e, -1, "execution", st);
}

/* Points the caller's memories of slot `slot` (-1 input, -2 d_output) at `ptr`. */
static tt_status bind_caller(tt_engine *e, int32_t slot, const void *ptr) {
    for (int32_t k = 0; k < e->n_bindings; k++) {
        if (e->bindings[k].slot != slot) continue;
        dnnl_status_t st = dnnl_memory_set_data_handle(e->bindings[k].mem, (void *)ptr);
        if (st != dnnl_success) return tt_dnnl_fail(e, -1, "binding the caller's buffer", st);
    }
    return TT_OK;
}

static tt_status check_params(const tt_engine *e) {
    for (int32_t k = 0; k < e->n_params; k++)
        if (!e->params[k].bound)
            return tt_error(TT_INVALID_ARGUMENT, "parameter %d (tensor %d) of the training engine is not bound", k,
                            e->params[k].tensor);
    return TT_OK;
}

static tt_status set_handle(tt_engine *e, dnnl_memory_t mem, const void *ptr) {
    dnnl_status_t st = dnnl_memory_set_data_handle(mem, (void *)ptr);
    return st == dnnl_success ? TT_OK : tt_dnnl_fail(e, -1, "binding the caller's buffer", st);
}

tt_status tt_engine_run(tt_engine *e, const float *input, float *output) {
    tt_status s = TT_OK;
    e->last_run_threads = tt_use_num_threads(e->num_threads);
    if (e->sub[0]) {
        if (e->n_lanes >= 2)
            s = run_lanes(e, input, output);
        else
            for (int32_t k = 0; k < e->n_chunks && s == TT_OK; k++)
                s = tt_engine_run(e->sub[0], input + k * e->in_chunk, output + k * e->out_chunk);
        e->last_run_threads = tt_use_num_threads(e->num_threads); /* the lanes ran with one each */
        if (s == TT_OK && e->sub[1])
            s = tt_engine_run(e->sub[1], input + e->n_chunks * e->in_chunk, output + e->n_chunks * e->out_chunk);
        return s;
    }
    if ((s = check_params(e)) || (s = bind_caller(e, -1, input)) || (s = set_handle(e, e->out_mem, output)) ||
        (s = run_steps(e, &e->refresh, 0, e->refresh.n)) || (s = run_steps(e, &e->fwd, 0, e->fwd.n)) ||
        (s = run_steps(e, &e->out, 0, e->out.n)))
        return s;
    return wait(e);
}

/* ---- training ---------------------------------------------------------------------------- */

int32_t tt_engine_n_params(const tt_engine *e) { return e->n_params; }

tt_status tt_engine_param(const tt_engine *e, int32_t k, int32_t *op, int32_t *tensor, int64_t *size) {
    if (k < 0 || k >= e->n_params)
        return tt_error(TT_INVALID_ARGUMENT, "parameter index %d is out of range [0, %d)", k, e->n_params);
    *op = e->params[k].op;
    *tensor = e->params[k].tensor;
    *size = e->params[k].size;
    return TT_OK;
}

tt_status tt_engine_bind_param(tt_engine *e, int32_t k, const float *value, float *grad) {
    if (k < 0 || k >= e->n_params || !value || !grad)
        return tt_error(TT_INVALID_ARGUMENT, "bind_param: parameter index %d out of range [0, %d) or NULL buffer", k,
                        e->n_params);
    tt_status s = set_handle(e, e->params[k].value, value);
    if (!s) s = set_handle(e, e->params[k].grad, grad);
    e->params[k].bound = s == TT_OK;
    return s;
}

tt_status tt_engine_backward(tt_engine *e, const float *d_output) {
    if (e->train_from >= e->model->n_ops)
        return tt_error(TT_INVALID_ARGUMENT, "backward on an engine without trainable ops");
    tt_status s;
    e->last_run_threads = tt_use_num_threads(e->num_threads);
    if ((s = check_params(e)) || (s = bind_caller(e, -2, d_output)) || (s = run_steps(e, &e->bwd, 0, e->bwd.n)))
        return s;
    return wait(e);
}

int32_t tt_engine_n_cut(const tt_engine *e) { return e->n_cut; }

tt_status tt_engine_cut(const tt_engine *e, int32_t k, int32_t *tensor, int32_t *rank, int64_t shape[TT_MAX_RANK]) {
    if (k < 0 || k >= e->n_cut) return tt_error(TT_INVALID_ARGUMENT, "cut index %d is out of range [0, %d)", k, e->n_cut);
    *tensor = e->cut[k].tensor;
    *rank = e->shapes[e->cut[k].tensor].rank;
    memcpy(shape, e->shapes[e->cut[k].tensor].d, sizeof(int64_t) * TT_MAX_RANK);
    return TT_OK;
}

/* Copies cut value k to or from the caller's buffer `ptr` (to_user: value -> ptr). */
static tt_status cut_copy(tt_engine *e, int32_t k, void *ptr, bool to_user) {
    tt_cut *c = &e->cut[k];
    tt_value *v = &e->values[c->value];
    tt_status s;
    if (v->slot == -1) /* the model's input itself: run_top reads the caller's buffer directly */
        return to_user ? TT_OK : bind_caller(e, -1, ptr);
    if ((s = set_handle(e, c->user, ptr))) return s;
    dnnl_primitive_t r = to_user ? c->to_user : c->from_user;
    if (r) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, to_user ? v->mem : c->user}, {DNNL_ARG_TO, to_user ? c->user : v->mem}};
        dnnl_status_t st = dnnl_primitive_execute(r, e->stream, 2, args);
        return st == dnnl_success ? TT_OK : tt_dnnl_fail(e, -1, "cut reorder", st);
    }
    void *vp = NULL;
    dnnl_memory_get_data_handle(v->mem, &vp);
    if ((s = wait(e))) return s;
    size_t bytes = dnnl_memory_desc_get_size(v->md);
    memcpy(to_user ? ptr : vp, to_user ? vp : ptr, bytes);
    return TT_OK;
}

tt_status tt_engine_run_bottom(tt_engine *e, const float *input, float *const *cut) {
    tt_status s;
    e->last_run_threads = tt_use_num_threads(e->num_threads);
    if ((s = bind_caller(e, -1, input)) || (s = run_steps(e, &e->fwd, 0, e->top_step))) return s;
    for (int32_t k = 0; k < e->n_cut; k++) {
        if (e->values[e->cut[k].value].slot == -1) { /* the input is its own cut value */
            if ((s = wait(e))) return s;
            memcpy(cut[k], input, dnnl_memory_desc_get_size(e->values[e->cut[k].value].md));
            continue;
        }
        if ((s = cut_copy(e, k, cut[k], true))) return s;
    }
    return wait(e);
}

tt_status tt_engine_run_top(tt_engine *e, const float *const *cut, float *output) {
    tt_status s;
    e->last_run_threads = tt_use_num_threads(e->num_threads);
    if ((s = check_params(e))) return s;
    for (int32_t k = 0; k < e->n_cut; k++)
        if ((s = cut_copy(e, k, (void *)cut[k], false))) return s;
    if ((s = set_handle(e, e->out_mem, output)) || (s = run_steps(e, &e->refresh, 0, e->refresh.n)) ||
        (s = run_steps(e, &e->fwd, e->top_step, e->fwd.n)) || (s = run_steps(e, &e->out, 0, e->out.n)))
        return s;
    return wait(e);
}

/* ---- destroy --------------------------------------------------------------------------------- */

static void free_steps(tt_steps *l) {
    for (int32_t k = 0; k < l->n; k++) dnnl_primitive_destroy(l->s[k].prim);
    free(l->s);
}

void tt_engine_destroy(tt_engine *e) {
    if (!e) return;
    tt_engine_destroy(e->sub[0]);
    tt_engine_destroy(e->sub[1]);
    for (int32_t k = 0; k < e->n_lanes; k++) tt_engine_destroy(e->lane[k]);
    free_steps(&e->fwd);
    free_steps(&e->out);
    free_steps(&e->refresh);
    free_steps(&e->bwd);
    for (int32_t k = 0; k < e->n_cut; k++) {
        dnnl_primitive_destroy(e->cut[k].to_user);
        dnnl_primitive_destroy(e->cut[k].from_user);
    }
    if (e->fwd_pd)
        for (int32_t i = 0; i < e->model->n_ops; i++) dnnl_primitive_desc_destroy(e->fwd_pd[i]);
    for (int32_t k = 0; k < e->n_mems; k++) dnnl_memory_destroy(e->mems[k]);
    for (int32_t k = 0; k < e->n_mds; k++) dnnl_memory_desc_destroy(e->mds[k]);
    for (int32_t k = 0; k < e->n_bufs; k++) free(e->bufs[k]);
    for (int32_t k = 0; k < e->n_slots; k++) free(e->slots[k].ptr);
    if (e->stream) dnnl_stream_destroy(e->stream);
    if (e->eng) dnnl_engine_destroy(e->eng);
    free(e->scratch);
    free(e->mems);
    free(e->mds);
    free(e->bufs);
    free(e->slots);
    free(e->bindings);
    free(e->params);
    free(e->cut);
    free(e->scratch_mems);
    free(e->values);
    free(e->shapes);
    free(e->needed);
    free(e->producer);
    free(e->last_use);
    free(e->consumers);
    free(e->tensor_value);
    free(e->grad_value);
    free(e->fuse_add);
    free(e->fuse_dw);
    free(e->op_done);
    free(e->fold_pad);
    free(e->fwd_pd);
    free(e);
}
