/* image_resize.c - separable resampling following tf.image.resize (TF 2) and Keras' smart_resize.
 *
 * Every method is expressed as per-axis spans (first index + weights), applied first along W
 * (into a float scratch of in_h x out_w x c) then along H. Bilinear and nearest reproduce TF's
 * half-pixel rules; antialiased bilinear reproduces ScaleAndTranslate's triangle kernel. */
#include "image/tt_image.h"

#include <math.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
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
    /* W-first: in_h rows of the W pass + one accumulation row; H-first: one input-width row + one
     * output row. Enough for both. */
    return (((size_t)p->in_h + 1) * (size_t)p->out_w + (size_t)p->in_w) * (size_t)channels;
}

/* Branch-free so that loops using it vectorize; NaN -> 0. */
static inline uint8_t to_u8(float v) {
    v = v > 0.0f ? v : 0.0f; /* compiles to maxps/minps; NaN -> 0 */
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int32_t)(v + 0.5f);
}

/* d[i] = to_u8(a[i]) for a row; SSE2 when available (GCC does not vectorize the clamps). */
static void row_to_u8(const float *restrict a, uint8_t *restrict d, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.0f), half = _mm_set1_ps(0.5f);
    for (; i + 16 <= n; i += 16) {
        __m128i q[4];
        for (int k = 0; k < 4; k++) {
            __m128 v = _mm_max_ps(_mm_loadu_ps(a + i + 4 * k), zero); /* NaN -> 0 (second operand) */
            v = _mm_min_ps(v, top);
            q[k] = _mm_cvttps_epi32(_mm_add_ps(v, half));
        }
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])));
    }
#endif
    for (; i < n; i++) d[i] = to_u8(a[i]);
}

/* W pass of one row of uint8 pixels: s (in_w, c) -> row (out_w, c). The 2-tap RGB case (bilinear
 * downscale/upscale, the loader's hot path) is unrolled. */
static void wpass_u8(const tt_resize *p, const uint8_t *restrict s, float *restrict row, int c) {
    const int ow = p->out_w, sw = p->span_w;
    const int32_t *st = p->start_w;
    const float *wt = p->weight_w;
    if (c == 3 && sw == 2) {
        for (int o = 0; o < ow; o++) {
            const uint8_t *sp = s + (size_t)st[o] * 3;
            const float w0 = wt[2 * o], w1 = wt[2 * o + 1];
            row[3 * o + 0] = w0 * (float)sp[0] + w1 * (float)sp[3];
            row[3 * o + 1] = w0 * (float)sp[1] + w1 * (float)sp[4];
            row[3 * o + 2] = w0 * (float)sp[2] + w1 * (float)sp[5];
        }
    } else if (c == 3) {
        for (int o = 0; o < ow; o++) {
            const uint8_t *sp = s + (size_t)st[o] * 3;
            const float *w = wt + (size_t)o * sw;
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
            for (int k = 0; k < sw; k++) {
                a0 += w[k] * (float)sp[3 * k];
                a1 += w[k] * (float)sp[3 * k + 1];
                a2 += w[k] * (float)sp[3 * k + 2];
            }
            row[3 * o] = a0;
            row[3 * o + 1] = a1;
            row[3 * o + 2] = a2;
        }
    } else {
        for (int o = 0; o < ow; o++) {
            const uint8_t *sp = s + (size_t)st[o] * c;
            const float *w = wt + (size_t)o * sw;
            for (int ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int k = 0; k < sw; k++) acc += w[k] * (float)sp[k * c + ch];
                row[o * c + ch] = acc;
            }
        }
    }
}

static void wpass_f32(const tt_resize *p, const float *restrict s, float *restrict row, int c) {
    const int ow = p->out_w, sw = p->span_w;
    if (c == 3 && sw == 2) { /* both taps are inside the row (spans are shifted in), values finite here */
        for (int o = 0; o < ow; o++) {
            const float *sp = s + (size_t)p->start_w[o] * 3;
            const float w0 = p->weight_w[2 * o], w1 = p->weight_w[2 * o + 1];
            row[3 * o + 0] = w0 * sp[0] + w1 * sp[3];
            row[3 * o + 1] = w0 * sp[1] + w1 * sp[4];
            row[3 * o + 2] = w0 * sp[2] + w1 * sp[5];
        }
        return;
    }
    for (int o = 0; o < ow; o++) {
        const float *w = p->weight_w + (size_t)o * sw;
        const float *sp = s + (size_t)p->start_w[o] * c;
        for (int ch = 0; ch < c; ch++) {
            float acc = 0.0f;
            for (int k = 0; k < sw; k++)
                if (w[k] != 0.0f) acc += w[k] * sp[k * c + ch]; /* skip 0 * inf/nan of unused taps */
            row[o * c + ch] = acc;
        }
    }
}

