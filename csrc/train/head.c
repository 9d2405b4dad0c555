/* head.c - the classifier head's ops: dense via oneDNN inner product
 * (forward_training, backward_data, backward_weights), ReLU / softmax /
 * sigmoid, softmax and sigmoid cross-entropy, inverted dropout, L2.
 * Each op's forward and backward sit side by side. See tt_train.h. */
#include "core/tt_threads.h"
#include "train/tt_train.h"

#include <math.h>
#include <stdlib.h>

#include <dnnl.h>

/* ======================================================================== */
/* dense                                                                    */
/* ======================================================================== */

struct tt_dense {
    int64_t batch, in, out;       /* x (batch, in), kernel (in, out), y (batch, out) */
    dnnl_engine_t engine;         /* owned */
    dnnl_stream_t stream;         /* owned */
    dnnl_primitive_t fwd;         /* owned: forward_training */
    dnnl_primitive_t bwd_data;    /* owned: dx = dy W^T */
    dnnl_primitive_t bwd_weights; /* owned: dW = x^T dy, db = sum dy */
    /* Memory objects without buffers (DNNL_MEMORY_NONE); each run binds the
     * caller's arrays. Owned. */
    dnnl_memory_t m_x;  /* (batch, in)  nc */
    dnnl_memory_t m_w;  /* (out, in) logical, Keras (in, out) physical: io */
    dnnl_memory_t m_b;  /* (out) a */
    dnnl_memory_t m_y;  /* (batch, out) nc */
    int num_threads;    /* OpenMP threads the primitives were created for and run with (core/tt_threads.h) */
    /* User scratchpad (as the engine): oneDNN's library scratchpad would tie each primitive to
     * the thread that created it in the default build, while plans run on any thread. One
     * buffer for the three primitives (the plan runs one at a time); a memory object per
     * primitive on it, NULL when that primitive needs none. Owned. */
    void *scratch;             /* (scratch_bytes) 64-byte aligned */
    size_t scratch_bytes;
    dnnl_memory_t m_scratch[3]; /* fwd, bwd_data, bwd_weights */
};

/* The (nargs + 1)-th argument of primitive k: its scratchpad, if it has one; returns the count. */
static int with_scratch(const tt_dense *d, int k, dnnl_exec_arg_t *args, int nargs) {
    if (d->m_scratch[k] == NULL) return nargs;
    args[nargs].arg = DNNL_ARG_SCRATCHPAD;
    args[nargs].memory = d->m_scratch[k];
    return nargs + 1;
}

#define DNNL_TRY(call, what)                                                              \
    do {                                                                                  \
        dnnl_status_t s_ = (call);                                                        \
        if (s_ != dnnl_success) {                                                         \
            st = tt_error(s_ == dnnl_out_of_memory ? TT_OUT_OF_MEMORY : TT_RUNTIME_ERROR, \
                          "oneDNN %s failed (dnnl_status %d)", what, (int)s_);            \
            goto error;                                                                   \
        }                                                                                 \
    } while (0)

