/* quant.c - helpers of int8 engines (see tt_build.h): the file's quantization
 * parameters as oneDNN runtime arguments, and exact s8 copies of the weights.
 *
 * oneDNN's int8 convolution (oneDNN 3.2, "Quantization" in the developer guide):
 *   dst = round(post_ops(src_scale * wei_scale[oc] * sum((src - src_zp) * wei) + bias) / dst_scale) + dst_zp
 * which is TFLite's affine scheme real = scale * (q - zero_point) with symmetric
 * per-channel int8 weights, a float bias (the file's int32 bias times
 * input_scale * weight_scale, i.e. the dequantized bias the reader stores) and
 * per-tensor activation scales and zero points. uint8 files (the quant-aware one) map
 * onto the same scheme: activations shifted by 128 exactly, weights converted once
 * (weights_u8_as_s8).
 */
#include "engine/tt_build.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

tt_status tt_tensor_qparams(tt_engine *e, int32_t i, int32_t t, float *scale, int32_t *zp) {
    const tt_tensor *x = &e->model->tensors[t];
    if (x->quant.n != 1 || !(x->quant.scale[0] > 0.f))
        return tt_error(TT_UNSUPPORTED, "operator %d: int8 needs a per-tensor quantized activation, but tensor %d "
                        "('%s') has %d quantization scales", i, t, x->name, x->quant.n);
    *scale = x->quant.scale[0];
    *zp = (int32_t)x->quant.zero_point[0];
    /* uint8 q with zero point z is the same real value as s8 (q - 128) with zero point
     * z - 128: the engine keeps every activation as s8, so uint8 tensors (the quant-aware
     * file) shift by 128 exactly, with no rounding. */
    if (x->type == TT_TFLITE_UINT8) *zp -= 128;
    return TT_OK;
}

dnnl_memory_t tt_const_bytes(tt_engine *e, const_dnnl_memory_desc_t md, const void *data, size_t bytes) {
    void *buf = tt_own_buffer(e, bytes);
    if (!buf) return NULL;
    memcpy(buf, data, bytes);
    return tt_new_memory(e, md, buf);
}

dnnl_memory_t tt_scales_memory(tt_engine *e, const float *scales, int64_t n) {
    dnnl_memory_desc_t md = tt_md_tag(e, 1, &n, dnnl_a);
    return md ? tt_const_bytes(e, md, scales, sizeof(float) * (size_t)n) : NULL;
}

dnnl_memory_t tt_zero_point_memory(tt_engine *e, int32_t zp) {
    int64_t one = 1;
    dnnl_memory_desc_t md = tt_md_tag_dt(e, 1, &one, dnnl_s32, dnnl_a);
    return md ? tt_const_bytes(e, md, &zp, sizeof zp) : NULL;
}

int32_t tt_quantize_value(tt_engine *e, int32_t i, int32_t xv, int32_t t) {
    float ys, xs = e->values[xv].qscale;
    int32_t yz, xz = e->values[xv].qzp;
    if (tt_tensor_qparams(e, i, t, &ys, &yz)) return -1;
    dnnl_memory_desc_t ymd = tt_md_for_shape(e, &e->shapes[t]);
    dnnl_memory_desc_t ymd8 = ymd ? tt_md_strided_like(e, ymd, dnnl_s8) : NULL;
    int32_t yv = ymd8 ? tt_new_value(e, t, ymd8, e->last_use[t]) : -1;
    dnnl_memory_t m_xs = xs > 0.f ? tt_scales_memory(e, &xs, 1) : NULL, m_xz = xs > 0.f ? tt_zero_point_memory(e, xz) : NULL;
    dnnl_memory_t m_ys = tt_scales_memory(e, &ys, 1), m_yz = tt_zero_point_memory(e, yz);
    if (yv < 0 || !m_ys || !m_yz || (xs > 0.f && (!m_xs || !m_xz))) return -1;
    e->values[yv].qscale = ys;
    e->values[yv].qzp = yz;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_DST, 0);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_zero_points_mask(attr, DNNL_ARG_DST, 0);
    if (st == dnnl_success && xs > 0.f) st = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_SRC, 0);
    if (st == dnnl_success && xs > 0.f) st = dnnl_primitive_attr_set_zero_points_mask(attr, DNNL_ARG_SRC, 0);
    dnnl_primitive_desc_t pd = NULL;
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, e->values[xv].md, e->eng, e->values[yv].md, e->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        tt_dnnl_fail(e, i, "quantizing reorder", st);
        return -1;
    }
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_FROM, e->values[xv].mem}, {DNNL_ARG_TO, e->values[yv].mem},
                               {DNNL_ARG_ATTR_SCALES | DNNL_ARG_DST, m_ys},
                               {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, m_yz},
                               {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, m_xs},
                               {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m_xz}};
    return tt_add_primitive(e, i, pd, xs > 0.f ? 6 : 4, args) ? -1 : yv;
}

