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
    int64_t dims[DNNL_MAX_NDIMS], strides[DNNL_MAX_NDIMS];
    if (!ymd) return -1;
    int nd = tt_md_ndims(ymd);
    tt_md_dims(ymd, dims);
    const dnnl_dims_t *st_ = NULL;
    dnnl_memory_desc_query(ymd, dnnl_query_strides, &st_);
    memcpy(strides, *st_, sizeof(int64_t) * (size_t)nd);
    dnnl_memory_desc_t y8 = NULL;
    if (dnnl_memory_desc_create_with_strides(&y8, nd, dims, dnnl_s8, strides) != dnnl_success) {
        tt_error(TT_RUNTIME_ERROR, "operator %d: int8 descriptor", i);
        return -1;
    }
    dnnl_memory_desc_t ymd8 = tt_md_clone(e, y8);
    dnnl_memory_desc_destroy(y8);
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
