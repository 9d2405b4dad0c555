"""Rescaling and GlobalMaxPooling2D: hand-computed values and NumPy float64 references.

Tolerances: float32 layer outputs vs float64 references 1e-6 relative (one rounding of a product
and a sum); the engine's pooled features 1e-5 of the largest value (float32 sums in another order).
"""
import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import layers as L
from tflite_transfer.models import load_model

from test_sequential import FrozenBase  # the stand-in base with predict(pooling=...)


# ------------------------------------------------------------------------------ Rescaling


@pytest.mark.parametrize("scale, offset, expected", [
    (1 / 255, 0.0, [0.0, 0.2, 1.0]),               # Keras' [0, 1] rescaling
    (1 / 127.5, -1.0, [-1.0, -0.6, 1.0]),          # MobileNetV2's [-1, 1]
    (2.0, 0.5, [0.5, 102.5, 510.5]),
])
def test_rescaling_hand_values(scale, offset, expected):
    x = np.array([[0, 51, 255]], np.uint8)
    y = L.Rescaling(scale, offset)(x)
    assert y.dtype == np.float32 and y.shape == (1, 3)
    np.testing.assert_allclose(y[0], expected, rtol=1e-6, atol=1e-7)


def test_rescaling_keeps_the_shape_of_image_batches():
    x = np.arange(2 * 3 * 4 * 3, dtype=np.float64).reshape(2, 3, 4, 3)
    y = L.Rescaling(0.5, -1.0)(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x * 0.5 - 1.0, rtol=1e-6)


def test_rescaling_before_a_dense_head_trains_predicts_and_round_trips(tmp_path):
    L.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6)).astype(np.uint8)
    y = (x[:, 0] > 127).astype(int)
    m = tt.Sequential([L.Rescaling(1 / 255, -0.5), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=30, verbose=0)
    k, b = (w.astype(np.float64) for w in m.get_weights())
    z = (x.astype(np.float64) / 255 - 0.5) @ k + b
    ref = np.exp(z - z.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(m.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-6)
    assert np.mean(np.argmax(ref, 1) == y) >= 0.9  # it learned from the rescaled input
    m.save(tmp_path / "m.ttz")
    back = load_model(tmp_path / "m.ttz")
    assert (back.layers[0].scale, back.layers[0].offset) == (1 / 255, -0.5)
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


# ------------------------------------------------------------------------------ GlobalMaxPooling2D


def test_global_max_pooling_hand_values():
    # (N=2, H=2, W=3, C=2); channel 1 all negative: the max is the least negative, not 0.
    x = np.array([[[[1, -5], [7, -2], [3, -9]], [[0, -4], [2, -8], [6, -3]]],
                  [[[9, -1], [1, -7], [4, -6]], [[5, -5], [8, -2], [2, -4]]]], np.float32)
    y = L.GlobalMaxPooling2D()(x)
    assert y.dtype == np.float32 and y.shape == (2, 2)
    np.testing.assert_array_equal(y, [[7, -2], [9, -1]])
    yk = L.GlobalMaxPooling2D(keepdims=True)(x)
    assert yk.shape == (2, 1, 1, 2)
    np.testing.assert_array_equal(yk[:, 0, 0], [[7, -2], [9, -1]])
    assert L.GlobalMaxPooling2D().compute_output_shape((None, 5, 6, 2)) == (None, 2)
    assert L.GlobalMaxPooling2D(keepdims=True).compute_output_shape((None, 5, 6, 2)) == (None, 1, 1, 2)


def test_global_max_pooling_rejects_non_image_input():
    with pytest.raises(ValueError, match="4D|4-D|ndim|shape"):
        L.GlobalMaxPooling2D()(np.zeros((2, 3), np.float32))


def test_global_max_pooling_after_a_frozen_base_trains_on_max_features(tmp_path):
    """fit's feature cache asks the base for pooling="max": one full-batch SGD step must equal the
    float64 gradient step computed from max-pooled features (avg-pooled ones give another step)."""
    wpath = tmp_path / "base.npy"
    np.save(wpath, np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 4, 4, 3)).astype(np.uint8)
    y = np.arange(12) % 2
    L.set_random_seed(0)
    m = tt.Sequential([FrozenBase(wpath), L.GlobalMaxPooling2D(), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    m.build((None, 4, 4, 3))
    k0, b0 = (w.astype(np.float64) for w in m.layers[-1].get_weights())
    m.fit(x, y, batch_size=12, epochs=1, verbose=0)
    assert m.last_fit_path == "feature_cache"

    w = np.load(wpath).astype(np.float64)
    feat = np.maximum((x.astype(np.float64) / 127.5 - 1) @ w, 0).max(axis=(1, 2))  # (12, 8)
    z = feat @ k0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(2)[y]) / len(x)  # mean sparse CE over the batch
    k1, b1 = k0 - 0.1 * feat.T @ dz, b0 - 0.1 * dz.sum(0)
    k, b = m.layers[-1].get_weights()
    np.testing.assert_allclose(k, k1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b1, rtol=1e-5, atol=1e-6)
    z = feat @ k1 + b1
    np.testing.assert_allclose(m.predict(x, verbose=0).argmax(1), z.argmax(1))


def test_global_max_pooling_on_the_engine_equals_the_max_of_its_feature_map():
    """MobileNetV2 + GlobalMaxPooling2D runs as base.predict(pooling="max") (pooled in C); the
    reference is NumPy's max over the engine's unpooled feature map (verified against
    tests/reference.py in test_mobilenet_v2.py)."""
    base = tt.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights="imagenet")
    x = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3)).astype(np.uint8)
    fmap = base.predict(x, verbose=0).astype(np.float64)  # (3, 3, 3, 1280)
    ref = fmap.max(axis=(1, 2))
    out = tt.Sequential([base, L.GlobalMaxPooling2D()]).predict(x, verbose=0)
    assert out.shape == (3, 1280)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    assert np.abs(ref - fmap.mean(axis=(1, 2))).max() > 0.1  # the check tells max from average
