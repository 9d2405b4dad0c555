/* tt_image.h - the image input pipeline of the C core: file reading, decoding
 * (stb_image), resizing (TF's tf.image.resize rules), a pthread pool with
 * asynchronous tasks (the prefetching loader runs on it) and batched
 * augmentation kernels (Keras' preprocessing layers).
 *
 * Conventions: images are row-major HWC, batches NHWC, channels innermost.
 * Pixel dtypes are TT_U8 (uint8) and TT_F32 (float32). Every entry point
 * returns a tt_status and leaves a message via tt_error() on failure.
 * Conversions to uint8 round half up and saturate to [0, 255].
 */
#ifndef TT_IMAGE_H
#define TT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default refusal threshold for decoding: 100 megapixels (declared in the header). */
#define TT_IMAGE_DEFAULT_MAX_PIXELS 100000000LL
/* Files larger than this are refused by tt_image_read_file (1 GiB). */
#define TT_IMAGE_MAX_FILE_BYTES (1LL << 30)

typedef enum tt_dtype { TT_U8 = 0, TT_F32 = 1 } tt_dtype;

/* ---------------------------------------------------------------- decode */

/* Reads a whole regular file (POSIX open/fstat/read). On success *data (size *size) is
 * malloc'ed and owned by the caller (free()). Fails with TT_IO_ERROR naming `path` if it
 * cannot be opened/read, is not a regular file (FIFO, device, folder: refused without blocking)
 * or is larger than TT_IMAGE_MAX_FILE_BYTES; an empty file is read fine (size 0; decoding
 * then fails). */
tt_status tt_image_read_file(const char *path, uint8_t **data, size_t *size);

/* Height and width declared by the header of encoded bytes `data` (size), without decoding
 * pixels. TT_DECODE_ERROR with stb_image's reason if the format is unknown or the header bad. */
tt_status tt_image_info(const uint8_t *data, size_t size, int *height, int *width);

/* Decodes JPEG/PNG/BMP/GIF(first frame) bytes to 8-bit RGB.
 * Gray is replicated to 3 channels; alpha is dropped (not composited), as
 * PIL's convert("RGB") and TF's decode_image(channels=3) do; 16-bit PNG samples keep their
 * high byte (v >> 8), as TF's decode_png(dtype=uint8) does (libpng png_set_strip_16).
 * Images whose header declares more than `max_pixels` (h * w) pixels are refused
 * with TT_DECODE_ERROR before any pixel buffer is allocated.
 * On success *pixels ((*height, *width, 3) uint8) is owned by the caller: release it with
 * tt_image_free(). On failure *pixels is NULL. */
tt_status tt_image_decode(const uint8_t *data, size_t size, int64_t max_pixels, uint8_t **pixels, int *height,
                          int *width);

/* Releases a buffer of tt_image_decode (NULL is fine). */
void tt_image_free(uint8_t *pixels);

/* ---------------------------------------------------------------- resize */

typedef enum tt_interpolation { TT_BILINEAR = 0, TT_NEAREST = 1 } tt_interpolation;

/* A separable resampling plan from (in_h, in_w) to (out_h, out_w): per output row and
 * column, a span of input indices and their weights. Built once per (size, method)
 * by tt_resize_create, run many times, freed by tt_resize_destroy. */
typedef struct tt_resize {
    int in_h, in_w, out_h, out_w;
    int span_h, span_w;  /* max taps per output row / column */
    int32_t *start_h;    /* (out_h) first input row of each output row */
    int32_t *start_w;    /* (out_w) first input column of each output column */
    float *weight_h;     /* (out_h, span_h) weights, zero-padded */
    float *weight_w;     /* (out_w, span_w) weights, zero-padded */
} tt_resize;