/* uint8 per-tensor weights (the quant-aware file: real = s * (q - z), z != 0) as s8 for
 * oneDNN, whose CPU int8 convolutions take no weight zero point (oneDNN 3.2 developer
 * guide, "Quantization / Zero points": zero points are supported for src and dst only on
 * CPU). Converted once at build, with the smallest deviation available:
 *   - exact when every q - z of the tensor fits in s8 (scale s, per tensor);
 *   - else per output channel: a channel whose q - z fit in s8 keeps them (scale s, exact);
 *     the others are requantized symmetric, scale[c] = max|w_c| / 127,
 *     q' = round(w / scale[c]) (each weight moves by at most scale[c] / 2).
 * w: TFLite layout, dequantized floats [size]; the output channel is axis 0 (CONV_2D,
 * [O, H, W, I]) or the last axis (DEPTHWISE_CONV_2D, [1, H, W, O]). */
static const int8_t *weights_u8_as_s8(tt_engine *e, int32_t i, const tt_tensor *w, const float **scales,
                                      int32_t *n_scales) {
    float s = w->quant.scale[0];
    int8_t *out = (int8_t *)tt_own_buffer(e, (size_t)w->size);
    if (!out) return NULL;
    bool exact = true;
    for (int64_t k = 0; k < w->size && exact; k++) {
        long v = lrintf(w->data[k] / s); /* = q - z: the reader stored s * (q - z) */
        if (v < -128 || v > 127) exact = false;
        else out[k] = (int8_t)v;
    }
    if (exact) {
        *scales = w->quant.scale;
        *n_scales = 1;
        return out;
    }
    bool dw = e->model->ops[i].type == TT_OP_DEPTHWISE_CONV_2D;
    int64_t n_out = dw ? w->shape[w->rank - 1] : w->shape[0];
    int64_t inner = dw ? 1 : w->size / n_out; /* stride of one output channel */
    float *sc = (float *)tt_own_buffer(e, sizeof(float) * (size_t)n_out);
    if (!sc) return NULL;
    for (int64_t c = 0; c < n_out; c++) sc[c] = 0.f;
    for (int64_t k = 0; k < w->size; k++) {
        int64_t c = dw ? k % n_out : k / inner;
        float a = fabsf(w->data[k]);
        if (a > sc[c]) sc[c] = a;
    }
    /* a channel whose q - z all fit in s8 keeps the file's step s exactly (max|w_c| <= 127 s,
     * within rounding of the stored floats); only the others are requantized */
    for (int64_t c = 0; c < n_out; c++) sc[c] = sc[c] > 0.f && sc[c] > 127.f * s * (1.f + 1e-6f) ? sc[c] / 127.f : s;
    for (int64_t k = 0; k < w->size; k++) {
        int64_t c = dw ? k % n_out : k / inner;
        long v = lrintf(w->data[k] / sc[c]);
        out[k] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
    }
    *scales = sc;
    *n_scales = (int32_t)n_out;
    return out;
}