tt_status tt_dense_create(tt_dense **out, int64_t batch, int64_t in, int64_t out_features) {
    tt_status st = TT_OK;
    dnnl_memory_desc_t md_x = NULL, md_w = NULL, md_b = NULL, md_y = NULL;
    dnnl_primitive_desc_t pd_f = NULL, pd_bd = NULL, pd_bw = NULL;
    dnnl_primitive_attr_t attr = NULL;
    tt_dense *d = NULL;
    if (out == NULL) return tt_error(TT_INVALID_ARGUMENT, "tt_dense_create: out is NULL");
    *out = NULL;
    if (batch < 1 || in < 1 || out_features < 1)
        return tt_error(TT_INVALID_ARGUMENT,
                        "dense: batch, in and out must be >= 1. Received: batch=%lld, in=%lld, out=%lld",
                        (long long)batch, (long long)in, (long long)out_features);
    d = calloc(1, sizeof *d);
    if (d == NULL) return tt_error(TT_OUT_OF_MEMORY, "dense: cannot allocate the plan");
    d->batch = batch;
    d->in = in;
    d->out = out_features;
    d->num_threads = tt_use_num_threads(0);
    DNNL_TRY(dnnl_engine_create(&d->engine, dnnl_cpu, 0), "engine_create");
    DNNL_TRY(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags), "stream_create");
    dnnl_dims_t dx = {batch, in}, dw = {out_features, in}, db = {out_features}, dy = {batch, out_features};
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&md_x, 2, dx, dnnl_f32, dnnl_nc), "memory_desc(x)");
    /* Keras keeps the kernel as (in, out) row-major: oneDNN's logical (OC, IC)
     * with the io layout, so no transposed copy is ever made. */
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&md_w, 2, dw, dnnl_f32, dnnl_io), "memory_desc(kernel)");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&md_b, 1, db, dnnl_f32, dnnl_a), "memory_desc(bias)");
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&md_y, 2, dy, dnnl_f32, dnnl_nc), "memory_desc(y)");
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
    DNNL_TRY(dnnl_inner_product_forward_primitive_desc_create(&pd_f, d->engine, dnnl_forward_training, md_x,
                                                              md_w, md_b, md_y, attr),
             "inner_product forward_training");
    DNNL_TRY(dnnl_inner_product_backward_data_primitive_desc_create(&pd_bd, d->engine, md_x, md_w, md_y, pd_f,
                                                                    attr),
             "inner_product backward_data");
    DNNL_TRY(dnnl_inner_product_backward_weights_primitive_desc_create(&pd_bw, d->engine, md_x, md_w, md_b,
                                                                       md_y, pd_f, attr),
             "inner_product backward_weights");
    {
        const_dnnl_primitive_desc_t pds[3] = {pd_f, pd_bd, pd_bw};
        const_dnnl_memory_desc_t smd[3];
        for (int k = 0; k < 3; k++) {
            smd[k] = dnnl_primitive_desc_query_md(pds[k], dnnl_query_scratchpad_md, 0);
            size_t b = smd[k] ? dnnl_memory_desc_get_size(smd[k]) : 0;
            if (b > d->scratch_bytes) d->scratch_bytes = b;
        }
        if (d->scratch_bytes > 0) {
            d->scratch = aligned_alloc(64, (d->scratch_bytes + 63) & ~(size_t)63);
            if (d->scratch == NULL) {
                st = tt_error(TT_OUT_OF_MEMORY, "dense: cannot allocate a %zu-byte scratchpad", d->scratch_bytes);
                goto error;
            }
        }
        for (int k = 0; k < 3; k++)
            if (smd[k] && dnnl_memory_desc_get_size(smd[k]) > 0)
                DNNL_TRY(dnnl_memory_create(&d->m_scratch[k], smd[k], d->engine, d->scratch), "memory_create(scratchpad)");
    }
    DNNL_TRY(dnnl_primitive_create(&d->fwd, pd_f), "primitive_create(forward)");
    DNNL_TRY(dnnl_primitive_create(&d->bwd_data, pd_bd), "primitive_create(backward_data)");
    DNNL_TRY(dnnl_primitive_create(&d->bwd_weights, pd_bw), "primitive_create(backward_weights)");
    DNNL_TRY(dnnl_memory_create(&d->m_x, md_x, d->engine, DNNL_MEMORY_NONE), "memory_create(x)");
    DNNL_TRY(dnnl_memory_create(&d->m_w, md_w, d->engine, DNNL_MEMORY_NONE), "memory_create(kernel)");
    DNNL_TRY(dnnl_memory_create(&d->m_b, md_b, d->engine, DNNL_MEMORY_NONE), "memory_create(bias)");
    DNNL_TRY(dnnl_memory_create(&d->m_y, md_y, d->engine, DNNL_MEMORY_NONE), "memory_create(y)");
    dnnl_primitive_desc_destroy(pd_f);
    dnnl_primitive_desc_destroy(pd_bd);
    dnnl_primitive_desc_destroy(pd_bw);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_destroy(md_x);
    dnnl_memory_desc_destroy(md_w);
    dnnl_memory_desc_destroy(md_b);
    dnnl_memory_desc_destroy(md_y);
    *out = d;
    return TT_OK;
error:
    if (pd_f) dnnl_primitive_desc_destroy(pd_f);
    if (pd_bd) dnnl_primitive_desc_destroy(pd_bd);
    if (pd_bw) dnnl_primitive_desc_destroy(pd_bw);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (md_x) dnnl_memory_desc_destroy(md_x);
    if (md_w) dnnl_memory_desc_destroy(md_w);
    if (md_b) dnnl_memory_desc_destroy(md_b);
    if (md_y) dnnl_memory_desc_destroy(md_y);
    tt_dense_destroy(d);
    return st;
}