/* Builds the plan. Rules (tf.image.resize in TF 2, no TF code copied):
 *  - TT_BILINEAR, antialias=0: ResizeBilinear with half_pixel_centers: in = (o + 0.5) * in/out - 0.5,
 *    lower = max(floor(in), 0), upper = min(ceil(in), in - 1), lerp = in - floor(in).
 *  - TT_BILINEAR, antialias=1: ScaleAndTranslate with the triangle kernel, widened by the downscale
 *    factor max(in/out, 1), weights normalised to sum 1.
 *  - TT_NEAREST: ResizeNearestNeighbor with half_pixel_centers: in = min(floor((o + 0.5) * in/out), in - 1).
 * TT_INVALID_ARGUMENT for non-positive sizes, TT_OUT_OF_MEMORY. */
tt_status tt_resize_create(int in_h, int in_w, int out_h, int out_w, tt_interpolation method, int antialias,
                           tt_resize **out);

/* Resizes one image: src (in_h rows of `src_row_stride` elements, in_w * channels used per row)
 * -> dst (out_h, out_w, channels) of dtype `dst_dtype`. `scratch` holds in_h * out_w * channels
 * floats (tt_resize_scratch_floats). Never allocates. */
void tt_resize_forward(const tt_resize *plan, const void *src, tt_dtype src_dtype, int64_t src_row_stride,
                       int channels, void *dst, tt_dtype dst_dtype, float *scratch);

/* Number of floats of scratch that tt_resize_forward needs for `channels`. */
size_t tt_resize_scratch_floats(const tt_resize *plan, int channels);

void tt_resize_destroy(tt_resize *plan);

/* Keras' smart_resize crop box for target (target_h, target_w) in an (h, w) image: the largest
 * centred box with the target aspect ratio (int() truncations as Keras). */
void tt_crop_box_for_aspect(int h, int w, int target_h, int target_w, int *y0, int *x0, int *crop_h,
                            int *crop_w);

/* One-shot resize of an image (allocates its plan and scratch), optionally center-cropped to the
 * target aspect first: src (in_h, in_w, channels) -> dst (out_h, out_w, channels). */
tt_status tt_resize_image(const void *src, tt_dtype src_dtype, int in_h, int in_w, int channels, void *dst,
                          tt_dtype dst_dtype, int out_h, int out_w, tt_interpolation method, int antialias,
                          int crop_to_aspect_ratio);

/* ---------------------------------------------------------------- thread pool */

/* Work item callback: process item `item` (0 <= item < n_items) of a task. Must not fail
 * silently: record per-item errors in ctx. */
typedef void (*tt_pool_fn)(void *ctx, int64_t item);

typedef struct tt_pool tt_pool; /* opaque: threads, a FIFO of tasks, a mutex and two condvars */
typedef struct tt_task tt_task; /* opaque: fn, ctx, n_items, next, done */

/* Starts `num_threads` (1..256) worker threads. */
tt_status tt_pool_create(int num_threads, tt_pool **out);

/* Queues a task of n_items >= 0 items; workers take items in FIFO task order. *task is owned
 * by the caller until tt_pool_wait frees it. `ctx` must stay valid until then. */
tt_status tt_pool_submit(tt_pool *pool, tt_pool_fn fn, void *ctx, int64_t n_items, tt_task **task);

/* Blocks until every item of `task` is done, then frees it. */
void tt_pool_wait(tt_pool *pool, tt_task *task);

/* Submits and waits. With pool == NULL runs the items on the calling thread, in order. */
tt_status tt_pool_run(tt_pool *pool, tt_pool_fn fn, void *ctx, int64_t n_items);

int tt_pool_num_threads(const tt_pool *pool);

/* Waits for the queued tasks, joins the threads, frees. NULL is fine. Tasks still owned by
 * callers must have been waited before. */
void tt_pool_destroy(tt_pool *pool);

/* ---------------------------------------------------------------- batch loader */

#define TT_LOAD_MSG 512

/* How tt_image_load turns a file into a fixed-size uint8 image. */
typedef struct tt_load_config {
    int out_h, out_w;          /* output size */
    tt_interpolation method;   /* resize method */
    int antialias;             /* 0/1, see tt_resize_create */
    int crop_to_aspect_ratio;  /* 0/1, Keras' center crop before resize */
    int64_t max_pixels;        /* decode limit, see tt_image_decode */
} tt_load_config;

