"""Proves the NumPy float64 backward references of ``tests/reference_grad.py``: each gradient
against central finite differences of its own forward, and each forward against a naive
per-output-pixel loop (and the existing graph reference ``tests/reference.py``).

Loss used throughout: ``L = sum(y * R)`` with a fixed random R, so ``dL/dy = R``.
Tolerance: float64, central differences with eps 1e-6 have truncation error ~eps^2 * |f'''|
and rounding ~1e-16 * |L| / eps, both far below the bound ``max|analytic - fd| <=
1e-7 * max(1, max|analytic|)``; a wrong index or a missing term is off by O(1).
"""
import numpy as np
import pytest

import reference
import reference_grad as rg

TOL = 1e-7


def _close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.isfinite(got).all(), what
    err = np.abs(got - want).max()
    assert err <= TOL * max(1.0, np.abs(want).max()), f"{what}: max err {err:.3g}"


def _away_from_kinks(rng, shape, kinks=(0.0, 6.0), margin=0.05):
    """Normal values in (-2, 8) at least `margin` from each ReLU6 kink, so finite differences
    with eps 1e-6 never cross one."""
    x = rng.uniform(-2, 8, size=shape)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.sign(x[near] - k + 1e-12) * margin * 2
    return x


def _naive_conv(x, w, b, stride, padding, depthwise):
    """Per output pixel loops (no tap tricks), for the forward check."""
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    oh, pt, _ = rg.same_or_valid(h, kh, stride[0], padding)
    ow, pl, _ = rg.same_or_valid(wd, kw, stride[1], padding)
    o = w.shape[3] if depthwise else w.shape[0]
    y = np.zeros((n, oh, ow, o))
    for a in range(oh):
        for bb in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, s = a * stride[0] + i - pt, bb * stride[1] + j - pl
                    if 0 <= r < h and 0 <= s < wd:
                        if depthwise:
                            m = o // c
                            y[:, a, bb, :] += np.repeat(x[:, r, s, :], m, axis=1) * w[0, i, j, :]
                        else:
                            y[:, a, bb, :] += x[:, r, s, :] @ w[:, i, j, :].T
    return y + b


CONV_CASES = [  # (H, W, k, stride, padding)
    (5, 5, 3, 1, "SAME"), (6, 7, 3, 2, "SAME"), (7, 6, 3, 2, "SAME"), (5, 6, 3, 1, "VALID"),
    (7, 7, 3, 2, "VALID"), (4, 5, 1, 1, "SAME"), (6, 6, 1, 2, "SAME"), (5, 4, 2, 2, "SAME"),
]


# ------------------------------------------------------------------------------------- CONV_2D
@pytest.mark.parametrize("h,w,k,s,padding", CONV_CASES)
def test_conv2d_forward_equals_naive_loops_and_graph_reference(h, w, k, s, padding):
    rng = np.random.default_rng(1)
    x, wt, b = rng.normal(size=(2, h, w, 3)), rng.normal(size=(4, k, k, 3)), rng.normal(size=4)
    y = rg.conv2d_forward(x, wt, b, (s, s), padding)
    _close(y, _naive_conv(x, wt, b, (s, s), padding, False), "conv forward vs loops")
    o = dict(padding=padding, stride_h=s, stride_w=s, activation="NONE")
    _close(y, reference._conv2d([x, wt, b], o, None), "conv forward vs reference.py")


@pytest.mark.parametrize("h,w,k,s,padding", CONV_CASES)
def test_conv2d_backward_equals_finite_differences(h, w, k, s, padding):
    rng = np.random.default_rng(2)
    x, wt, b = rng.normal(size=(2, h, w, 3)), rng.normal(size=(4, k, k, 3)), rng.normal(size=4)
    y = rg.conv2d_forward(x, wt, b, (s, s), padding)
    r = rng.normal(size=y.shape)
    dx, dw, db = rg.conv2d_backward(r, x, wt, (s, s), padding)
    _close(dx, rg.finite_difference(lambda v: (rg.conv2d_forward(v, wt, b, (s, s), padding) * r).sum(), x), "dx")
    _close(dw, rg.finite_difference(lambda v: (rg.conv2d_forward(x, v, b, (s, s), padding) * r).sum(), wt), "dw")
    _close(db, rg.finite_difference(lambda v: (rg.conv2d_forward(x, wt, v, (s, s), padding) * r).sum(), b), "db")


