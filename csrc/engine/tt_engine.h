/* tt_engine.h - the oneDNN engine that runs a tt_model: forward (inference),
 * and, from a "trainable from op k" boundary up, forward_training + backward.
 *
 * An engine is built by tt_engine_create() / tt_engine_create_training() for one
 * (model, batch size, input H x W, output tensor[, boundary]): all oneDNN
 * primitives and buffers are created there; the run functions never allocate.
 * An engine keeps a const pointer to its model: destroy engines before their
 * model. Not thread-safe: one caller at a time per engine.
 */
#ifndef TT_ENGINE_H
#define TT_ENGINE_H

#include <stdint.h>

#include "core/tt_status.h"
#include "model/tt_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tt_engine tt_engine;

/* Precision of an inference engine's convolutions and activations.
 *   F32:  float32 everywhere.
 *   BF16: convolutions read bfloat16 activations and weights and accumulate in
 *         float32 (oneDNN's bf16 kernels; the bias stays float32); activations
 *         are stored as bfloat16 between ops; input and output are float32 (the
 *         first conv's reorder and the output reorder convert). Needs a CPU with
 *         bfloat16 instructions (tt_cpu_has_bf16): else TT_UNSUPPORTED.
 *   INT8: the file's own quantization on oneDNN int8 primitives (engine/quant.c):
 *         s8 activations with their tensors' per-tensor scales and zero points,
 *         s8 per-channel weights, float bias, requantization by every conv, RELU6
 *         as a clip post-op, the residual ADD fused with its own scales; the
 *         float input is quantized by the model's QUANTIZE op, int8 outputs are
 *         dequantized by the output reorder, and average pooling / MEAN computes
 *         in float from the dequantized int8 values (so the pooled features are
 *         not rounded to int8). uint8 files (activations shifted to s8 exactly,
 *         per-tensor weights with zero points converted once: engine/quant.c) and
 *         a quantized model input without QUANTIZE op are taken. Models or ops
 *         outside this scheme (unfused ADD, ops after the pooling): TT_UNSUPPORTED.
 *   INT8_TFLITE: INT8 with TFLite's own integer arithmetic after oneDNN's exact int32
 *         accumulation: per-channel fixed-point requantization (QuantizeMultiplier,
 *         double rounding), the activation clamp, the residual ADD as TFLite's
 *         integer ADD (not fused) and the MEAN over H, W as TFLite's integer mean
 *         (rounded to int8), so every int8 tensor equals LiteRT's reference
 *         kernels' (engine/quant.c). Slower: one int32 pass per convolution, in C.
 *   Both int8 precisions need VNNI (tt_cpu_has_vnni): else TT_UNSUPPORTED. */
typedef enum tt_precision {
    TT_PRECISION_F32 = 0,
    TT_PRECISION_BF16 = 1,
    TT_PRECISION_INT8 = 2,
    TT_PRECISION_INT8_TFLITE = 3
} tt_precision;

/* TFLite's integer arithmetic of INT8_TFLITE (engine/quant.c), public for tests. */
/* TFLite's QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31). */
void tt_quantize_multiplier(double real, int32_t *multiplier, int32_t *shift);
/* TFLite's MultiplyByQuantizedMultiplier (double rounding): round(x * multiplier * 2^(shift - 31)). */
int32_t tt_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);
/* TFLite's QuantizedMeanOrSum rescaling for a mean of `count` values: QuantizeMultiplier(real)
 * with 1 / count folded in, multiplier * 2^k / count and shift - k, k = min(floor(log2(count)),
 * 32, 31 + shift). */
void tt_mean_multiplier(double real, int64_t count, int32_t *multiplier, int32_t *shift);

/* True when oneDNN dispatches bfloat16 kernels with native instructions here
 * (AVX512_BF16 or AMX: dnnl_get_effective_cpu_isa() >= avx512_core_bf16). */
int tt_cpu_has_bf16(void);
/* 1 when oneDNN's int8 convolutions accumulate u8 x s8 products exactly in int32
 * here: VNNI (AVX512_VNNI, AVX_VNNI, and every ISA above them). Without it oneDNN
 * multiplies in 16 bits: vpmaddubsw saturates pairs of products, and an s8 source
 * has its weights halved (oneDNN's "Nuances of int8 Computations": the
 * scale_adjust of 0.5), which is not the file's int8 arithmetic. */
int tt_cpu_has_vnni(void);
/* oneDNN's name of the instruction set it dispatches to (static string). */
const char *tt_cpu_isa_name(void);

/* Builds the oneDNN primitives that compute tensor `output_tensor` of `model`
 * from its first input, for `batch` images of `in_h` x `in_w` pixels (the
 * model's own H, W when 0). Shapes are propagated through the graph (the model's
 * stored shapes are for batch 1 and its own input size). Only the ops that the
 * output depends on are built. Fails on an op whose shapes do not fit.
 * Implementation notes (engine/plan.c, ops/): layouts are oneDNN's choice
 * (format_tag_any, NHWC brgemm kernels on AVX-512 with oneDNN 3.2); fused
 * RELU/RELU6 are eltwise post-ops; a residual ADD becomes a sum post-op of the
 * conv before it; a PAD feeding only a conv becomes its padding; intermediate
 * buffers are reused once dead; batches above 4 run in chunks of 4 images (when
 * no op mixes images) so activations stay cache-sized. */