const int8_t *tt_weights_s8(tt_engine *e, int32_t i, int32_t t, const float **scales, int32_t *n_scales) {
    const tt_tensor *w = &e->model->tensors[t];
    const tt_quant *q = &w->quant;
    if (w->type == TT_TFLITE_UINT8 && q->n == 1 && q->scale[0] > 0.f && w->data)
        return weights_u8_as_s8(e, i, w, scales, n_scales);
    if (w->type != TT_TFLITE_INT8 || q->n < 1 || !w->data) {
        tt_error(TT_UNSUPPORTED, "operator %d: int8 needs int8 (or per-tensor uint8) weights with scales; tensor %d "
                 "('%s') is %s", i, t, w->name, w->type == TT_TFLITE_UINT8 ? "uint8 per-channel" : "not int8");
        return NULL;
    }
    int32_t axis = q->n > 1 ? q->quantized_dimension : 0;
    int64_t inner = 1;
    for (int32_t k = axis + 1; k < w->rank; k++) inner *= w->shape[k];
    for (int32_t c = 0; c < q->n; c++)
        if (q->zero_point[c] != 0 || !(q->scale[c] > 0.f)) {
            tt_error(TT_UNSUPPORTED, "operator %d: weight tensor %d has a non-zero zero point or scale <= 0 in "
                     "channel %d; oneDNN's int8 convolutions take symmetric weights", i, t, c);
            return NULL;
        }
    int8_t *out = (int8_t *)tt_own_buffer(e, (size_t)w->size);
    if (!out) return NULL;
    for (int64_t k = 0; k < w->size; k++) {
        int32_t c = q->n > 1 ? (int32_t)((k / inner) % q->n) : 0;
        long v = lrintf(w->data[k] / q->scale[c]);
        out[k] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
    *scales = q->scale;
    *n_scales = q->n;
    return out;
}

/* ---- TFLite's integer arithmetic (TT_PRECISION_INT8_TFLITE) ------------------------------
 * The same operations as TFLite's reference integer kernels (tensorflow/lite/kernels/
 * internal: QuantizeMultiplier in quantization_util.cc; SaturatingRoundingDoublingHighMul
 * and RoundingDivideByPOT from gemmlowp; MultiplyByQuantizedMultiplier in common.h, the
 * default double-rounding form; reference_integer_ops conv, depthwise_conv and add), so
 * that an int8 engine in this mode reproduces LiteRT's reference output bit for bit:
 * oneDNN accumulates the convolution exactly in int32 (s8 x s8, source zero point, no
 * scales), then these kernels requantize. Slower than the default int8 path (one more
 * pass over an int32 tensor per convolution, one thread), which requantizes in float32. */

void tt_quantize_multiplier(double real, int32_t *multiplier, int32_t *shift) {
    if (real == 0.0) {
        *multiplier = 0;
        *shift = 0;
        return;
    }
    int e = 0;
    double q = frexp(real, &e); /* real = q * 2^e, q in [0.5, 1) */
    int64_t q_fixed = llround(q * (double)(1LL << 31));
    if (q_fixed == (1LL << 31)) { /* rounded up to 1.0 */
        q_fixed /= 2;
        ++e;
    }
    if (e < -31) { /* too small to represent: zero, as TFLite */
        e = 0;
        q_fixed = 0;
    }
    *multiplier = (int32_t)q_fixed;
    *shift = e;
}

static inline int32_t srdhm(int32_t a, int32_t b) { /* SaturatingRoundingDoublingHighMul */
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31)); /* C division truncates toward zero, as gemmlowp's */
}