void tt_dense_destroy(tt_dense *d) {
    if (d == NULL) return;
    if (d->m_x) dnnl_memory_destroy(d->m_x);
    if (d->m_w) dnnl_memory_destroy(d->m_w);
    if (d->m_b) dnnl_memory_destroy(d->m_b);
    if (d->m_y) dnnl_memory_destroy(d->m_y);
    for (int k = 0; k < 3; k++)
        if (d->m_scratch[k]) dnnl_memory_destroy(d->m_scratch[k]);
    free(d->scratch);
    if (d->fwd) dnnl_primitive_destroy(d->fwd);
    if (d->bwd_data) dnnl_primitive_destroy(d->bwd_data);
    if (d->bwd_weights) dnnl_primitive_destroy(d->bwd_weights);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    free(d);
}

/* Binds the four memories to caller buffers (const cast: oneDNN's handle
 * API is not const-aware; inputs are only read by the primitives). */
static tt_status dense_bind(tt_dense *d, const float *x, const float *w, const float *b, const float *y) {
    tt_status st = TT_OK;
    DNNL_TRY(dnnl_memory_set_data_handle(d->m_x, (void *)x), "set_data_handle(x)");
    DNNL_TRY(dnnl_memory_set_data_handle(d->m_w, (void *)w), "set_data_handle(kernel)");
    DNNL_TRY(dnnl_memory_set_data_handle(d->m_b, (void *)b), "set_data_handle(bias)");
    DNNL_TRY(dnnl_memory_set_data_handle(d->m_y, (void *)y), "set_data_handle(y)");
    return TT_OK;
error:
    return st;
}

tt_status tt_dense_forward(tt_dense *d, const float *x, const float *kernel, const float *bias, float *y) {
    tt_status st;
    if (!d || !x || !kernel || !bias || !y) return tt_error(TT_INVALID_ARGUMENT, "dense_forward: NULL argument");
    if ((st = dense_bind(d, x, kernel, bias, y)) != TT_OK) return st;
    tt_use_num_threads(d->num_threads);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, d->m_x}, {DNNL_ARG_WEIGHTS, d->m_w},
                               {DNNL_ARG_BIAS, d->m_b}, {DNNL_ARG_DST, d->m_y}};
    DNNL_TRY(dnnl_primitive_execute(d->fwd, d->stream, with_scratch(d, 0, args, 4), args), "execute(forward)");
    DNNL_TRY(dnnl_stream_wait(d->stream), "stream_wait");
    return TT_OK;
error:
    return st;
}

tt_status tt_dense_backward(tt_dense *d, const float *dy, const float *x, const float *kernel, float *dx,
                            float *dkernel, float *dbias) {
    tt_status st;
    if (!d || !dy || !x || !kernel || !dkernel || !dbias)
        return tt_error(TT_INVALID_ARGUMENT, "dense_backward: NULL argument");
    /* Weights gradient: m_x = x, m_w = dkernel, m_b = dbias, m_y = dy. */
    if ((st = dense_bind(d, x, dkernel, dbias, dy)) != TT_OK) return st;
    tt_use_num_threads(d->num_threads);
    dnnl_exec_arg_t aw[5] = {{DNNL_ARG_SRC, d->m_x}, {DNNL_ARG_DIFF_WEIGHTS, d->m_w},
                             {DNNL_ARG_DIFF_BIAS, d->m_b}, {DNNL_ARG_DIFF_DST, d->m_y}};
    DNNL_TRY(dnnl_primitive_execute(d->bwd_weights, d->stream, with_scratch(d, 2, aw, 4), aw),
             "execute(backward_weights)");
    DNNL_TRY(dnnl_stream_wait(d->stream), "stream_wait");
    if (dx != NULL) {
        /* Data gradient: m_x = dx, m_w = kernel, m_y = dy. */
        if ((st = dense_bind(d, dx, kernel, dbias, dy)) != TT_OK) return st;
        dnnl_exec_arg_t ad[4] = {{DNNL_ARG_DIFF_SRC, d->m_x}, {DNNL_ARG_WEIGHTS, d->m_w},
                                 {DNNL_ARG_DIFF_DST, d->m_y}};
        DNNL_TRY(dnnl_primitive_execute(d->bwd_data, d->stream, with_scratch(d, 1, ad, 3), ad),
                 "execute(backward_data)");
        DNNL_TRY(dnnl_stream_wait(d->stream), "stream_wait");
    }
    return TT_OK;
error:
    return st;
}

/* ======================================================================== */
/* activations                                                              */
/* ======================================================================== */

