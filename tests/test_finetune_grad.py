"""Fine-tuning gradients of the real MobileNetV2 (csrc backward through the base) against
(a) Keras' MobileNetV2 carrying the same folded weights (tests/keras_grad.py, needs TensorFlow),
for fine_tune_at 100 and the whole network (see the tests for the whole network's bound), and (b) the NumPy float64 graph reference of
ops (tests/reference_grad.py) for the top from layer 100 (no TF needed).

Loss: the head GAP -> Dense(softmax) -> sparse categorical cross-entropy (mean over the batch).
Our side: models.finetune.BaseTuner (the engine) + NumPy for the head. Tolerance: gradients
to 1e-4 relative to each tensor's largest gradient, loss to 1e-5 relative, down to where two
float32 computations part at a ReLU6 edge. Keras runs in float32 like the engine: measured on a
Zen 4, ours vs Keras float32 agree to ~1e-6, while Keras float64 vs Keras float32 differ by up
to ~1e-2 on these int8-trained weights (activations that sit on ReLU6's 0 / 6 edges switch
their gradient mask with the rounding), so float64 Keras is not a 1e-4 reference for a float32
computation of this network. Where such a parting falls depends on the CPU's kernels (a Zen 3,
AVX2, parts from Keras float32 near the top and from float64 NumPy at block 14): see
_assert_parts_only_at_a_relu6_edge.
"""
import numpy as np
import pytest

import reference_grad as R
from conftest import gradient_batch
from tflite_transfer import applications
from tflite_transfer.applications import mobilenet_v2 as mv
from tflite_transfer.models.finetune import BaseTuner

C = 5


@pytest.fixture(scope="module")
def batch():
    photos, y, head_kernel, head_bias = gradient_batch(C)
    return mv.preprocess_input(photos).astype(np.float32), y, head_kernel, head_bias


def ours(base, x, y, hk, hb):
    """(loss, features, {op: (dkernel, dbias)}) from the engine, head in float64 NumPy."""
    tuner = BaseTuner(base)
    f = tuner.forward(x).astype(np.float64)
    z = f @ hk + hb
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(x)
    loss = -np.log(p[np.arange(n), y]).mean()
    dz = (p - np.eye(C)[y]) / n
    grads, variables = tuner.backward((dz @ hk.T).astype(np.float32))
    by_tensor = {id(v): g for g, v in zip(grads, variables)}
    ops = base.model.ops
    by_op = {}
    for t, v in tuner.values.items():
        if id(v) not in by_tensor:
            continue
        op = next(o for o in ops if t in o["inputs"][1:])
        k, b = by_op.get(op["index"], (None, None))
        g = by_tensor[id(v)].reshape(tuner.shapes[t]).copy()
        if t == op["inputs"][1]:
            k = g
        else:
            b = g
        by_op[op["index"]] = (k, b)
    return loss, f, by_op


def rel_err(a, b):
    b = np.asarray(b, np.float64)
    return np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12)


def _assert_parts_only_at_a_relu6_edge(errors):
    """errors: [(what, relative error)] per gradient tensor of the top from layer 100 (~36),
    ordered from the loss down (the order of the backward pass).

    Two float32 computations of this network part where an activation sits within rounding
    of ReLU6's 0 or 6: the other side takes the other gradient mask, and every gradient
    below that point moves by ~1e-3 (the tensors above it stay at float32 rounding). Where,
    if anywhere, depends on the kernels oneDNN picks for the CPU: measured against float64
    NumPy, no parting on a Zen 4 (AVX-512, all within 1e-4); on a Zen 3 (AVX2) a parting at
    block 14's expand conv: the 24 tensors above it within 3.1e-6, the 12 below 1.1e-3 to
    9.9e-3. So: within 1e-4 down to the first tensor that is not, at least half of them;
    below it within 2e-2 (Keras float32 vs float64: up to 1.4e-2 per op). A wrong backward
    op breaks the first half at the top, or moves a tensor by far more."""
    first = next((k for k, (_, e) in enumerate(errors) if e > 1e-4), len(errors))
    assert len(errors) >= 30 and first >= len(errors) // 2, errors[:first + 1]
    worst = max(errors[first:], key=lambda we: we[1], default=("", 0.0))
    assert worst[1] <= 2e-2, worst


