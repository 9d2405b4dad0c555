/* augment.c - batched augmentation kernels of Keras' preprocessing layers (RandomFlip,
 * RandomRotation/Zoom/Translation via a projective warp, RandomCrop, RandomBrightness,
 * RandomContrast) for uint8 and float32 NHWC batches. Random parameters are drawn by the
 * caller (Python, a seeded NumPy Generator per layer); these kernels are deterministic.
 * One pool item per image. Float math is float32 as in TF; uint8 outputs round half up and
 * saturate. */
#include "image/tt_image.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static inline uint8_t to_u8(float v) {
    v = v > 0.0f ? v : 0.0f; /* NaN -> 0 */
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int32_t)(v + 0.5f);
}

static tt_status check_batch(const char *op, int64_t n, int h, int w, int c, tt_dtype dt) {
    if (n < 0 || h <= 0 || w <= 0 || c <= 0)
        return tt_error(TT_INVALID_ARGUMENT, "%s: bad batch shape (%lld, %d, %d, %d)", op, (long long)n, h, w, c);
    if (dt != TT_U8 && dt != TT_F32) return tt_error(TT_INVALID_ARGUMENT, "%s: dtype must be uint8 or float32", op);
    return TT_OK;
}

/* ------------------------------------------------------------------ flip */

typedef struct flip_ctx {
    const uint8_t *x; /* (n, h, w, c) elements of esz bytes */
    uint8_t *y;       /* (n, h, w, c) */
    size_t esz;
    int h, w, c;
    const uint8_t *flags; /* (n, 2): horizontal, vertical */
} flip_ctx;

static void flip_item(void *vctx, int64_t i) {
    const flip_ctx *k = (const flip_ctx *)vctx;
    const size_t pix = (size_t)k->c * k->esz, row = (size_t)k->w * pix, img = (size_t)k->h * row;
    const uint8_t *x = k->x + (size_t)i * img;
    uint8_t *y = k->y + (size_t)i * img;
    const int fh = k->flags[2 * i] != 0, fv = k->flags[2 * i + 1] != 0;
    for (int r = 0; r < k->h; r++) {
        const uint8_t *src = x + (size_t)(fv ? k->h - 1 - r : r) * row;
        uint8_t *dst = y + (size_t)r * row;
        if (!fh) {
            memcpy(dst, src, row);
        } else {
            for (int q = 0; q < k->w; q++) memcpy(dst + (size_t)q * pix, src + (size_t)(k->w - 1 - q) * pix, pix);
        }
    }
}

tt_status tt_flip_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                          const uint8_t *flags) {
    tt_status s = check_batch("flip", n, h, w, c, dtype);
    if (s != TT_OK) return s;
    flip_ctx k = {(const uint8_t *)x, (uint8_t *)y, dtype == TT_U8 ? 1 : sizeof(float), h, w, c, flags};
    return tt_pool_run(pool, flip_item, &k, n);
}

/* ------------------------------------------------------------------ projective warp */

/* Maps a coordinate into [0, len - 1] per fill mode, as TF's MapCoordinate functors. */
static inline float map_coord(float v, int len, tt_fill_mode mode) {
    const float flen = (float)len;
    if (mode == TT_FILL_REFLECT) {
        if (v < 0.0f) {
            if (len <= 1) {
                v = 0.0f;
            } else {
                const float sz2 = 2.0f * flen;
                if (v < -sz2) v = sz2 * (float)(int64_t)(-v / sz2) + v;
                v = (v < -flen) ? v + sz2 : -v - 1.0f;
            }
        } else if (v > flen - 1.0f) {
            if (len <= 1) {
                v = 0.0f;
            } else {
                const float sz2 = 2.0f * flen;
                v -= sz2 * (float)(int64_t)(v / sz2);
                if (v >= flen) v = sz2 - v - 1.0f;
            }
        }
    } else if (mode == TT_FILL_WRAP) {
        if (v < 0.0f) {
            if (len <= 1) {
                v = 0.0f;
            } else {
                const float sz = flen - 1.0f;
                v += flen * ((float)(int64_t)(-v / sz) + 1.0f);
            }
        } else if (v > flen - 1.0f) {
            if (len <= 1) {
                v = 0.0f;
            } else {
                const float sz = flen - 1.0f;
                v -= flen * (float)(int64_t)(v / sz);
            }
        }
    } else if (mode == TT_FILL_CONSTANT) {
        return v; /* out-of-range reads give fill_value */
    }
    /* clamp (NEAREST mode, and the half-pixel leftovers of reflect/wrap) */
    if (v < 0.0f) v = 0.0f;
    if (v > flen - 1.0f) v = flen - 1.0f;
    return v;
}

