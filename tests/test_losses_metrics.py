"""Losses (NumPy reference and the fused C loss) against hand formulas, and
metrics against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from tflite_transfer import _core, losses, metrics

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
Y = np.array([0, 2, 0])


def test_sparse_categorical_crossentropy_is_mean_negative_log_prob():
    want = -np.mean(np.log([0.7, 0.8, 0.3]))
    assert losses.SparseCategoricalCrossentropy()(Y, P) == pytest.approx(want, rel=1e-12)
    assert losses.get("sparse_categorical_crossentropy")(Y, P) == pytest.approx(want, rel=1e-12)
    z = np.log(P) + 3.0  # logits with the same softmax
    assert losses.SparseCategoricalCrossentropy(from_logits=True)(Y, z) == pytest.approx(want, rel=1e-12)


def test_categorical_crossentropy_label_smoothing_and_sample_weight():
    t = np.eye(3)[Y]
    ts = t * 0.9 + 0.1 / 3
    per = -(ts * np.log(P)).sum(1)
    sw = np.array([1.0, 2.0, 0.5])
    got = losses.CategoricalCrossentropy(label_smoothing=0.1)(t, P, sample_weight=sw)
    assert got == pytest.approx(np.sum(per * sw) / 3, rel=1e-12)


def test_binary_crossentropy_matches_formula_from_probs_and_logits():
    p = np.array([[0.9], [0.2], [0.6]])
    y = np.array([1, 0, 0])
    want = -np.mean([np.log(0.9), np.log(0.8), np.log(0.4)])
    assert losses.BinaryCrossentropy()(y, p) == pytest.approx(want, rel=1e-9)
    z = np.log(p / (1 - p))
    assert losses.get("binary_crossentropy").__class__ is losses.BinaryCrossentropy
    assert losses.BinaryCrossentropy(from_logits=True)(y, z) == pytest.approx(want, rel=1e-9)


def test_c_fused_softmax_cross_entropy_equals_numpy_loss():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    t = np.eye(5, dtype=np.float32)[y]
    sw = rng.uniform(0.5, 2, 16).astype(np.float32)
    probs = np.full_like(z, np.nan)
    s = _core.softmax_xent_forward(z, t, sw, 0.1, probs)
    ref = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(t, z.astype(np.float64), sw)
    assert s / 16 == pytest.approx(ref, rel=1e-6)
    # and independently of the package: the formula in float64, log-sum-exp written out
    z64 = z.astype(np.float64)
    lse = np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1)) + z64.max(1)
    smoothed = t * 0.9 + 0.1 / 5
    want = np.sum(sw * -(smoothed * (z64 - lse[:, None])).sum(1))
    assert s == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(probs, np.exp(z64 - lse[:, None]), rtol=1e-6, atol=1e-7)


def test_loss_errors():
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="loss"):
        losses.get("hinge")


def test_accuracy_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    p = rng.random((50, 6))
    y = rng.integers(0, 6, 50)
    m = metrics.get("accuracy", losses.SparseCategoricalCrossentropy())
    assert isinstance(m, metrics.SparseCategoricalAccuracy) and m.name == "accuracy"
    m.update_state(y[:20], p[:20])
    m.update_state(y[20:], p[20:])
    assert m.result() == pytest.approx(accuracy_score(y, p.argmax(1)))
    cat = metrics.get("accuracy", losses.CategoricalCrossentropy())
    cat.update_state(np.eye(6)[y], p)
    assert cat.result() == pytest.approx(accuracy_score(y, p.argmax(1)))
    for k in (1, 3, 5):
        top = metrics.SparseTopKCategoricalAccuracy(k=k)
        top.update_state(y, p)
        assert top.result() == pytest.approx(top_k_accuracy_score(y, p, k=k, labels=range(6)))
    assert metrics.get("sparse_top_k_categorical_accuracy").k == 5


def test_binary_accuracy_and_reset():
    m = metrics.get("accuracy", losses.BinaryCrossentropy())
    m.update_state(np.array([1, 0, 1, 0]), np.array([[0.9], [0.4], [0.2], [0.7]]))
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    assert m.result() == 0.0
    with pytest.raises(ValueError, match="metrics"):
        metrics.get("f1")
