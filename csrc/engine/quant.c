/* quant.c - helpers of int8 engines (see tt_build.h): the file's quantization
 * parameters as oneDNN runtime arguments, and exact s8 copies of the weights.
 *
 * oneDNN's int8 convolution (oneDNN 3.2, "Quantization" in the developer guide):
 *   dst = round(post_ops(src_scale * wei_scale[oc] * sum((src - src_zp) * wei) + bias) / dst_scale) + dst_zp
 * which is TFLite's affine scheme real = scale * (q - zero_point) with symmetric
 * per-channel int8 weights, a float bias (the file's int32 bias times
 * input_scale * weight_scale, i.e. the dequantized bias the reader stores) and
 * per-tensor activation scales and zero points.
 */
#include "engine/tt_build.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tt_status tt_tensor_qparams(tt_engine *e, int32_t i, int32_t t, float *scale, int32_t *zp) {
    const tt_tensor *x = &e->model->tensors[t];
    if (x->quant.n != 1 || !(x->quant.scale[0] > 0.f))
        return tt_error(TT_UNSUPPORTED, "operator %d: int8 needs a per-tensor quantized activation, but tensor %d "
                        "('%s') has %d quantization scales", i, t, x->name, x->quant.n);
    *scale = x->quant.scale[0];
    *zp = (int32_t)x->quant.zero_point[0];
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

const int8_t *tt_weights_s8(tt_engine *e, int32_t i, int32_t t, const float **scales, int32_t *n_scales) {
    const tt_tensor *w = &e->model->tensors[t];
    const tt_quant *q = &w->quant;
    if (w->type != TT_TFLITE_INT8 || q->n < 1 || !w->data) {
        tt_error(TT_UNSUPPORTED, "operator %d: int8 needs int8 weights with scales; tensor %d ('%s') is %s", i, t,
                 w->name, w->type == TT_TFLITE_UINT8 ? "uint8 (per-tensor, non-zero zero point: not supported by "
                 "oneDNN's int8 convolutions, which take symmetric s8 weights)" : "not int8");
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