# --------------------------------------------------------------------------- DEPTHWISE_CONV_2D
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("h,w,k,s,padding", CONV_CASES)
def test_depthwise_forward_equals_naive_loops_and_graph_reference(h, w, k, s, padding, m):
    rng = np.random.default_rng(3)
    x, wt, b = rng.normal(size=(2, h, w, 3)), rng.normal(size=(1, k, k, 3 * m)), rng.normal(size=3 * m)
    y = rg.depthwise_conv2d_forward(x, wt, b, (s, s), padding)
    _close(y, _naive_conv(x, wt, b, (s, s), padding, True), "depthwise forward vs loops")
    o = dict(padding=padding, stride_h=s, stride_w=s, activation="NONE", depth_multiplier=m)
    _close(y, reference._depthwise([x, wt, b], o, None), "depthwise forward vs reference.py")


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("h,w,k,s,padding", CONV_CASES)
def test_depthwise_backward_equals_finite_differences(h, w, k, s, padding, m):
    rng = np.random.default_rng(4)
    x, wt, b = rng.normal(size=(2, h, w, 3)), rng.normal(size=(1, k, k, 3 * m)), rng.normal(size=3 * m)
    f = rg.depthwise_conv2d_forward
    y = f(x, wt, b, (s, s), padding)
    r = rng.normal(size=y.shape)
    dx, dw, db = rg.depthwise_conv2d_backward(r, x, wt, (s, s), padding)
    _close(dx, rg.finite_difference(lambda v: (f(v, wt, b, (s, s), padding) * r).sum(), x), "dx")
    _close(dw, rg.finite_difference(lambda v: (f(x, v, b, (s, s), padding) * r).sum(), wt), "dw")
    _close(db, rg.finite_difference(lambda v: (f(x, wt, v, (s, s), padding) * r).sum(), b), "db")


# ----------------------------------------------------------------------------- RELU6 and ADD
def test_relu6_backward_from_the_output_equals_finite_differences():
    rng = np.random.default_rng(5)
    x = _away_from_kinks(rng, (3, 4, 5, 6))
    y = rg.relu6_forward(x)
    assert (y == 0).any() and (y == 6).any() and ((y > 0) & (y < 6)).any()  # all three regions
    r = rng.normal(size=y.shape)
    _close(rg.relu6_backward(r, y), rg.finite_difference(lambda v: (rg.relu6_forward(v) * r).sum(), x), "relu6")


def test_relu6_backward_at_the_kinks_is_zero_as_tf():
    y = rg.relu6_forward(np.array([-1.0, 0.0, 3.0, 6.0, 7.0]))
    np.testing.assert_array_equal(rg.relu6_backward(np.ones(5), y), [0, 0, 1, 0, 0])


def test_add_backward_equals_finite_differences():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 4))
    r = rng.normal(size=a.shape)
    da, db = rg.add_backward(r)
    _close(da, rg.finite_difference(lambda v: ((v + b) * r).sum(), a), "da")
    _close(db, rg.finite_difference(lambda v: ((a + v) * r).sum(), b), "db")


# ----------------------------------------------------------------------- AVERAGE_POOL / MEAN
@pytest.mark.parametrize("h,w,k,s,padding", [(7, 7, 7, 1, "VALID"), (6, 6, 2, 2, "VALID"), (5, 7, 3, 2, "SAME"),
                                             (5, 5, 3, 1, "SAME")])
def test_avg_pool_forward_and_backward(h, w, k, s, padding):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, h, w, 3))
    y = rg.avg_pool2d_forward(x, (k, k), (s, s), padding)
    o = dict(padding=padding, stride_h=s, stride_w=s, filter_h=k, filter_w=k, activation="NONE")
    _close(y, reference._pool("avg")([x], o, None), "avg pool forward vs reference.py")
    r = rng.normal(size=y.shape)
    _close(rg.avg_pool2d_backward(r, x.shape, (k, k), (s, s), padding),
           rg.finite_difference(lambda v: (rg.avg_pool2d_forward(v, (k, k), (s, s), padding) * r).sum(), x), "dx")


@pytest.mark.parametrize("keepdims", [True, False])
def test_mean_backward_equals_finite_differences(keepdims):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 4, 3, 5))
    y = rg.mean_forward(x, keepdims)
    _close(y, x.mean(axis=(1, 2), keepdims=keepdims), "mean")
    r = rng.normal(size=y.shape)
    _close(rg.mean_backward(r, x.shape), rg.finite_difference(lambda v: (rg.mean_forward(v, keepdims) * r).sum(), x),
           "dx")


