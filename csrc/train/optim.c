/* optim.c - optimizer update rules of Keras 3 (keras/src/optimizers/ sgd, adam, rmsprop),
 * in place on float32 buffers. The formulas are in tt_train.h. */
#include "train/tt_train.h"

#include <math.h>
#include <stddef.h>

tt_status tt_sgd_update(int64_t n, float *var, const float *grad, float *m, float lr, float momentum,
                        int nesterov) {
    if (n < 0 || (n > 0 && (!var || !grad)) || (momentum != 0.0f && n > 0 && !m))
        return tt_error(TT_INVALID_ARGUMENT, "sgd_update: bad arguments");
    if (momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++) var[i] -= lr * grad[i];
        return TT_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        m[i] = m[i] * momentum - grad[i] * lr;
        if (nesterov)
            var[i] += m[i] * momentum - grad[i] * lr;
        else
            var[i] += m[i];
    }
    return TT_OK;
}

tt_status tt_adam_update(int64_t n, float *var, const float *grad, float *m, float *v, float *vhat, float lr,
                         float beta_1, float beta_2, float epsilon, int64_t t) {
    if (n < 0 || (n > 0 && (!var || !grad || !m || !v)) || t < 1)
        return tt_error(TT_INVALID_ARGUMENT, "adam_update: bad arguments");
    /* Keras folds both bias corrections into the step size. */
    const float b1p = powf(beta_1, (float)t), b2p = powf(beta_2, (float)t);
    const float alpha = lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
    const float c1 = 1.0f - beta_1, c2 = 1.0f - beta_2;
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        m[i] += (g - m[i]) * c1;
        v[i] += (g * g - v[i]) * c2;
        float vv = v[i];
        if (vhat) {
            vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
            vv = vhat[i];
        }
        var[i] -= (m[i] * alpha) / (sqrtf(vv) + epsilon);
    }
    return TT_OK;
}

tt_status tt_weight_decay_update(int64_t n, float *var, float lr, float weight_decay) {
    if (n < 0 || (n > 0 && !var)) return tt_error(TT_INVALID_ARGUMENT, "weight_decay_update: bad arguments");
    const float k = weight_decay * lr;
    for (int64_t i = 0; i < n; i++) var[i] -= var[i] * k;
    return TT_OK;
}

tt_status tt_rmsprop_update(int64_t n, float *var, const float *grad, float *vel, float *mom, float *avg, float lr,
                            float rho, float momentum, float epsilon) {
    if (n < 0 || (n > 0 && (!var || !grad || !vel)) || (momentum > 0.0f && n > 0 && !mom))
        return tt_error(TT_INVALID_ARGUMENT, "rmsprop_update: bad arguments");
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        vel[i] = rho * vel[i] + (1.0f - rho) * g * g;
        float den;
        if (avg) {
            avg[i] = rho * avg[i] + (1.0f - rho) * g;
            den = vel[i] - avg[i] * avg[i] + epsilon;
        } else {
            den = vel[i] + epsilon;
        }
        const float inc = lr * g / sqrtf(den);
        if (momentum > 0.0f) {
            mom[i] = momentum * mom[i] + inc;
            var[i] -= mom[i];
        } else {
            var[i] -= inc;
        }
    }
    return TT_OK;
}