@pytest.fixture(scope="module")
def base():
    return applications.MobileNetV2(include_top=False, weights="imagenet_ptq")


def _keras(base, batch, fine_tune_at, dtype):
    pytest.importorskip("tensorflow", reason="TensorFlow/Keras not installed")
    import keras_grad

    x, y, hk, hb = batch
    return keras_grad.loss_and_grads(base, x, y, hk, hb, fine_tune_at=fine_tune_at, dtype=dtype)


def _compare(base, batch, fine_tune_at, ref):
    """Our (loss, {op: (kernel, bias)}) next to Keras' `ref`, with the trained op set checked."""
    x, y, hk, hb = batch
    base.fine_tune_from(fine_tune_at)
    loss, _, by_op = ours(base, x, y, hk, hb)
    want = {op: kb for op, kb in ref["by_op"].items() if kb[0] is not None or kb[1] is not None}
    assert sorted(by_op) == sorted(want)
    return loss, by_op, want


def test_same_loss_and_gradients_as_keras_from_layer_100(base, batch):
    ref = _keras(base, batch, 100, "float32")
    loss, by_op, want = _compare(base, batch, 100, ref)
    assert loss == pytest.approx(ref["loss"], rel=1e-5)
    errors = [(f"op {op} {what}", rel_err(mine, theirs)) for op, (k_ref, b_ref) in want.items()
              for mine, theirs, what in ((by_op[op][0], k_ref, "kernel"), (by_op[op][1], b_ref, "bias"))
              if theirs is not None]
    # Keras float32 and ours part at a ReLU6 edge near the top on some CPUs (measured on a Zen 3:
    # from op 62 down, 3.6e-4 to 1.0e-2; on a Zen 4 all within 1e-6): only the bound below the
    # parting holds everywhere. The test above it is the NumPy float64 one (next but one).
    worst = max(errors, key=lambda we: we[1])
    assert len(errors) >= 30 and worst[1] <= 2e-2, worst


def test_whole_network_gradients_as_close_to_float64_as_keras_float32(base, batch):
    # Whole network (fine_tune_at=0), against Keras in float64. Many activations of these
    # int8-trained weights sit on ReLU6's 0 / 6 edges, so float32 rounding flips gradient masks
    # and every float32 implementation lands ~1e-3 away from float64: measured, Keras float32 vs
    # Keras float64 from 6e-4 to 1.4e-2 relative per op (median ~2e-3); ours vs Keras float64
    # 3e-4 to 7.5e-3 (median ~1e-3), and ours vs Keras float32 either ~1e-6 or ~1e-3 depending
    # on where the two roundings part. 1e-4 is therefore not a meaningful bound for the whole
    # network in float32 (it holds from layer 100 up: the test above). Bounds here: every op no
    # farther from float64 than Keras float32's worst op, and the median no farther than twice
    # Keras float32's median.
    ref64 = _keras(base, batch, 0, "float64")
    ref32 = _keras(base, batch, 0, "float32")
    loss, by_op, want = _compare(base, batch, 0, ref64)
    assert loss == pytest.approx(ref64["loss"], rel=1e-5)
    mine, keras = [], []
    for op, (k64, b64) in want.items():
        for m, k32, t in zip(by_op[op], ref32["by_op"][op], (k64, b64)):
            if t is not None:
                mine.append((rel_err(m, t), op))
                keras.append(rel_err(k32, t))
    worst, median = max(keras), float(np.median(keras))
    assert 1e-4 < median and worst < 5e-2  # the reference's own float32 spread, as measured
    for e, op in mine:
        assert e <= worst, f"op {op}: relative error {e:.2e} vs float64 (Keras float32's worst: {worst:.2e})"
    assert float(np.median([e for e, _ in mine])) <= 2 * median


