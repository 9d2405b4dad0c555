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
        y_pred = np.asarray(y_pred, np.float64)
        y_true = check_labels(self.kind, y_true, y_pred, f"Loss {self.name!r}")
        per = self.per_sample(y_true, y_pred)
        if sample_weight is not None:
            per = per * np.asarray(sample_weight, np.float64).reshape(-1)
        return float(np.sum(per) / max(len(per), 1))

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits}, label_smoothing={self.label_smoothing})"


_HINT = {
    "sparse_categorical": "one-hot labels need categorical_crossentropy / categorical_accuracy / "
                          "top_k_categorical_accuracy",
    "categorical": "integer labels need sparse_categorical_crossentropy / sparse_categorical_accuracy / "
                   "sparse_top_k_categorical_accuracy, or 'accuracy'",
    "binary": "binary labels are 0/1 of shape (N,) or (N, units)",
}


def check_labels(kind, y_true, y_pred, who):
    """Checks that y_true has the format `kind` expects against y_pred (N, C); returns y_true as an array.

    kind: "sparse_categorical" (integer class indices (N,) or (N, 1) in [0, C)), "categorical"
    (one-hot / probabilities (N, C)) or "binary" ((N,) or (N, units) values in [0, 1]). Shared by the
    losses called directly and by the metrics (checked at every update, so the first one catches a
    mismatch). Raises ValueError naming `who` (the loss or metric), both shapes and the fix.
    """
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"{who} expects y_pred of shape (N, C). Received: y_pred.shape={p.shape}")
    n, c = p.shape
    bad = None
    if kind == "sparse_categorical":
        yy = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        if yy.ndim != 1 or len(yy) != n:
            bad = f"integer class indices of shape ({n},)"
        elif not (np.issubdtype(yy.dtype, np.integer) or
                  (np.issubdtype(yy.dtype, np.floating) and np.all(np.floor(yy) == yy))):
            bad = "integer class indices"
        elif yy.size and (yy.min() < 0 or yy.max() >= c):
            bad = f"class indices in [0, {c})"
        if bad is None:
            return yy
    elif kind == "categorical":
        if y.shape != (n, c):
            bad = f"one-hot labels of shape ({n}, {c})"
    else:
        if y.size != p.size or len(y) != n:
            bad = f"0/1 labels of shape ({n},) or ({n}, {c})"
    if bad is not None:
        raise ValueError(f"{who} expects {bad}. Received: y_true.shape={y.shape}, y_true.dtype={y.dtype}, "
                         f"y_pred.shape={p.shape} ({_HINT[kind]}).")
    return y


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