/* read + decode + resize one file into out (cfg->out_h, cfg->out_w, 3) uint8. */
tt_status tt_image_load(const char *path, const tt_load_config *cfg, uint8_t *out);

/* One batch being loaded on a pool: item i loads paths[i] into out[i]. Buffers are borrowed
 * (owned by the caller, valid until the task is waited); status/messages are written per item. */
typedef struct tt_load_batch {
    tt_load_config cfg;
    const char *const *paths;  /* (count) file names */
    uint8_t *out;              /* (count, out_h, out_w, 3) */
    tt_status *status;         /* (count) per item, TT_OK or the failure */
    char (*messages)[TT_LOAD_MSG]; /* (count) per item failure message, "" on success */
} tt_load_batch;

/* tt_pool_fn for a tt_load_batch ctx. */
void tt_load_batch_item(void *ctx, int64_t item);

/* ---------------------------------------------------------------- augmentation */

typedef enum tt_fill_mode { TT_FILL_REFLECT = 0, TT_FILL_WRAP = 1, TT_FILL_CONSTANT = 2, TT_FILL_NEAREST = 3 }
    tt_fill_mode;

/* Each kernel processes a batch x (n, h, w, c) of dtype `dtype` into y, one item per image on
 * `pool` (NULL: calling thread). Results do not depend on the thread count. x and y must not
 * overlap unless said otherwise. */

/* y[i] = x[i] mirrored along W if flags[i][0], along H if flags[i][1]. flags: (n, 2). */
tt_status tt_flip_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                          const uint8_t *flags);

/* Projective warp as TF's ImageProjectiveTransformV3 (used by Keras' RandomRotation/Zoom/
 * Translation): output pixel (xo, yo) (integer coordinates, pixel centres) samples the input at
 * ((a0 xo + a1 yo + a2) / k, (b0 xo + b1 yo + b2) / k), k = c0 xo + c1 yo + 1, with
 * transforms[i] = (a0, a1, a2, b0, b1, b2, c0, c1): (n, 8). The coordinate is mapped by fill_mode
 * (reflect: d c b a | a b c d | d c b a; wrap; nearest: clamp; constant: fill_value outside), then
 * read by bilinear or nearest (round) interpolation. y: (n, out_h, out_w, c). */
tt_status tt_affine_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                            const float *transforms, int out_h, int out_w, tt_interpolation method,
                            tt_fill_mode fill_mode, float fill_value);

/* y[i] = x[i][oy : oy + out_h, ox : ox + out_w], offsets (n, 2) = (oy, ox), checked in range. */
tt_status tt_crop_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w, int c,
                          const int32_t *offsets, int out_h, int out_w);

/* y[i] = clip(x[i] + delta[i], lo, hi). delta: (n). y may equal x. */
tt_status tt_brightness_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w,
                                int c, const float *delta, float lo, float hi);

/* y[i] = clip((x[i] - m) * factor[i] + m, lo, hi), m the per-channel spatial mean of x[i]
 * (tf.image.adjust_contrast). factor: (n). y may equal x. */
tt_status tt_contrast_forward(tt_pool *pool, const void *x, void *y, tt_dtype dtype, int64_t n, int h, int w,
                              int c, const float *factor, float lo, float hi);

/* Resizes every image of a batch x (n, h, w, c) to y (n, out_h, out_w, c) (optionally
 * Keras-smart-resize crop to aspect first); used by RandomCrop at inference and resize(). */
tt_status tt_resize_batch_forward(tt_pool *pool, const void *x, tt_dtype src_dtype, void *y, tt_dtype dst_dtype,
                                  int64_t n, int h, int w, int c, int out_h, int out_w, tt_interpolation method,
                                  int antialias, int crop_to_aspect_ratio);

#ifdef __cplusplus
}
#endif
#endif /* TT_IMAGE_H */
