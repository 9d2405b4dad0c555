"""Gradient checks of the C head: dense (oneDNN) + ReLU + softmax cross-entropy
(+ label smoothing, class weights) + L2, and dropout / sigmoid BCE ops.

Two steps each: (1) a float64 NumPy transcription of the forward pass is
differentiated analytically and checked against central finite differences
(float64, rtol 1e-6): the formulas are right; (2) the C gradients (float32)
are checked against those analytic float64 gradients with float32 tolerances
(rtol 1e-4, atol 1e-5): the C is right.
"""
import numpy as np
import pytest

from tflite_transfer import _core, losses, optimizers
from tflite_transfer.layers import L2, Dense
from tflite_transfer.models import _Head


class _Capture(optimizers.Optimizer):
    """Records the gradients instead of applying them."""

    def __init__(self):
        super().__init__(0.0)
        self.grads = None

    def apply(self, grads, variables):
        self.grads = [g.copy() for g in grads]
        self.vars = variables


def _np_head(params, x, t, sw, ls, l2s):
    """float64 loss of a head: [(W, b, relu)], softmax CE with smoothing ls, sample weights sw, L2 factors."""
    h = x
    for k, (w, b, relu) in enumerate(params):
        h = h @ w + b
        if relu:
            h = np.maximum(h, 0)
    z = h - h.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    c = t.shape[1]
    ts = t * (1 - ls) + ls / c
    per = -(ts * logp).sum(1)
    loss = np.sum(sw * per) / len(x)
    return loss + sum(l2 * np.sum(w ** 2) for (w, _, _), l2 in zip(params, l2s))


def _np_grads(params, x, t, sw, ls, l2s):
    """Analytic float64 gradients [(dW, db)] of _np_head."""
    acts, pre = [x], []
    h = x
    for w, b, relu in params:
        a = h @ w + b
        pre.append(a)
        h = np.maximum(a, 0) if relu else a
        acts.append(h)
    z = h - h.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    c = t.shape[1]
    d = sw[:, None] * (p - (t * (1 - ls) + ls / c)) / len(x)
    out = []
    for k in range(len(params) - 1, -1, -1):
        w, b, relu = params[k]
        if relu:
            d = d * (pre[k] > 0)
        out.append((acts[k].T @ d + 2 * l2s[k] * w, d.sum(0)))
        d = d @ w.T
    return out[::-1]


def _fd(params, x, t, sw, ls, l2s, eps=1e-6):
    out = []
    for w, b, _ in params:
        gs = []
        for arr in (w, b):
            g = np.full(arr.shape, np.nan)
            for i in np.ndindex(arr.shape):
                old = arr[i]
                arr[i] = old + eps
                lp = _np_head(params, x, t, sw, ls, l2s)
                arr[i] = old - eps
                lm = _np_head(params, x, t, sw, ls, l2s)
                arr[i] = old
                g[i] = (lp - lm) / (2 * eps)
            gs.append(g)
        out.append(tuple(gs))
    return out