def test_top_from_layer_100_matches_numpy_float64(base, batch):
    """The whole top from layer 100 (blocks 11-16, Conv_1) in float64 NumPy from the cut."""
    x, y, hk, hb = batch
    base.fine_tune_from(100)
    tuner = BaseTuner(base)
    eng = tuner.engine(len(x))
    cut = eng.run_bottom(x)
    model, ops = base.model, base.model.ops
    v = {t: c.astype(np.float64) for (t, _), c in zip(eng.cut, cut)}
    w = {t: model.get_tensor(t).astype(np.float64) for t in tuner.values}
    first = tuner.train_from
    top = [o for o in ops if o["index"] >= first and o["index"] <= _producer(ops, base.feature_map_tensor)]
    for o in top:
        a, opt = v[o["inputs"][0]], o["options"]
        s = (opt.get("stride_h", 1), opt.get("stride_w", 1))
        if o["type"] == "CONV_2D":
            out = R.conv2d_forward(a, w[o["inputs"][1]], w[o["inputs"][2]], s, opt["padding"])
        elif o["type"] == "DEPTHWISE_CONV_2D":
            out = R.depthwise_conv2d_forward(a, w[o["inputs"][1]], w[o["inputs"][2]], s, opt["padding"])
        elif o["type"] == "ADD":
            out = a + v[o["inputs"][1]]
        else:
            pytest.fail(f"unexpected op {o['type']} in the top")
        v[o["outputs"][0]] = R.relu6_forward(out) if opt.get("activation") == "RELU6" else out
    fmap = v[base.feature_map_tensor]
    f = fmap.mean(axis=(1, 2))
    z = f @ hk + hb
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(x)
    dz = (p - np.eye(C)[y]) / n
    g = {base.feature_map_tensor: np.broadcast_to((dz @ hk.T)[:, None, None, :] / (fmap.shape[1] * fmap.shape[2]),
                                                  fmap.shape)}
    ref = {}
    for o in reversed(top):
        d, opt = g[o["outputs"][0]], o["options"]
        if opt.get("activation") == "RELU6":
            d = R.relu6_backward(d, v[o["outputs"][0]])
        a = v[o["inputs"][0]]
        s = (opt.get("stride_h", 1), opt.get("stride_w", 1))
        if o["type"] == "ADD":
            dxs = R.add_backward(d)
        else:
            fn = R.conv2d_backward if o["type"] == "CONV_2D" else R.depthwise_conv2d_backward
            dx, ref[o["inputs"][1]], ref[o["inputs"][2]] = fn(d, a, w[o["inputs"][1]], s, opt["padding"])
            dxs = [dx]
        for t, dt in zip(o["inputs"], dxs):  # activations only (dxs is as long as them)
            g[t] = g.get(t, 0) + dt
    # ours, from the cached cut
    feats = tuner.forward_top(cut)
    np.testing.assert_allclose(feats, f, rtol=0, atol=1e-5 * np.abs(f).max())
    grads, variables = tuner.backward((dz @ hk.T).astype(np.float32))
    mine = {t: tuner.grads[t].reshape(tuner.shapes[t]) for t in tuner.values if tuner.trainable[t]}
    assert sorted(mine) == sorted(t for t in ref if tuner.trainable.get(t))
    # from the loss down: the top's ops in reverse, each op's kernel and bias
    order = [t for o in reversed(top) for t in o["inputs"][1:] if t in mine]
    _assert_parts_only_at_a_relu6_edge([(f"tensor {t} ({model.tensors[t]['name'][:40]})", rel_err(mine[t], ref[t]))
                                        for t in order])


def _producer(ops, t):
    return next(o["index"] for o in ops if o["outputs"][0] == t)
