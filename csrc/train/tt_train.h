/* tt_train.h - the head trainer of tflite_transfer: dense (oneDNN inner
 * product) forward/backward, activations, softmax / sigmoid cross-entropy,
 * dropout, L2, and the optimizer update rules of Keras 3.
 *
 * Conventions (all functions):
 *  - Arrays are float32, C-contiguous, batch-first; the caller owns every
 *    buffer (allocates and frees it) unless a comment says otherwise.
 *  - Every function returns TT_OK or a status with a message in tt_last_error().
 *  - `*_run` / op functions never allocate and never check more than NULLs and
 *    sizes; `tt_dense_create` checks and allocates everything.
 */
#ifndef TT_TRAIN_H
#define TT_TRAIN_H

#include <stdint.h>

#include "core/tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dense (head.c) ------------------------------------------------------
 * y = x @ kernel + bias with Keras' layout: kernel (in, out), row-major.
 * One plan per batch size: oneDNN primitives are built for fixed shapes.
 * A plan is not thread-safe (it rebinds its memory handles on each run). */
typedef struct tt_dense tt_dense;

/* Builds the forward_training, backward_data and backward_weights inner
 * product primitives for x (batch, in) -> y (batch, out). *out owns them;
 * free with tt_dense_destroy. Fails with TT_INVALID_ARGUMENT on sizes < 1. */
tt_status tt_dense_create(tt_dense **out, int64_t batch, int64_t in, int64_t out_features);
void tt_dense_destroy(tt_dense *d); /* accepts NULL */

/* y (batch, out) = x (batch, in) @ kernel (in, out) + bias (out). */
tt_status tt_dense_forward(tt_dense *d, const float *x, const float *kernel, const float *bias, float *y);

/* Given dy (batch, out), x (batch, in) and kernel (in, out), writes
 * dkernel (in, out) = x^T dy, dbias (out) = sum over batch of dy, and, when dx
 * is not NULL, dx (batch, in) = dy @ kernel^T. Gradients are overwritten. */
tt_status tt_dense_backward(tt_dense *d, const float *dy, const float *x, const float *kernel,
                            float *dx, float *dkernel, float *dbias);

/* ---- elementwise activations (head.c) ---------------------------------- */
/* y[i] = max(x[i], 0) for i < n; x == y allowed. */
tt_status tt_relu_forward(int64_t n, const float *x, float *y);
/* dx[i] = y[i] > 0 ? dy[i] : 0, y = relu output; dx == dy allowed. */
tt_status tt_relu_backward(int64_t n, const float *dy, const float *y, float *dx);
/* Row-wise softmax: x (rows, c) -> y (rows, c); x == y allowed. */
tt_status tt_softmax_forward(int64_t rows, int64_t c, const float *x, float *y);
/* y[i] = 1 / (1 + exp(-x[i])); x == y allowed. */
tt_status tt_sigmoid_forward(int64_t n, const float *x, float *y);

/* ---- losses (head.c) ------------------------------------------------------
 * Softmax cross-entropy fused with the softmax, from logits z (rows, c) and
 * targets t (rows, c) (one-hot or probabilities). With label smoothing ls in
 * [0, 1): t' = t (1 - ls) + ls / c (Keras). Per-row loss
 *   l_i = -sum_j t'_ij log softmax(z_i)_j,
 * weighted by sample_weight (rows) (NULL = all 1). Writes probs (rows, c) and
 * *loss_sum = sum_i w_i l_i (the caller divides by the batch size, Keras'
 * "sum_over_batch_size"). */
tt_status tt_softmax_xent_forward(int64_t rows, int64_t c, const float *logits, const float *targets,
                                  const float *sample_weight, float label_smoothing, float *probs,
                                  double *loss_sum);
/* dlogits (rows, c) = scale * w_i * (probs - t'), probs from the forward. */
tt_status tt_softmax_xent_backward(int64_t rows, int64_t c, const float *probs, const float *targets,
                                   const float *sample_weight, float label_smoothing, float scale,
                                   float *dlogits);
/* Sigmoid binary cross-entropy from logits z (rows, k), targets t (rows, k) in
 * [0, 1], t' = t (1 - ls) + ls / 2 (Keras). l_i = mean_j [max(z,0) - z t' +
 * log(1 + exp(-|z|))]. Writes probs = sigmoid(z) and *loss_sum = sum_i w_i l_i. */
tt_status tt_sigmoid_bce_forward(int64_t rows, int64_t k, const float *logits, const float *targets,
                                 const float *sample_weight, float label_smoothing, float *probs,
                                 double *loss_sum);
/* dlogits (rows, k) = scale * w_i * (probs - t') / k. */
tt_status tt_sigmoid_bce_backward(int64_t rows, int64_t k, const float *probs, const float *targets,
                                  const float *sample_weight, float label_smoothing, float scale,
                                  float *dlogits);

/* ---- dropout (head.c) -------------------------------------------------------
 * Inverted dropout (Keras): keep element i when u_i >= rate, u_i uniform in
 * [0, 1) from a counter-based hash of (seed, i) (same seed, same mask);
 * y = x * keep / (1 - rate). mask (n) receives 1 for kept elements, 0 else.
 * rate in [0, 1). */
tt_status tt_dropout_forward(int64_t n, const float *x, float rate, uint64_t seed, float *y, uint8_t *mask);
/* dx = dy * mask / (1 - rate); dx == dy allowed. */
tt_status tt_dropout_backward(int64_t n, const float *dy, const uint8_t *mask, float rate, float *dx);

/* ---- L2 kernel regularizer (head.c), Keras' L2(l2): l2 * sum(w^2) ---------- */
tt_status tt_l2_forward(int64_t n, const float *w, float l2, double *penalty);
/* dw[i] += 2 * l2 * w[i] (accumulates into an existing gradient). */
tt_status tt_l2_backward(int64_t n, const float *w, float l2, float *dw);

/* ---- optimizers (optim.c): Keras 3 update rules, in place on var (n) ------- */
/* momentum == 0: var -= lr g. Else m = momentum m - lr g; var += m, or with
 * nesterov var += momentum m - lr g. m (n) may be NULL only when momentum == 0. */
tt_status tt_sgd_update(int64_t n, float *var, const float *grad, float *m, float lr, float momentum,
                        int nesterov);
/* Adam, step t >= 1 (iterations + 1): alpha = lr sqrt(1 - b2^t) / (1 - b1^t);
 * m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); amsgrad: vhat = max(vhat, v)
 * and v := vhat in the update; var -= alpha m / (sqrt(v) + eps).
 * vhat (n) is NULL unless amsgrad. */
tt_status tt_adam_update(int64_t n, float *var, const float *grad, float *m, float *v, float *vhat,
                         float lr, float beta_1, float beta_2, float epsilon, int64_t t);
/* Decoupled weight decay (Keras' _apply_weight_decay, run before the update):
 * var -= var * weight_decay * lr. */
tt_status tt_weight_decay_update(int64_t n, float *var, float lr, float weight_decay);
/* RMSprop: vel = rho vel + (1 - rho) g^2; centered: avg = rho avg + (1 - rho) g,
 * den = vel - avg^2 + eps, else den = vel + eps; inc = lr g / sqrt(den);
 * momentum > 0: mom = momentum mom + inc, var -= mom; else var -= inc.
 * mom (n) NULL iff momentum == 0; avg (n) NULL iff not centered. */
tt_status tt_rmsprop_update(int64_t n, float *var, const float *grad, float *vel, float *mom, float *avg,
                            float lr, float rho, float momentum, float epsilon);

#ifdef __cplusplus
}
#endif
#endif /* TT_TRAIN_H */
