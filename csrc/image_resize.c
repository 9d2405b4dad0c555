/* image_resize.c - separable resampling following tf.image.resize (TF 2) and Keras' smart_resize.
 *
 * Every method is expressed as per-axis spans (first index + weights), applied first along W
 * (into a float scratch of in_h x out_w x c) then along H. Bilinear and nearest reproduce TF's
 * half-pixel rules; antialiased bilinear reproduces ScaleAndTranslate's triangle kernel. */
#include "tt_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fills start (out) and weight (out, *span) for one axis. Returns 0 or -1 on OOM. */
static int axis_spans(int in, int out, tt_interpolation method, int antialias, int *span_out, int32_t **start_out,
                      float **weight_out) {
    const float scale = (float)in / (float)out; /* input pixels per output pixel, as TF (float) */
    int span;
    if (method == TT_NEAREST) {
        span = 1;
    } else if (!antialias) {
        span = 2;
    } else {
        float kscale = scale > 1.0f ? scale : 1.0f;
        span = 2 * (int)ceilf(kscale) + 1;
    }
    if (span > in) span = in; /* a span never reaches outside the input */
    int32_t *start = (int32_t *)calloc((size_t)out, sizeof *start);
    float *weight = (float *)calloc((size_t)out * (size_t)span, sizeof *weight);
    if (!start || !weight) {
        free(start);
        free(weight);
        return -1;
    }
    for (int o = 0; o < out; o++) {
        float *wt = weight + (size_t)o * span;
        if (method == TT_NEAREST) {
            long i = (long)floorf(((float)o + 0.5f) * scale);
            if (i > in - 1) i = in - 1;
            if (i < 0) i = 0;
            start[o] = (int32_t)i;
            wt[0] = 1.0f;
        } else if (!antialias) {
            float src = ((float)o + 0.5f) * scale - 0.5f;
            float f = floorf(src);
            long lo = (long)f, hi = (long)ceilf(src);
            if (lo < 0) lo = 0;
            if (hi > in - 1) hi = in - 1;
            if (lo > in - 1) lo = in - 1;
            if (hi < 0) hi = 0;
            float lerp = src - f;
            start[o] = (int32_t)lo;
            wt[0] += 1.0f - lerp;
            wt[hi - lo] += lerp; /* hi - lo is 0 or 1 */
        } else {
            /* ScaleAndTranslate(scale = out/in as float32, translation 0, "triangle", antialias=True):
             * TF inverts the float scale, so we do too (1/(out/in) != in/out in float32). */
            const float fscale = (float)out / (float)in;
            const float inv_scale = 1.0f / fscale;
            const float kscale = inv_scale > 1.0f ? inv_scale : 1.0f;
            const float one_over_kscale = 1.0f / kscale;
            const float radius = 1.0f * kscale;
            const float sample = ((float)o + 0.5f) * inv_scale;
            start[o] = 0;
            if (sample < 0.0f || sample > (float)in) continue; /* empty span: zeros */
            long s0 = (long)ceilf(sample - radius - 0.5f);
            long s1 = (long)floorf(sample + radius - 0.5f);
            if (s0 < 0) s0 = 0;
            if (s0 > in - 1) s0 = in - 1;
            if (s1 < 0) s1 = 0;
            if (s1 > in - 1) s1 = in - 1;
            s1 += 1;
            if (s1 - s0 > span) s1 = s0 + span; /* cannot happen for the triangle kernel */
            float total = 0.0f;
            for (long s = s0; s < s1; s++) {
                float x = fabsf(((float)s + 0.5f - sample) * one_over_kscale);
                float v = x < 1.0f ? 1.0f - x : 0.0f;
                wt[s - s0] = v;
                total += v;
            }
            if (fabsf(total) >= 1000.0f * 1.17549435e-38f) {
                float inv = 1.0f / total;
                for (long s = s0; s < s1; s++) wt[s - s0] *= inv;
            } else {
                for (long s = s0; s < s1; s++) wt[s - s0] = 0.0f;
            }
            start[o] = (int32_t)s0;
        }
        /* keep the span inside the input: shift left if it would run past the end (weights there are 0) */
        if (start[o] + span > in) {
            int shift = start[o] + span - in;
            for (int k = span - 1; k >= 0; k--) wt[k] = k - shift >= 0 ? wt[k - shift] : 0.0f;
            start[o] -= shift;
        }
    }
    *span_out = span;
    *start_out = start;
    *weight_out = weight;
    return 0;
}

tt_status tt_resize_create(int in_h, int in_w, int out_h, int out_w, tt_interpolation method, int antialias,
                           tt_resize **out) {
    *out = NULL;
    if (in_h <= 0 || in_w <= 0 || out_h <= 0 || out_w <= 0)
        return tt_error(TT_INVALID_ARGUMENT, "resize sizes must be positive. Received: input %dx%d, output %dx%d",
                        in_h, in_w, out_h, out_w);
    if (method != TT_BILINEAR && method != TT_NEAREST)
        return tt_error(TT_INVALID_ARGUMENT, "unknown interpolation %d", (int)method);
    tt_resize *p = (tt_resize *)calloc(1, sizeof *p);
    if (!p) goto oom;
    p->in_h = in_h;
    p->in_w = in_w;
    p->out_h = out_h;
    p->out_w = out_w;
    if (axis_spans(in_h, out_h, method, antialias, &p->span_h, &p->start_h, &p->weight_h) < 0) goto oom;
    if (axis_spans(in_w, out_w, method, antialias, &p->span_w, &p->start_w, &p->weight_w) < 0) goto oom;
    *out = p;
    return TT_OK;
oom:
    tt_resize_destroy(p);
    return tt_error(TT_OUT_OF_MEMORY, "out of memory building a %dx%d -> %dx%d resize", in_h, in_w, out_h, out_w);
}