tt_status tt_engine_create(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                           int32_t output_tensor, tt_engine **out);

/* tt_engine_create in precision `precision` (tt_engine_create is TT_PRECISION_F32). */
tt_status tt_engine_create_precision(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                     int32_t output_tensor, tt_precision precision, tt_engine **out);

/* Threads (core/tt_threads.h): an engine is built and run with the process-wide
 * thread count current at its creation, whichever thread runs it. */
/* The OpenMP thread count the engine was built for and runs with. */
int32_t tt_engine_num_threads(const tt_engine *engine);
/* The OpenMP thread count in effect during the engine's last run (0: never run). */
int32_t tt_engine_last_run_threads(const tt_engine *engine);

/* Like tt_engine_create, with ops [train_from, n_ops) trainable: below the
 * boundary the inference plan (frees activations, fuses the residual ADD);
 * at and above it forward_training primitives, every activation that backward
 * reads kept alive, no in-place fusion, and the backward primitives (created
 * with the forward ones as hints). train_from = n_ops gives tt_engine_create's
 * plan, without micro-batching. Fails with TT_UNSUPPORTED naming the first
 * trainable op that has no backward. The trainable parameters (weights and biases
 * of trainable ops) are listed by tt_engine_param and must be bound with
 * tt_engine_bind_param before any run. */
tt_status tt_engine_create_training(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                    int32_t output_tensor, int32_t train_from, tt_engine **out);

/* Shape of tensor `output_tensor` when the model runs on `batch` images of
 * in_h x in_w pixels (0: the model's own size), by the same shape propagation
 * as tt_engine_create but without building anything. Fails as create would
 * (unreachable tensor, shapes that do not fit). */
tt_status tt_model_output_shape(const tt_model *model, int32_t batch, int32_t in_h, int32_t in_w,
                                int32_t output_tensor, int32_t *rank, int64_t shape[TT_MAX_RANK]);

/* Output shape of the engine (NHWC or [N, C]); *rank <= TT_MAX_RANK. */
void tt_engine_output_shape(const tt_engine *engine, int32_t *rank, int64_t shape[TT_MAX_RANK]);

/* Runs the engine. input: [batch, in_h, in_w, C] float32 NHWC, already
 * preprocessed; output: [batch, ...] float32 as tt_engine_output_shape says.
 * A training engine first copies the bound parameters into its primitives'
 * layouts and keeps the activations backward needs. Never allocates. */
tt_status tt_engine_run(tt_engine *engine, const float *input, float *output);

/* ---- training (engines from tt_engine_create_training) ------------------- */

/* Number of trainable parameters (0 for an inference engine). */
int32_t tt_engine_n_params(const tt_engine *engine);
/* Parameter k < n_params: the op it belongs to, the model tensor it replaces
 * (its TFLite layout and size are the tensor's) and its number of floats. */
tt_status tt_engine_param(const tt_engine *engine, int32_t k, int32_t *op, int32_t *tensor, int64_t *size);
/* Binds caller-owned buffers to parameter k: value [size] (read at the start of
 * every run, so an optimizer's update is seen by the next run) and grad [size]
 * (overwritten by tt_engine_backward). Both in the tensor's TFLite layout. */
tt_status tt_engine_bind_param(tt_engine *engine, int32_t k, const float *value, float *grad);

/* Backward after a run: d_output [output shape] = dL/d(output) -> the bound
 * parameter gradients. Walks the trainable ops in reverse; the frozen bottom is
 * not touched. */
tt_status tt_engine_backward(tt_engine *engine, const float *d_output);

/* The cut: tensors computed below the boundary and read at or above it. */
int32_t tt_engine_n_cut(const tt_engine *engine);
/* Tensor index and shape (TFLite order, batch first) of cut tensor k. */
tt_status tt_engine_cut(const tt_engine *engine, int32_t k, int32_t *tensor, int32_t *rank,
                        int64_t shape[TT_MAX_RANK]);
/* Runs only the frozen bottom on input and writes every cut tensor k to cut[k]
 * (plain, TFLite layout), to be cached. */
tt_status tt_engine_run_bottom(tt_engine *engine, const float *input, float *const *cut);
/* Runs only the trainable top from cached cut values cut[k] (as run_bottom wrote
 * them) to the output; tt_engine_backward may follow. */
tt_status tt_engine_run_top(tt_engine *engine, const float *const *cut, float *output);

/* Frees an engine; accepts NULL. */
void tt_engine_destroy(tt_engine *engine);

#ifdef __cplusplus
}
#endif
#endif /* TT_ENGINE_H */