# ------------------------------------------------------------------ inverted residual block
def _kink_margin(x, p, stride):
    """Smallest distance of a ReLU6 pre-activation of the block from 0 or 6: finite
    differences (eps 1e-6) are exact only when no perturbation crosses a kink."""
    pre = []
    h = x
    if "expand_w" in p:
        e = rg.conv2d_forward(h, p["expand_w"], p["expand_b"])
        pre.append(e)
        h = rg.relu6_forward(e)
    pre.append(rg.depthwise_conv2d_forward(h, p["depthwise_w"], p["depthwise_b"], (stride, stride), "SAME"))
    v = np.concatenate([a.ravel() for a in pre])
    return min(np.abs(v).min(), np.abs(v - 6).min())


@pytest.mark.parametrize("c_in,c_out,stride,expansion", [
    (4, 4, 1, 3),   # with the skip (block_2-like)
    (4, 6, 2, 3),   # stride 2, no skip (block_1-like)
    (4, 5, 1, 3),   # stride 1, channels change: no skip (block_10-like)
    (4, 3, 1, 1),   # expansion 1: no expand conv (expanded_conv)
])
def test_inverted_residual_block_backward_equals_finite_differences(c_in, c_out, stride, expansion):
    rng = np.random.default_rng(9)
    p = rg.init_inverted_residual(rng, c_in, c_out, expansion)
    for _ in range(100):  # an input whose ReLU6 pre-activations all lie >= 1e-4 from 0 and 6
        x = rng.normal(size=(2, 5, 6, c_in))
        if _kink_margin(x, p, stride) >= 1e-4:
            break
    else:
        pytest.fail("no input away from the ReLU6 kinks in 100 draws")
    y, cache = rg.inverted_residual_forward(x, p, stride)
    assert cache["skip"] == (stride == 1 and c_in == c_out)
    # Finite differences need every ReLU6 input away from its kinks at this point.
    for key in ("expand_y", "dw_y"):
        if key in cache:
            v = cache[key]
            assert ((v > 0) & (v < 6)).mean() > 0.3, f"{key}: most units saturated, a weak test"
    r = rng.normal(size=y.shape)
    dx, grads = rg.inverted_residual_backward(r, p, cache)

    def loss(**over):
        q = dict(p)
        xx = over.pop("x", x)
        q.update(over)
        return (rg.inverted_residual_forward(xx, q, stride)[0] * r).sum()

    _close(dx, rg.finite_difference(lambda v: loss(x=v), x), "dx")
    assert set(grads) == set(p)
    for k in p:
        _close(grads[k], rg.finite_difference(lambda v, k=k: loss(**{k: v}), p[k]), k)


def test_inverted_residual_skip_adds_the_input():
    rng = np.random.default_rng(10)
    p = rg.init_inverted_residual(rng, 4, 4, 2)
    x = rng.normal(size=(1, 4, 4, 4))
    with_skip, _ = rg.inverted_residual_forward(x, p, 1, skip=True)
    without, _ = rg.inverted_residual_forward(x, p, 1, skip=False)
    _close(with_skip - without, x, "skip")


# ----------------------------------------------------------- the top of the real .tflite graph
@pytest.fixture(scope="module")
def ptq_ref():
    import conftest
    return reference.ReferenceModel(conftest.PTQ_MODEL)


def test_graph_gradients_of_the_real_model_equal_finite_differences(ptq_ref):
    """The whole-graph reference on the ptq model at 64x64 (2x2 final map, for speed): the
    gradient of one element of a kernel and of a bias in three ops (Conv_1, a projection after a
    residual ADD, a stride-2 depthwise) against central differences of the loss, float64."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (2, 64, 64, 3))
    y = np.array([1, 3])
    hk, hb = rng.normal(0, 0.05, (1280, 5)), rng.normal(0, 0.1, 5)
    convs = [i for i, op in enumerate(ptq_ref.ops) if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D")][:52]
    first = convs[35]
    ref = rg.graph_loss_and_grads(ptq_ref, x, y, hk, hb, first)
    assert sorted(ref["by_op"]) == [i for i in convs if i >= first]
    picks = [convs[-1], convs[44], next(i for i in convs[36:] if ptq_ref.ops[i]["type"] == "DEPTHWISE_CONV_2D"
                                         and ptq_ref.ops[i]["options"]["stride_h"] == 2)]
    for op in picks:
        for which in (1, 2):  # kernel, bias
            t = ptq_ref.ops[op]["inputs"][which]
            g = ref["by_op"][op][which - 1]
            k = np.unravel_index(int(np.argmax(np.abs(g))), g.shape)
            base = ptq_ref.tensors[t]["data"]

            def loss_at(delta):
                w = base.copy()
                w[k] += delta
                return rg.graph_loss_and_grads(ptq_ref, x, y, hk, hb, len(ptq_ref.ops), {t: w})["loss"]

            eps = 1e-5
            fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            assert abs(g[k] - fd) <= 1e-6 * np.abs(g).max(), (op, which, g[k], fd)