/* H pass first, for uint8 sources that shrink vertically (the loader's case): each output row
 * combines sh input rows (contiguous, vectorized uint8 -> float), then one W pass on that row. */
static void resize_hfirst_u8(const tt_resize *p, const uint8_t *src, int64_t stride, int c, void *dst,
                             tt_dtype dst_dtype, float *scratch) {
    const int sh = p->span_h;
    const size_t inrow = (size_t)p->in_w * c, outrow = (size_t)p->out_w * c;
    float *restrict col = scratch;       /* (in_w, c) */
    float *restrict acc = scratch + inrow; /* (out_w, c) */
    for (int o = 0; o < p->out_h; o++) {
        const float *wt = p->weight_h + (size_t)o * sh;
        const uint8_t *restrict r0 = src + (size_t)p->start_h[o] * stride;
        const float w0 = wt[0];
        if (sh >= 2) {
            const uint8_t *restrict r1 = r0 + stride;
            const float w1 = wt[1];
            for (size_t i = 0; i < inrow; i++) col[i] = w0 * (float)r0[i] + w1 * (float)r1[i];
        } else {
            for (size_t i = 0; i < inrow; i++) col[i] = w0 * (float)r0[i];
        }
        for (int k = 2; k < sh; k++) {
            if (wt[k] == 0.0f) continue;
            const uint8_t *restrict rk = r0 + (size_t)k * stride;
            const float wk = wt[k];
            for (size_t i = 0; i < inrow; i++) col[i] += wk * (float)rk[i];
        }
        if (dst_dtype == TT_F32) {
            wpass_f32(p, col, (float *)dst + (size_t)o * outrow, c);
        } else {
            wpass_f32(p, col, acc, c);
            row_to_u8(acc, (uint8_t *)dst + (size_t)o * outrow, outrow);
        }
    }
}

void tt_resize_forward(const tt_resize *p, const void *src, tt_dtype src_dtype, int64_t src_row_stride,
                       int channels, void *dst, tt_dtype dst_dtype, float *scratch) {
    const int c = channels, sh = p->span_h;
    const size_t rowlen = (size_t)p->out_w * c;
    if (src_dtype == TT_U8 && p->out_h <= p->in_h) {
        resize_hfirst_u8(p, (const uint8_t *)src, src_row_stride, c, dst, dst_dtype, scratch);
        return;
    }
    /* W pass: every input row -> scratch (in_h, out_w, c) */
    for (int y = 0; y < p->in_h; y++) {
        float *row = scratch + (size_t)y * rowlen;
        if (src_dtype == TT_U8)
            wpass_u8(p, (const uint8_t *)src + (size_t)y * src_row_stride, row, c);
        else
            wpass_f32(p, (const float *)src + (size_t)y * src_row_stride, row, c);
    }
    /* H pass: scratch -> dst (out_h, out_w, c), accumulating in a float row */
    float *restrict acc = scratch + (size_t)p->in_h * rowlen;
    for (int o = 0; o < p->out_h; o++) {
        const float *wt = p->weight_h + (size_t)o * sh;
        const float *base = scratch + (size_t)p->start_h[o] * rowlen;
        float *restrict d = dst_dtype == TT_F32 ? (float *)dst + (size_t)o * rowlen : acc;
        if (sh >= 2) {
            const float *restrict r0 = base, *restrict r1 = base + rowlen;
            const float w0 = wt[0], w1 = wt[1];
            for (size_t i = 0; i < rowlen; i++) d[i] = w0 * r0[i] + w1 * r1[i];
            for (int k = 2; k < sh; k++) {
                if (wt[k] == 0.0f) continue;
                const float *restrict r = base + (size_t)k * rowlen;
                const float wk = wt[k];
                for (size_t i = 0; i < rowlen; i++) d[i] += wk * r[i];
            }
        } else {
            const float w0 = wt[0];
            for (size_t i = 0; i < rowlen; i++) d[i] = w0 * base[i];
        }
        if (dst_dtype == TT_U8) {
            uint8_t *restrict d8 = (uint8_t *)dst + (size_t)o * rowlen;
            row_to_u8(acc, d8, rowlen);
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