void tt_resize_destroy(tt_resize *p) {
    if (!p) return;
    free(p->start_h);
    free(p->start_w);
    free(p->weight_h);
    free(p->weight_w);
    free(p);
}

size_t tt_resize_scratch_floats(const tt_resize *p, int channels) {
    return (size_t)p->in_h * (size_t)p->out_w * (size_t)channels;
}

static inline uint8_t to_u8(float v) {
    if (!(v > 0.0f)) return 0; /* also NaN -> 0 */
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

void tt_resize_forward(const tt_resize *p, const void *src, tt_dtype src_dtype, int64_t src_row_stride,
                       int channels, void *dst, tt_dtype dst_dtype, float *scratch) {
    const int c = channels, ow = p->out_w, sw = p->span_w, sh = p->span_h;
    /* pass 1: along W, every input row -> scratch (in_h, out_w, c) */
    for (int y = 0; y < p->in_h; y++) {
        float *row = scratch + (size_t)y * ow * c;
        if (src_dtype == TT_U8) {
            const uint8_t *s = (const uint8_t *)src + (size_t)y * src_row_stride;
            for (int o = 0; o < ow; o++) {
                const float *wt = p->weight_w + (size_t)o * sw;
                const uint8_t *sp = s + (size_t)p->start_w[o] * c;
                for (int ch = 0; ch < c; ch++) {
                    float acc = 0.0f;
                    for (int k = 0; k < sw; k++) acc += wt[k] * (float)sp[k * c + ch];
                    row[o * c + ch] = acc;
                }
            }
        } else {
            const float *s = (const float *)src + (size_t)y * src_row_stride;
            for (int o = 0; o < ow; o++) {
                const float *wt = p->weight_w + (size_t)o * sw;
                const float *sp = s + (size_t)p->start_w[o] * c;
                for (int ch = 0; ch < c; ch++) {
                    float acc = 0.0f;
                    for (int k = 0; k < sw; k++)
                        if (wt[k] != 0.0f) acc += wt[k] * sp[k * c + ch]; /* skip 0 * inf/nan of unused taps */
                    row[o * c + ch] = acc;
                }
            }
        }
    }
    /* pass 2: along H, scratch -> dst (out_h, out_w, c) */
    const size_t rowlen = (size_t)ow * c;
    for (int o = 0; o < p->out_h; o++) {
        const float *wt = p->weight_h + (size_t)o * sh;
        const float *base = scratch + (size_t)p->start_h[o] * rowlen;
        if (dst_dtype == TT_F32) {
            float *d = (float *)dst + (size_t)o * rowlen;
            for (size_t i = 0; i < rowlen; i++) d[i] = 0.0f;
            for (int k = 0; k < sh; k++) {
                if (wt[k] == 0.0f) continue;
                const float *r = base + (size_t)k * rowlen;
                for (size_t i = 0; i < rowlen; i++) d[i] += wt[k] * r[i];
            }
        } else {
            uint8_t *d = (uint8_t *)dst + (size_t)o * rowlen;
            for (size_t i = 0; i < rowlen; i++) {
                float acc = 0.0f;
                for (int k = 0; k < sh; k++)
                    if (wt[k] != 0.0f) acc += wt[k] * base[(size_t)k * rowlen + i];
                d[i] = to_u8(acc);
            }
        }
    }
}

void tt_crop_box_for_aspect(int h, int w, int target_h, int target_w, int *y0, int *x0, int *crop_h, int *crop_w) {
    /* keras.utils.image_utils.smart_resize: int() truncation of float products */
    int ch = (int)((double)w * target_h / target_w);
    int cw = (int)((double)h * target_w / target_h);
    if (ch > h) ch = h;
    if (cw > w) cw = w;
    if (ch < 1) ch = 1;
    if (cw < 1) cw = 1;
    *crop_h = ch;
    *crop_w = cw;
    *y0 = (int)((double)(h - ch) / 2);
    *x0 = (int)((double)(w - cw) / 2);
}

tt_status tt_resize_image(const void *src, tt_dtype src_dtype, int in_h, int in_w, int channels, void *dst,
                          tt_dtype dst_dtype, int out_h, int out_w, tt_interpolation method, int antialias,
                          int crop_to_aspect_ratio) {
    int y0 = 0, x0 = 0, ch = in_h, cw = in_w;
    if (crop_to_aspect_ratio) tt_crop_box_for_aspect(in_h, in_w, out_h, out_w, &y0, &x0, &ch, &cw);
    tt_resize *plan = NULL;
    tt_status s = tt_resize_create(ch, cw, out_h, out_w, method, antialias, &plan);
    if (s != TT_OK) return s;
    float *scratch = (float *)malloc(tt_resize_scratch_floats(plan, channels) * sizeof(float));
    if (!scratch) {
        tt_resize_destroy(plan);
        return tt_error(TT_OUT_OF_MEMORY, "out of memory resizing %dx%d -> %dx%d", in_h, in_w, out_h, out_w);
    }
    size_t esz = src_dtype == TT_U8 ? 1 : sizeof(float);
    const char *base = (const char *)src + ((size_t)y0 * in_w + (size_t)x0) * channels * esz;
    tt_resize_forward(plan, base, src_dtype, (int64_t)in_w * channels, channels, dst, dst_dtype, scratch);
    free(scratch);
    tt_resize_destroy(plan);
    return TT_OK;
}
