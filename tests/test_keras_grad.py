"""Checks the Keras gradient harness ``tests/keras_grad.py`` itself (needs TensorFlow): its Keras
model computes our engine's features, its loss and head gradients equal a NumPy float64
computation from those features, it returns gradients for exactly the layers fine_tune_at
unfreezes (and the ops our masks say), and a batch-norm beta gradient is the derivative of the
loss w.r.t. the folded bias (finite differences in float64)."""
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="TensorFlow/Keras not installed")
pytest.importorskip("keras", reason="TensorFlow/Keras not installed")

import keras_grad  # noqa: E402
from conftest import gradient_batch  # noqa: E402
from tflite_transfer import applications  # noqa: E402
from tflite_transfer.applications import mobilenet_v2 as mv  # noqa: E402

C = 5


@pytest.fixture(scope="module")
def batch():
    photos, y, head_kernel, head_bias = gradient_batch(C)
    assert list(y) == [0, 1, 2, 3, 4]  # the 5 shared photos, one label each
    return photos, mv.preprocess_input(photos), y, head_kernel, head_bias


@pytest.fixture(scope="module")
def ptq():
    return applications.MobileNetV2(include_top=False, weights="imagenet_ptq")


@pytest.mark.parametrize("weights", ["imagenet_ptq", "imagenet_quant"])
def test_keras_features_equal_engine_features(weights, batch):
    # float32 through 52 convolutions in different summation orders: the frozen-feature parity of
    # test_keras_parity measured 1.4e-5 / 1.8e-5 relative; same bound here: 2e-5 * max|features|.
    photos, x, y, hk, hb = batch
    base = applications.MobileNetV2(include_top=False, weights=weights)
    ref = keras_grad.loss_and_grads(base, x, y, hk, hb, fine_tune_at=150)
    ours = base.predict(photos, pooling="avg")
    assert ref["features"].shape == ours.shape == (5, 1280)
    scale = np.abs(ours).max()
    assert scale > 0.5
    assert np.abs(ref["features"] - ours).max() <= 2e-5 * scale


def test_loss_and_head_gradients_equal_numpy_from_the_features(ptq, batch):
    _, x, y, hk, hb = batch
    ref = keras_grad.loss_and_grads(ptq, x, y, hk, hb, fine_tune_at=150)
    f = ref["features"].astype(np.float64)
    z = f @ hk + hb
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(5), y]).mean()
    d = (p - np.eye(C)[y]) / 5
    # float32 Keras vs float64 NumPy on the same features: 1e-5 relative.
    assert ref["loss"] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(ref["head"]["kernel"], f.T @ d, rtol=0, atol=1e-5 * np.abs(f.T @ d).max())
    np.testing.assert_allclose(ref["head"]["bias"], d.sum(0), rtol=0, atol=1e-5 * np.abs(d.sum(0)).max())


@pytest.mark.parametrize("fine_tune_at", [100, 0])
def test_gradients_cover_exactly_the_unfrozen_layers_and_ops(ptq, batch, fine_tune_at):
    _, x, y, hk, hb = batch
    ref = keras_grad.loss_and_grads(ptq, x[:2], y[:2], hk, hb, fine_tune_at=fine_tune_at)
    want = {l.name for l in ptq.layers[fine_tune_at:] if type(l).__name__ in
            ("Conv2D", "DepthwiseConv2D", "BatchNormalization")}
    assert set(ref["grads"]) == want
    ptq.fine_tune_from(fine_tune_at)
    masks = ptq.trainable_op_masks()
    assert {op: (k is not None, b is not None) for op, (k, b) in ref["by_op"].items()} == \
        {op: m for op, m in masks.items() if any(m)}
    # 100: block_11 depthwise + project, 3 convs in each of blocks 12-16, Conv_1.
    assert len(ref["by_op"]) == (52 if fine_tune_at == 0 else 2 + 5 * 3 + 1)
    for op, (k, b) in ref["by_op"].items():
        tensors = ptq.model.ops[op]["inputs"]
        assert k.shape == tuple(ptq.model.tensors[tensors[1]]["shape"])
        assert b.shape == tuple(ptq.model.tensors[tensors[2]]["shape"])
        assert np.isfinite(k).all() and np.isfinite(b).all() and np.abs(k).max() > 0


def test_beta_gradient_is_the_folded_bias_gradient(ptq, batch):
    """In float64, d loss / d beta (= the folded bias) of two batch norms, one channel each,
    against central differences of the Keras loss; finite differences with eps 1e-4 in float64
    are accurate to ~1e-8 here, bound 1e-5 relative to the largest gradient of the layer."""
    _, x, y, hk, hb = batch
    x, y = x[:2], y[:2]
    model = keras_grad.keras_mobilenet_v2(ptq, dtype="float64")
    ref = keras_grad.loss_and_grads(ptq, x, y, hk, hb, fine_tune_at=120, dtype="float64", model=model)
    for name in ("block_16_project_BN", "Conv_1_bn"):
        g = ref["grads"][name]["beta"]
        k = int(np.argmax(np.abs(g)))
        layer = model.get_layer(name)
        weights = layer.get_weights()

        def loss_at(delta):
            beta = weights[1].copy()
            beta[k] += delta
            layer.set_weights([weights[0], beta, weights[2], weights[3]])
            return keras_grad.loss_and_grads(ptq, x, y, hk, hb, fine_tune_at=154, dtype="float64", model=model)["loss"]

        eps = 1e-4
        fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        layer.set_weights(weights)
        assert abs(g[k] - fd) <= 1e-5 * np.abs(g).max(), (name, g[k], fd)


def test_keras_float64_gradients_equal_the_numpy_graph_reference(ptq, batch):
    """Keras (its own graph, float64) and the NumPy float64 graph reference
    (reference_grad.graph_loss_and_grads on the .tflite ops) agree on the loss and on every
    kernel and bias gradient from fine_tune_at=100 up: max |diff| <= 1e-7 * max |grad| per op
    (both float64 on the same float32 weights; what differs is only summation order)."""
    import conftest
    import reference
    import reference_grad

    _, x, y, hk, hb = batch
    x, y = x[:2], y[:2]
    ptq.fine_tune_from(100)
    theirs = keras_grad.loss_and_grads(ptq, x, y, hk, hb, fine_tune_at=100, dtype="float64")
    # The same float32 weights on both sides: the engine's dequantized constants (the reference
    # reader dequantizes in float64, which alone moves the features by ~1e-6 relative).
    engine_weights = {t: np.asarray(ptq.model.get_tensor(t), np.float64) for op in ptq.model.ops
                      if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D") for t in op["inputs"][1:3]}
    ours = reference_grad.graph_loss_and_grads(reference.ReferenceModel(conftest.PTQ_MODEL), x, y,
                                               hk.astype(np.float64), hb.astype(np.float64), ptq.first_trainable_op(),
                                               overrides=engine_weights)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-9)
    assert set(ours["by_op"]) >= set(theirs["by_op"]) and len(theirs["by_op"]) == 18
    for op, (k, b) in theirs["by_op"].items():
        for got, want in zip(ours["by_op"][op], (k, b)):
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-7 * np.abs(want).max(), op