def _problem(seed, units, n=7, d=5, c=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    dims = [d] + units + [c]
    params = [(rng.normal(size=(a, b)) * 0.5, rng.normal(size=b) * 0.1, k < len(units))
              for k, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
    return x, y, params


def _c_grads(params, x, y, c, sw, ls, l2s):
    layers = []
    for (w, b, relu), l2 in zip(params, l2s):
        act = "relu" if relu else None
        L = Dense(w.shape[1], activation=act, kernel_regularizer=L2(l2) if l2 else None)
        L.build((None, w.shape[0]))
        L.set_weights([w.astype(np.float32), b.astype(np.float32)])
        layers.append(L)
    layers[-1].activation = "softmax"
    loss = losses.CategoricalCrossentropy(label_smoothing=ls)
    head = _Head(layers, loss)
    t = np.eye(c, dtype=np.float32)[y]
    opt = _Capture()
    swf = None if sw is None else sw.astype(np.float32)
    value, _ = head.train_step(x.astype(np.float32), t, swf, opt)
    # train_step lists variables last layer first: kernel, bias per layer.
    g = opt.grads
    return value, [(g[2 * k], g[2 * k + 1]) for k in range(len(layers))][::-1]


CASES = {
    "dense_ce": dict(units=[], ls=0.0, l2=[0.0], weighted=False),
    "dense_ce_l2_classweights": dict(units=[], ls=0.0, l2=[0.01], weighted=True),
    "dense_ce_label_smoothing": dict(units=[], ls=0.2, l2=[0.0], weighted=True),
    "two_dense_relu_l2": dict(units=[6], ls=0.1, l2=[0.003, 0.01], weighted=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_head_gradients_match_finite_differences_and_c(case):
    cfg = CASES[case]
    c = 4
    x, y, params = _problem(1, cfg["units"], c=c)
    t = np.eye(c)[y]
    sw = np.array([0.5, 2.0, 1.0, 3.0])[y] if cfg["weighted"] else np.ones(len(y))
    analytic = _np_grads(params, x, t, sw, cfg["ls"], cfg["l2"])
    numeric = _fd(params, x, t, sw, cfg["ls"], cfg["l2"])
    for (aw, ab), (nw, nb) in zip(analytic, numeric):
        np.testing.assert_allclose(aw, nw, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(ab, nb, rtol=1e-6, atol=1e-8)
    # C (float32) against the analytic float64 gradients; inputs rounded to float32 first.
    p32 = [(w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64), r) for w, b, r in params]
    x32 = x.astype(np.float32).astype(np.float64)
    ref = _np_grads(p32, x32, t, sw, cfg["ls"], cfg["l2"])
    value, got = _c_grads(params, x, y, c, sw if cfg["weighted"] else None, cfg["ls"], cfg["l2"])
    np.testing.assert_allclose(value, _np_head(p32, x32, t, sw, cfg["ls"], cfg["l2"]), rtol=1e-5)
    for (rw, rb), (gw, gb) in zip(ref, got):
        assert gw.dtype == np.float32
        np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gb, rb, rtol=1e-4, atol=1e-5)


def test_dense_plan_matches_numpy_forward_and_backward():
    rng = np.random.default_rng(2)
    n, i, o = 9, 13, 5
    x, w = rng.normal(size=(n, i)).astype(np.float32), rng.normal(size=(i, o)).astype(np.float32)
    b, dy = rng.normal(size=o).astype(np.float32), rng.normal(size=(n, o)).astype(np.float32)
    plan = _core.DensePlan(n, i, o)
    y = np.full((n, o), np.nan, np.float32)
    plan.forward(x, w, b, y)
    np.testing.assert_allclose(y, x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-5)
    dx, dw, db = (np.full(s, np.nan, np.float32) for s in ((n, i), (i, o), (o,)))
    plan.backward(dy, x, w, dx, dw, db)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, x.astype(np.float64).T @ dy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)


def test_dense_plan_rejects_wrong_buffers():
    plan = _core.DensePlan(2, 3, 4)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        plan.forward(x, np.zeros((4, 3), np.float64), np.zeros(4, np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="y"):
        plan.forward(x, np.zeros((3, 4), np.float32), np.zeros(4, np.float32), np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="batch"):
        _core.DensePlan(0, 3, 4)


def test_dropout_mask_is_seeded_scaled_and_backward_uses_it():
    x = np.ones(20000, np.float32)
    y1, y2, y3 = (np.full_like(x, np.nan) for _ in range(3))
    m1, m2, m3 = (np.empty(x.shape, np.uint8) for _ in range(3))
    _core.dropout_forward(x, 0.25, 7, y1, m1)
    _core.dropout_forward(x, 0.25, 7, y2, m2)
    _core.dropout_forward(x, 0.25, 8, y3, m3)
    assert np.array_equal(m1, m2) and not np.array_equal(m1, m3)
    assert abs(1 - m1.mean() - 0.25) < 0.02
    np.testing.assert_array_equal(y1, np.where(m1 == 1, np.float32(1 / 0.75), 0))
    dy = np.arange(x.size, dtype=np.float32)
    dx = np.full_like(dy, np.nan)
    _core.dropout_backward(dy, m1, 0.25, dx)
    np.testing.assert_allclose(dx, dy * m1 / 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="rate"):
        _core.dropout_forward(x, 1.0, 7, y1, m1)


def test_sigmoid_bce_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 2))
    t = rng.integers(0, 2, (6, 2)).astype(np.float64)
    sw = rng.uniform(0.5, 2, 6)
    ls = 0.1

    def f(zz):
        tt = t * (1 - ls) + 0.5 * ls
        return np.sum(sw * (np.maximum(zz, 0) - zz * tt + np.log1p(np.exp(-np.abs(zz)))).mean(1)) / len(zz)

    num = np.full(z.shape, np.nan)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += 1e-6
        zm[i] -= 1e-6
        num[i] = (f(zp) - f(zm)) / 2e-6
    probs = np.full(z.shape, np.nan, np.float32)
    z32, t32, w32 = z.astype(np.float32), t.astype(np.float32), sw.astype(np.float32)
    s = _core.sigmoid_bce_forward(z32, t32, w32, ls, probs)
    np.testing.assert_allclose(s / len(z), f(z32.astype(np.float64)), rtol=1e-5)
    d = np.full(z.shape, np.nan, np.float32)
    _core.sigmoid_bce_backward(probs, t32, w32, ls, 1.0 / len(z), d)
    np.testing.assert_allclose(d, num, rtol=1e-4, atol=1e-6)