typedef struct affine_ctx {
    const void *x; /* (n, h, w, c) */
    void *y;       /* (n, oh, ow, c) */
    tt_dtype dt;
    int h, w, c, oh, ow;
    const float *tr; /* (n, 8) */
    tt_interpolation method;
    tt_fill_mode mode;
    float fill;
} affine_ctx;

/* floorf / roundf without libm calls (x86-64 baseline lacks SSE4.1 roundss); exact for |v| < 2^31,
 * which the caller guarantees (|coordinates| <= 1e9). roundf rounds halves away from zero, as
 * TF's std::round. */
static inline float fast_floor(float v) {
    float t = (float)(int64_t)v;
    return t > v ? t - 1.0f : t;
}

static inline int64_t fast_round(float v) {
    int64_t t = (int64_t)v;
    float frac = v - (float)t; /* exact */
    if (frac >= 0.5f) t += 1;
    if (frac <= -0.5f) t -= 1;
    return t;
}

/* One output pixel from up to 4 weighted input pixels (offsets in elements; -1 = outside: fill). */
static inline void blend_store(const affine_ctx *k, size_t xbase, size_t o, const int64_t off[4],
                               const float wgt[4], int taps) {
    const int c = k->c;
    if (k->dt == TT_U8) {
        const uint8_t *x = (const uint8_t *)k->x + xbase;
        uint8_t *y = (uint8_t *)k->y + o;
        for (int ch = 0; ch < c; ch++) {
            float v[4];
            for (int t = 0; t < taps; t++) v[t] = off[t] >= 0 ? (float)x[off[t] + ch] : k->fill;
            y[ch] = to_u8(taps == 1 ? v[0] : wgt[0] * (wgt[1] * v[0] + wgt[2] * v[1]) + wgt[3] * (wgt[1] * v[2] + wgt[2] * v[3]));
        }
    } else {
        const float *x = (const float *)k->x + xbase;
        float *y = (float *)k->y + o;
        for (int ch = 0; ch < c; ch++) {
            float v[4];
            for (int t = 0; t < taps; t++) v[t] = off[t] >= 0 ? x[off[t] + ch] : k->fill;
            y[ch] = taps == 1 ? v[0] : wgt[0] * (wgt[1] * v[0] + wgt[2] * v[1]) + wgt[3] * (wgt[1] * v[2] + wgt[2] * v[3]);
        }
    }
}

static inline int64_t offset_or_fill(const affine_ctx *k, int64_t yy, int64_t xx) {
    if (yy < 0 || yy >= k->h || xx < 0 || xx >= k->w) return -1;
    return (yy * k->w + xx) * k->c;
}

static void affine_item(void *vctx, int64_t i) {
    const affine_ctx *k = (const affine_ctx *)vctx;
    const float *t = k->tr + 8 * i;
    const size_t xbase = (size_t)i * k->h * k->w * k->c;
    const size_t ybase = (size_t)i * k->oh * k->ow * k->c;
    const int64_t none[4] = {-1, -1, -1, -1};
    const float one[4] = {1.0f, 0.0f, 0.0f, 0.0f};
    for (int yo = 0; yo < k->oh; yo++) {
        for (int xo = 0; xo < k->ow; xo++) {
            const size_t o = ybase + ((size_t)yo * k->ow + xo) * k->c;
            const float fx = (float)xo, fy = (float)yo;
            const float proj = t[6] * fx + t[7] * fy + 1.0f;
            if (proj == 0.0f) {
                blend_store(k, xbase, o, none, one, 1);
                continue;
            }
            const float in_x = (t[0] * fx + t[1] * fy + t[2]) / proj;
            const float in_y = (t[3] * fx + t[4] * fy + t[5]) / proj;
            /* absurd transforms (inf, NaN, beyond 1e9 px) give fill_value; this also keeps the
             * float -> int64 conversions below defined */
            if (!(fabsf(in_x) <= 1e9f) || !(fabsf(in_y) <= 1e9f)) {
                blend_store(k, xbase, o, none, one, 1);
                continue;
            }
            const float mx = map_coord(in_x, k->w, k->mode);
            const float my = map_coord(in_y, k->h, k->mode);
            if (k->method == TT_NEAREST) {
                const int64_t off[4] = {offset_or_fill(k, fast_round(my), fast_round(mx)), -1, -1, -1};
                blend_store(k, xbase, o, off, one, 1);
            } else {
                /* TF's order: (y1 - y) * [(x1 - x) f00 + (x - x0) f01] + (y - y0) * [(x1 - x) f10 + (x - x0) f11] */
                const float y0 = fast_floor(my), x0 = fast_floor(mx);
                const int64_t iy0 = (int64_t)y0, ix0 = (int64_t)x0;
                const int64_t off[4] = {offset_or_fill(k, iy0, ix0), offset_or_fill(k, iy0, ix0 + 1),
                                        offset_or_fill(k, iy0 + 1, ix0), offset_or_fill(k, iy0 + 1, ix0 + 1)};
                const float wgt[4] = {(y0 + 1.0f) - my, (x0 + 1.0f) - mx, mx - x0, my - y0};
                blend_store(k, xbase, o, off, wgt, 4);
            }
        }
    }
}