tt_status tt_relu_forward(int64_t n, const float *x, float *y) {
    if (n < 0 || (n > 0 && (!x || !y))) return tt_error(TT_INVALID_ARGUMENT, "relu_forward: bad arguments");
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return TT_OK;
}

tt_status tt_relu_backward(int64_t n, const float *dy, const float *y, float *dx) {
    if (n < 0 || (n > 0 && (!dy || !y || !dx)))
        return tt_error(TT_INVALID_ARGUMENT, "relu_backward: bad arguments");
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    return TT_OK;
}

tt_status tt_softmax_forward(int64_t rows, int64_t c, const float *x, float *y) {
    if (rows < 0 || c < 1 || (rows > 0 && (!x || !y)))
        return tt_error(TT_INVALID_ARGUMENT, "softmax_forward: bad arguments");
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * c;
        float *yi = y + i * c;
        float mx = xi[0];
        for (int64_t j = 1; j < c; j++) mx = xi[j] > mx ? xi[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) {
            yi[j] = expf(xi[j] - mx);
            s += yi[j];
        }
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < c; j++) yi[j] *= inv;
    }
    return TT_OK;
}

tt_status tt_sigmoid_forward(int64_t n, const float *x, float *y) {
    if (n < 0 || (n > 0 && (!x || !y))) return tt_error(TT_INVALID_ARGUMENT, "sigmoid_forward: bad arguments");
    for (int64_t i = 0; i < n; i++) {
        /* Two branches so exp never overflows. */
        if (x[i] >= 0.0f) {
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        } else {
            float e = expf(x[i]);
            y[i] = e / (1.0f + e);
        }
    }
    return TT_OK;
}

/* ======================================================================== */
/* losses                                                                   */
/* ======================================================================== */

static tt_status check_loss_args(const char *who, int64_t rows, int64_t c, const void *a, const void *t,
                                 const void *o, float ls) {
    if (rows < 0 || c < 1 || (rows > 0 && (!a || !t || !o)))
        return tt_error(TT_INVALID_ARGUMENT, "%s: bad sizes or NULL buffer", who);
    if (!(ls >= 0.0f && ls < 1.0f))
        return tt_error(TT_INVALID_ARGUMENT, "%s: label_smoothing must be in [0, 1). Received: %g", who, (double)ls);
    return TT_OK;
}

tt_status tt_softmax_xent_forward(int64_t rows, int64_t c, const float *logits, const float *targets,
                                  const float *sample_weight, float label_smoothing, float *probs,
                                  double *loss_sum) {
    tt_status st = check_loss_args("softmax_xent_forward", rows, c, logits, targets, probs, label_smoothing);
    if (st != TT_OK) return st;
    if (!loss_sum) return tt_error(TT_INVALID_ARGUMENT, "softmax_xent_forward: loss_sum is NULL");
    const double keep = 1.0 - label_smoothing, add = (double)label_smoothing / (double)c;
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++) {
        const float *z = logits + i * c;
        const float *t = targets + i * c;
        float *p = probs + i * c;
        double mx = z[0];
        for (int64_t j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += exp((double)z[j] - mx);
        const double lse = mx + log(s); /* log sum exp z */
        double li = 0.0;
        for (int64_t j = 0; j < c; j++) {
            const double logp = (double)z[j] - lse;
            p[j] = (float)exp(logp);
            li -= (t[j] * keep + add) * logp;
        }
        total += (sample_weight ? (double)sample_weight[i] : 1.0) * li;
    }
    *loss_sum = total;
    return TT_OK;
}

tt_status tt_softmax_xent_backward(int64_t rows, int64_t c, const float *probs, const float *targets,
                                   const float *sample_weight, float label_smoothing, float scale,
                                   float *dlogits) {
    tt_status st = check_loss_args("softmax_xent_backward", rows, c, probs, targets, dlogits, label_smoothing);
    if (st != TT_OK) return st;
    const float keep = 1.0f - label_smoothing, add = label_smoothing / (float)c;
    for (int64_t i = 0; i < rows; i++) {
        const float w = scale * (sample_weight ? sample_weight[i] : 1.0f);
        for (int64_t j = 0; j < c; j++)
            dlogits[i * c + j] = w * (probs[i * c + j] - (targets[i * c + j] * keep + add));
    }
    return TT_OK;
}

