"""Losses, Keras names and formulas: sparse / categorical / binary cross-entropy.

Each loss is a class (``SparseCategoricalCrossentropy(from_logits=False)``) and
a string (``"sparse_categorical_crossentropy"``). Calling an instance computes
the loss in NumPy float64 (Keras' "sum_over_batch_size" reduction: the sample-
weighted sum divided by the batch size). Inside ``Sequential.fit`` the same
loss runs in C fused with the output softmax / sigmoid (exact log-softmax;
Keras clips probabilities to [1e-7, 1 - 1e-7] when from_logits=False, which
only differs for probabilities below 1e-7).
"""
import numpy as np


class Loss:
    """Base class. Attributes: name (str), from_logits (bool), label_smoothing (float in [0, 1)).

    ``kind`` is "sparse_categorical", "categorical" or "binary" and tells
    ``Sequential`` how to read labels.
    """

    kind = None

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        ls = float(label_smoothing)
        if not (0.0 <= ls < 1.0):
            raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = ls
        self.name = name or _NAMES[type(self)]

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Scalar float loss of y_pred (N, C) against y_true; sample_weight (N,) or None."""
        per = self.per_sample(y_true, np.asarray(y_pred, np.float64))
        if sample_weight is not None:
            per = per * np.asarray(sample_weight, np.float64).reshape(-1)
        return float(np.sum(per) / max(len(per), 1))

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits}, label_smoothing={self.label_smoothing})"


def _log_probs(y_pred, from_logits):
    if from_logits:
        z = y_pred - y_pred.max(axis=-1, keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
    return np.log(np.clip(p, 1e-7, 1 - 1e-7))


class CategoricalCrossentropy(Loss):
    """``-sum_j t_j log p_j`` with one-hot / probability targets y_true (N, C);
    label smoothing: t = t (1 - ls) + ls / C. Keras' ``losses.CategoricalCrossentropy``."""

    kind = "categorical"

    def per_sample(self, y_true, y_pred):
        t = np.asarray(y_true, np.float64)
        c = y_pred.shape[-1]
        t = t * (1 - self.label_smoothing) + self.label_smoothing / c
        return -np.sum(t * _log_probs(y_pred, self.from_logits), axis=-1)


class SparseCategoricalCrossentropy(Loss):
    """``-log p[y]`` with integer labels y_true (N,) in [0, C). Keras' ``losses.SparseCategoricalCrossentropy``
    (no label smoothing, as in Keras)."""

    kind = "sparse_categorical"

    def __init__(self, from_logits=False, name=None):
        super().__init__(from_logits=from_logits, label_smoothing=0.0, name=name)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def per_sample(self, y_true, y_pred):
        y = np.asarray(y_true).reshape(-1).astype(np.int64)
        return -_log_probs(y_pred, self.from_logits)[np.arange(len(y)), y]


class BinaryCrossentropy(Loss):
    """Mean over the last axis of ``-t log p - (1 - t) log(1 - p)``, targets in [0, 1];
    label smoothing t = t (1 - ls) + ls / 2. Keras' ``losses.BinaryCrossentropy``."""

    kind = "binary"

    def per_sample(self, y_true, y_pred):
        t = np.asarray(y_true, np.float64).reshape(y_pred.shape)
        t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            z = y_pred
            per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        else:
            p = np.clip(y_pred, 1e-7, 1 - 1e-7)
            per = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        return per.reshape(len(per), -1).mean(axis=-1)


_NAMES = {
    CategoricalCrossentropy: "categorical_crossentropy",
    SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
    BinaryCrossentropy: "binary_crossentropy",
}
_BY_NAME = {v: k for k, v in _NAMES.items()}


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample loss (N,) float64; see SparseCategoricalCrossentropy."""
    return SparseCategoricalCrossentropy(from_logits).per_sample(y_true, np.asarray(y_pred, np.float64))


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample loss (N,) float64; see CategoricalCrossentropy."""
    return CategoricalCrossentropy(from_logits, label_smoothing).per_sample(y_true, np.asarray(y_pred, np.float64))


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample loss (N,) float64; see BinaryCrossentropy."""
    return BinaryCrossentropy(from_logits, label_smoothing).per_sample(y_true, np.asarray(y_pred, np.float64))


def get(identifier):
    """A Loss instance from a Loss, a name (str) or a config dict {"class_name", "config"}.

    Raises ValueError naming `loss` for anything else.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in {c.__name__ for c in _NAMES}:
        cls = next(c for c in _NAMES if c.__name__ == identifier["class_name"])
        return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"`loss` must be one of {sorted(_BY_NAME)} or a Loss instance. Received: loss={identifier!r}")


def serialize(loss):
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