tt_status tt_affine_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                            const float *transforms, int out_h, int out_w, tt_interpolation method,
                            tt_fill_mode fill_mode, float fill_value) {
    tt_status s = check_batch("affine transform", n, h, w, c, dtype);
    if (s != TT_OK) return s;
    if (out_h <= 0 || out_w <= 0)
        return tt_error(TT_INVALID_ARGUMENT, "affine transform: output size must be positive, got %dx%d", out_h,
                        out_w);
    if (fill_mode < TT_FILL_REFLECT || fill_mode > TT_FILL_NEAREST)
        return tt_error(TT_INVALID_ARGUMENT, "affine transform: unknown fill_mode %d", (int)fill_mode);
    if (method != TT_BILINEAR && method != TT_NEAREST)
        return tt_error(TT_INVALID_ARGUMENT, "affine transform: unknown interpolation %d", (int)method);
    affine_ctx k = {x, y, dtype, h, w, c, out_h, out_w, transforms, method, fill_mode, fill_value};
    return tt_pool_run(pool, affine_item, &k, n);
}

/* ------------------------------------------------------------------ crop */

typedef struct crop_ctx {
    const uint8_t *x; /* (n, h, w, c) */
    uint8_t *y;       /* (n, oh, ow, c) */
    size_t esz;
    int h, w, c, oh, ow;
    const int32_t *off; /* (n, 2) */
} crop_ctx;

static void crop_item(void *vctx, int64_t i) {
    const crop_ctx *k = (const crop_ctx *)vctx;
    const size_t pix = (size_t)k->c * k->esz;
    const uint8_t *x = k->x + (size_t)i * k->h * k->w * pix;
    uint8_t *y = k->y + (size_t)i * k->oh * k->ow * pix;
    const int oy = k->off[2 * i], ox = k->off[2 * i + 1];
    for (int r = 0; r < k->oh; r++)
        memcpy(y + (size_t)r * k->ow * pix, x + ((size_t)(oy + r) * k->w + (size_t)ox) * pix, (size_t)k->ow * pix);
}

tt_status tt_crop_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                          const int32_t *offsets, int out_h, int out_w) {
    tt_status s = check_batch("crop", n, h, w, c, dtype);
    if (s != TT_OK) return s;
    if (out_h <= 0 || out_w <= 0 || out_h > h || out_w > w)
        return tt_error(TT_INVALID_ARGUMENT, "crop: size %dx%d does not fit in %dx%d", out_h, out_w, h, w);
    for (int64_t i = 0; i < n; i++) {
        int oy = offsets[2 * i], ox = offsets[2 * i + 1];
        if (oy < 0 || ox < 0 || oy + out_h > h || ox + out_w > w)
            return tt_error(TT_INVALID_ARGUMENT, "crop: offset (%d, %d) of image %lld out of range", oy, ox,
                            (long long)i);
    }
    crop_ctx k = {(const uint8_t *)x, (uint8_t *)y, dtype == TT_U8 ? 1 : sizeof(float), h, w, c, out_h, out_w,
                  offsets};
    return tt_pool_run(pool, crop_item, &k, n);
}

/* ------------------------------------------------------------------ brightness / contrast */

typedef struct color_ctx {
    const void *x; /* (n, h, w, c) */
    void *y;       /* (n, h, w, c), may alias x */
    tt_dtype dt;
    int h, w, c;
    const float *param; /* (n) */
    float lo, hi;
} color_ctx;

static inline float clipf(float v, float lo, float hi) { v = v < lo ? lo : v; return v > hi ? hi : v; }

static void brightness_item(void *vctx, int64_t i) {
    const color_ctx *k = (const color_ctx *)vctx;
    const size_t len = (size_t)k->h * k->w * k->c, base = (size_t)i * len;
    const float d = k->param[i], lo = k->lo, hi = k->hi;
    if (k->dt == TT_U8) {
        const uint8_t *x = (const uint8_t *)k->x + base;
        uint8_t *y = (uint8_t *)k->y + base;
        for (size_t j = 0; j < len; j++) y[j] = to_u8(clipf((float)x[j] + d, lo, hi));
    } else {
        const float *x = (const float *)k->x + base;
        float *y = (float *)k->y + base;
        for (size_t j = 0; j < len; j++) y[j] = clipf(x[j] + d, lo, hi);
    }
}