tt_status tt_sigmoid_bce_forward(int64_t rows, int64_t k, const float *logits, const float *targets,
                                 const float *sample_weight, float label_smoothing, float *probs,
                                 double *loss_sum) {
    tt_status st = check_loss_args("sigmoid_bce_forward", rows, k, logits, targets, probs, label_smoothing);
    if (st != TT_OK) return st;
    if (!loss_sum) return tt_error(TT_INVALID_ARGUMENT, "sigmoid_bce_forward: loss_sum is NULL");
    const double keep = 1.0 - label_smoothing, add = 0.5 * label_smoothing;
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++) {
        double li = 0.0;
        for (int64_t j = 0; j < k; j++) {
            const double z = logits[i * k + j], t = targets[i * k + j] * keep + add;
            /* The stable form of -t log s(z) - (1 - t) log(1 - s(z)). */
            li += (z > 0 ? z : 0.0) - z * t + log1p(exp(-fabs(z)));
            probs[i * k + j] = (float)(z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)));
        }
        total += (sample_weight ? (double)sample_weight[i] : 1.0) * li / (double)k;
    }
    *loss_sum = total;
    return TT_OK;
}

tt_status tt_sigmoid_bce_backward(int64_t rows, int64_t k, const float *probs, const float *targets,
                                  const float *sample_weight, float label_smoothing, float scale,
                                  float *dlogits) {
    tt_status st = check_loss_args("sigmoid_bce_backward", rows, k, probs, targets, dlogits, label_smoothing);
    if (st != TT_OK) return st;
    const float keep = 1.0f - label_smoothing, add = 0.5f * label_smoothing;
    for (int64_t i = 0; i < rows; i++) {
        const float w = scale * (sample_weight ? sample_weight[i] : 1.0f) / (float)k;
        for (int64_t j = 0; j < k; j++)
            dlogits[i * k + j] = w * (probs[i * k + j] - (targets[i * k + j] * keep + add));
    }
    return TT_OK;
}

/* ======================================================================== */
/* dropout                                                                  */
/* ======================================================================== */

/* splitmix64 finalizer: a counter-based generator, so element i's draw
 * depends only on (seed, i), whatever the thread layout. */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

tt_status tt_dropout_forward(int64_t n, const float *x, float rate, uint64_t seed, float *y, uint8_t *mask) {
    if (n < 0 || (n > 0 && (!x || !y || !mask)))
        return tt_error(TT_INVALID_ARGUMENT, "dropout_forward: bad arguments");
    if (!(rate >= 0.0f && rate < 1.0f))
        return tt_error(TT_INVALID_ARGUMENT, "Dropout: `rate` must be in [0, 1). Received: rate=%g", (double)rate);
    const float scale = 1.0f / (1.0f - rate);
    const uint64_t base = mix64(seed);
    for (int64_t i = 0; i < n; i++) {
        const double u = (double)(mix64(base + (uint64_t)i) >> 11) * 0x1.0p-53;
        mask[i] = u >= (double)rate;
        y[i] = mask[i] ? x[i] * scale : 0.0f;
    }
    return TT_OK;
}

tt_status tt_dropout_backward(int64_t n, const float *dy, const uint8_t *mask, float rate, float *dx) {
    if (n < 0 || (n > 0 && (!dy || !mask || !dx)))
        return tt_error(TT_INVALID_ARGUMENT, "dropout_backward: bad arguments");
    if (!(rate >= 0.0f && rate < 1.0f))
        return tt_error(TT_INVALID_ARGUMENT, "Dropout: `rate` must be in [0, 1). Received: rate=%g", (double)rate);
    const float scale = 1.0f / (1.0f - rate);
    for (int64_t i = 0; i < n; i++) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
    return TT_OK;
}

/* ======================================================================== */
/* L2 regularizer                                                           */
/* ======================================================================== */

tt_status tt_l2_forward(int64_t n, const float *w, float l2, double *penalty) {
    if (n < 0 || (n > 0 && !w) || !penalty) return tt_error(TT_INVALID_ARGUMENT, "l2_forward: bad arguments");
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * (double)w[i];
    *penalty = (double)l2 * s;
    return TT_OK;
}

tt_status tt_l2_backward(int64_t n, const float *w, float l2, float *dw) {
    if (n < 0 || (n > 0 && (!w || !dw))) return tt_error(TT_INVALID_ARGUMENT, "l2_backward: bad arguments");
    const float k = 2.0f * l2;
    for (int64_t i = 0; i < n; i++) dw[i] += k * w[i];
    return TT_OK;
}