static inline int32_t rdbpot(int32_t x, int exponent) { /* RoundingDivideByPOT: x / 2^exponent, ties away from 0 */
    int32_t mask = (int32_t)((1LL << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t mbqm(int32_t x, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    /* x * 2^left wraps as TFLite's int32 multiplication does (never for these models) */
    return rdbpot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

int32_t tt_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    return mbqm(x, multiplier, shift);
}

/* One NHWC row of requant_kernel: o[c] = clamp(MBQM(a[c] + bias[c], mult[c], shift[c]) + zp, lo, hi).
 * Compiled for AVX-512 / AVX2 / baseline and picked at load (GCC target_clones). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("arch=skylake-avx512", "avx2", "default")))
#endif
static void requant_row(const int32_t *a, int8_t *o, int64_t n, const int32_t *bias, const int32_t *mult,
                        const int32_t *shift, int32_t zp, int32_t lo, int32_t hi) {
    for (int64_t c = 0; c < n; c++) {
        int32_t v = mbqm(a[c] + bias[c], mult[c], shift[c]) + zp;
        o[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}

/* p: [0] elements, [1] channels C (innermost), [2] bias int32 [C] (pointer), [3] multiplier
 * int32 [C] (pointer), [4] shift int32 [C] (pointer), [5] output zero point, [6] clamp min,
 * [7] clamp max. acc: s32 [elements / C, C] (NHWC); y: s8 [elements / C, C] (NHWC). */
static void requant_kernel(const tt_step *s) {
    void *sp = NULL, *dp = NULL;
    dnnl_memory_get_data_handle(s->args[0].memory, &sp);
    dnnl_memory_get_data_handle(s->args[1].memory, &dp);
    const int32_t *acc = (const int32_t *)sp;
    int8_t *y = (int8_t *)dp;
    const int64_t *p = s->p;
    int64_t n = p[0], c_ = p[1];
    const int32_t *bias = (const int32_t *)(intptr_t)p[2], *mult = (const int32_t *)(intptr_t)p[3],
                  *shift = (const int32_t *)(intptr_t)p[4];
    int32_t zp = (int32_t)p[5], lo = (int32_t)p[6], hi = (int32_t)p[7];
    int64_t rows = n / c_;
    /* OpenMP as oneDNN: the engine set this thread's team size (tt_use_num_threads) */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        requant_row(acc + r * c_, y + r * c_, c_, bias, mult, shift, zp, lo, hi);
}

/* TFLite's CalculateActivationRangeQuantized for an int8 output (scale, zero point). */
static void activation_range(tt_activation act, float scale, int32_t zp, int32_t *lo, int32_t *hi) {
    *lo = -128;
    *hi = 127;
    if (act == TT_ACT_RELU || act == TT_ACT_RELU6) {
        int32_t z = zp + (int32_t)roundf(0.f / scale);
        if (z > *lo) *lo = z;
    }
    if (act == TT_ACT_RELU6) {
        int32_t six = zp + (int32_t)roundf(6.f / scale);
        if (six < *hi) *hi = six;
    }
}

tt_status tt_add_requant_step(tt_engine *e, int32_t i, dnnl_memory_t acc, dnnl_memory_t y, int64_t elements,
                              int64_t channels, const float *bias, const float *bias_scales, int32_t n_bias_scales,
                              float x_scale, const float *w_scales, int32_t n_w_scales, bool bias_in_file_units,
                              float y_scale, int32_t y_zp, tt_activation act) {
    int32_t *b = (int32_t *)tt_own_buffer(e, sizeof(int32_t) * (size_t)channels);
    int32_t *mult = (int32_t *)tt_own_buffer(e, sizeof(int32_t) * (size_t)channels);
    int32_t *shift = (int32_t *)tt_own_buffer(e, sizeof(int32_t) * (size_t)channels);
    if (!b || !mult || !shift) return tt_oom();
    for (int64_t c = 0; c < channels; c++) {
        /* The file's int32 bias: the reader stored bias_q * scale; |bias_q| < 2^22 round-trips.
         * Weights converted at build (uint8 files) have new scales: the accumulator is then in
         * units of x_scale * w_scale[c], and the bias is rounded to those units. */
        double ws = (double)w_scales[n_w_scales > 1 ? c : 0];
        double bs = !bias ? 0.0 : bias_in_file_units && n_bias_scales > 0
                        ? (double)bias_scales[n_bias_scales > 1 ? c : 0] : (double)x_scale * ws;
        b[c] = bias && bs > 0.0 ? (int32_t)lrint((double)bias[c] / bs) : 0;
        double real = (double)x_scale * ws / (double)y_scale;
        tt_quantize_multiplier(real, &mult[c], &shift[c]);
    }
    int32_t lo, hi;
    activation_range(act, y_scale, y_zp, &lo, &hi);
    (void)i;
    int64_t p[12] = {elements, channels, (int64_t)(intptr_t)b, (int64_t)(intptr_t)mult, (int64_t)(intptr_t)shift,
                     y_zp, lo, hi};
    return tt_add_c_step(e, requant_kernel, acc, y, p, 8);
}

/* p: [0] elements, [1] -zp_a, [2] -zp_b, [3] zp_y, [4] multiplier a, [5] shift a,
 * [6] multiplier b, [7] shift b, [8] multiplier y, [9] shift y, [10] clamp min, [11] clamp max.
 * args[0] a, args[2] b: s8 [elements] (same layout); args[1] y: s8 [elements]. */
static void add_kernel(const tt_step *s) {
    void *ap = NULL, *yp = NULL, *bp = NULL;
    dnnl_memory_get_data_handle(s->args[0].memory, &ap);
    dnnl_memory_get_data_handle(s->args[1].memory, &yp);
    dnnl_memory_get_data_handle(s->args[2].memory, &bp);
    const int8_t *a = (const int8_t *)ap, *b = (const int8_t *)bp;
    int8_t *y = (int8_t *)yp;
    const int64_t *p = s->p;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < p[0]; k++) {
        int32_t va = ((int32_t)p[1] + a[k]) * (1 << 20), vb = ((int32_t)p[2] + b[k]) * (1 << 20);
        int32_t sa = rdbpot(srdhm(va, (int32_t)p[4]), (int)-p[5]);
        int32_t sb = rdbpot(srdhm(vb, (int32_t)p[6]), (int)-p[7]);
        int32_t v = rdbpot(srdhm(sa + sb, (int32_t)p[8]), (int)-p[9]) + (int32_t)p[3];
        y[k] = (int8_t)(v < p[10] ? p[10] : v > p[11] ? p[11] : v);
    }
}

tt_status tt_add_int8_add_step(tt_engine *e, dnnl_memory_t a, dnnl_memory_t b, dnnl_memory_t y, int64_t elements,
                               float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float y_scale, int32_t y_zp,
                               tt_activation act) {
    /* TFLite's int8 ADD preparation (add.cc): inputs rescaled to twice the larger scale,
     * left-shifted by 20 bits, summed, then rescaled to the output. */
    double twice_max = 2.0 * (double)(a_scale > b_scale ? a_scale : b_scale);
    int32_t ma, sa, mb, sb, my, sy, lo, hi;
    tt_quantize_multiplier((double)a_scale / twice_max, &ma, &sa);
    tt_quantize_multiplier((double)b_scale / twice_max, &mb, &sb);
    tt_quantize_multiplier(twice_max / ((double)(1 << 20) * (double)y_scale), &my, &sy);
    activation_range(act, y_scale, y_zp, &lo, &hi);
    int64_t p[12] = {elements, -a_zp, -b_zp, y_zp, ma, sa, mb, sb, my, sy, lo, hi};
    tt_status s = tt_add_c_step(e, add_kernel, a, y, p, 12);
    if (s) return s;
    tt_step *st = &e->cur->s[e->cur->n - 1];
    st->args[2].arg = DNNL_ARG_SRC_1;
    st->args[2].memory = b;
    st->nargs = 3;
    return TT_OK;
}

/* p: [0] images N, [1] pixels H*W, [2] channels C, [3] input zero point, [4] multiplier,
 * [5] shift (1 / (H*W) folded in), [6] output zero point.
 * args[0] x: s8 [N, H*W, C] (NHWC, plain); args[1] y: s8 [N, C]. */
static void mean_kernel(const tt_step *s) {
    void *xp = NULL, *yp = NULL;
    dnnl_memory_get_data_handle(s->args[0].memory, &xp);
    dnnl_memory_get_data_handle(s->args[1].memory, &yp);
    const int8_t *x = (const int8_t *)xp;
    int8_t *y = (int8_t *)yp;
    const int64_t *p = s->p;
    int64_t hw = p[1], c = p[2];
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < p[0]; b++)
        for (int64_t k = 0; k < c; k++) {
            int32_t sum = 0;
            for (int64_t q = 0; q < hw; q++) sum += x[(b * hw + q) * c + k];
            int32_t v = mbqm(sum - (int32_t)p[3] * (int32_t)hw, (int32_t)p[4], (int32_t)p[5]) + (int32_t)p[6];
            y[b * c + k] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
        }
}

void tt_mean_multiplier(double real, int64_t count, int32_t *multiplier, int32_t *shift) {
    tt_quantize_multiplier(real, multiplier, shift);
    int32_t s = 63;
    while (s > 0 && !((uint64_t)count >> s)) s--; /* 63 - CountLeadingZeros(count) */
    if (s > 32) s = 32;
    if (s > 31 + *shift) s = 31 + *shift;
    *multiplier = (int32_t)(((int64_t)*multiplier << s) / count);
    *shift -= s;
}

tt_status tt_add_int8_mean_step(tt_engine *e, dnnl_memory_t x, dnnl_memory_t y, int64_t n, int64_t hw, int64_t c,
                                float x_scale, int32_t x_zp, float y_scale, int32_t y_zp) {
    int32_t m, sh;
    tt_mean_multiplier((double)x_scale / (double)y_scale, hw, &m, &sh);
    int64_t p[7] = {n, hw, c, x_zp, m, sh, y_zp};
    return tt_add_c_step(e, mean_kernel, x, y, p, 7);
}