static void contrast_item(void *vctx, int64_t i) {
    const color_ctx *k = (const color_ctx *)vctx;
    const int c = k->c;
    const size_t npix = (size_t)k->h * k->w, base = (size_t)i * npix * c;
    const float f = k->param[i], lo = k->lo, hi = k->hi;
    for (int ch = 0; ch < c; ch++) {
        double acc = 0.0; /* double: exact sums of up to 2^29 uint8 values, no float drift */
        if (k->dt == TT_U8) {
            const uint8_t *x = (const uint8_t *)k->x + base + ch;
            for (size_t p = 0; p < npix; p++) acc += x[p * c];
        } else {
            const float *x = (const float *)k->x + base + ch;
            for (size_t p = 0; p < npix; p++) acc += x[p * c];
        }
        const float m = (float)(acc / (double)npix);
        if (k->dt == TT_U8) {
            const uint8_t *x = (const uint8_t *)k->x + base + ch;
            uint8_t *y = (uint8_t *)k->y + base + ch;
            for (size_t p = 0; p < npix; p++) y[p * c] = to_u8(clipf(((float)x[p * c] - m) * f + m, lo, hi));
        } else {
            const float *x = (const float *)k->x + base + ch;
            float *y = (float *)k->y + base + ch;
            for (size_t p = 0; p < npix; p++) y[p * c] = clipf((x[p * c] - m) * f + m, lo, hi);
        }
    }
}

tt_status tt_brightness_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w,
                                int c, const float *delta, float lo, float hi) {
    tt_status s = check_batch("brightness", n, h, w, c, dtype);
    if (s != TT_OK) return s;
    color_ctx k = {x, y, dtype, h, w, c, delta, lo, hi};
    return tt_pool_run(pool, brightness_item, &k, n);
}

tt_status tt_contrast_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w,
                              int c, const float *factor, float lo, float hi) {
    tt_status s = check_batch("contrast", n, h, w, c, dtype);
    if (s != TT_OK) return s;
    color_ctx k = {x, y, dtype, h, w, c, factor, lo, hi};
    return tt_pool_run(pool, contrast_item, &k, n);
}

/* ------------------------------------------------------------------ batched resize */

typedef struct resize_ctx {
    const uint8_t *x; /* (n, h, w, c) */
    uint8_t *y;       /* (n, oh, ow, c) */
    tt_dtype sdt, ddt;
    int h, w, c, oh, ow, y0, x0;
    const tt_resize *plan;
    size_t scratch_floats; /* per item: malloc'ed by the item (a batch-wide slab could be huge) */
    _Atomic int failed;    /* set by an item whose scratch malloc failed */
} resize_ctx;

static void resize_item(void *vctx, int64_t i) {
    const resize_ctx *k = (const resize_ctx *)vctx;
    const size_t se = k->sdt == TT_U8 ? 1 : sizeof(float), de = k->ddt == TT_U8 ? 1 : sizeof(float);
    const uint8_t *x = k->x + (size_t)i * k->h * k->w * k->c * se + ((size_t)k->y0 * k->w + k->x0) * k->c * se;
    uint8_t *y = k->y + (size_t)i * k->oh * k->ow * k->c * de;
    float *scratch = (float *)malloc(k->scratch_floats * sizeof(float));
    if (!scratch) {
        ((resize_ctx *)vctx)->failed = 1;
        return;
    }
    tt_resize_forward(k->plan, x, k->sdt, (int64_t)k->w * k->c, k->c, y, k->ddt, scratch);
    free(scratch);
}

tt_status tt_resize_batch_forward(tt_pool *pool, const void *x, tt_dtype src_dtype, void *y, tt_dtype dst_dtype,
                                  int64_t n, int h, int w, int c, int out_h, int out_w, tt_interpolation method,
                                  int antialias, int crop_to_aspect_ratio) {
    tt_status s = check_batch("resize", n, h, w, c, src_dtype);
    if (s != TT_OK) return s;
    int y0 = 0, x0 = 0, ch = h, cw = w;
    if (crop_to_aspect_ratio) tt_crop_box_for_aspect(h, w, out_h, out_w, &y0, &x0, &ch, &cw);
    tt_resize *plan = NULL;
    s = tt_resize_create(ch, cw, out_h, out_w, method, antialias, &plan);
    if (s != TT_OK) return s;
    resize_ctx k = {(const uint8_t *)x, (uint8_t *)y, src_dtype, dst_dtype, h, w, c, out_h, out_w, y0, x0, plan,
                    tt_resize_scratch_floats(plan, c), 0};
    s = tt_pool_run(pool, resize_item, &k, n);
    tt_resize_destroy(plan);
    if (s == TT_OK && k.failed) s = tt_error(TT_OUT_OF_MEMORY, "out of memory resizing a batch");
    return s;
}
