"""Metrics, Keras names: accuracy (resolved by the loss), sparse/categorical/binary
accuracy, sparse and one-hot top-k categorical accuracy, and Mean.

Each metric checks the label format it expects (integer indices, one-hot, 0/1) at every
update, so the first batch of fit raises a ValueError naming the metric when the labels
do not fit it (Keras reports a wrong number instead, e.g. categorical_accuracy on integer
labels).

A metric is stateful (``update_state(y_true, y_pred)``, ``result()``,
``reset_state()``) and streams over batches; the result is the fraction of
correct samples so far (float in [0, 1]). Metrics are not weighted by
class_weight (Keras' ``metrics=``, not ``weighted_metrics=``).
"""
import numpy as np

from .layers.base import _snake
from .losses import check_labels


class Metric:
    """Base class: a running weighted mean of per-sample values."""

    def __init__(self, name=None):
        self.name = name or _snake(type(self).__name__)
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    def _add(self, values, sample_weight=None):
        values = np.asarray(values, np.float64).reshape(-1)
        w = np.ones_like(values) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
        self._total += float(np.sum(values * w))
        self._count += float(np.sum(w))

    def result(self):
        """The metric value so far (float; 0.0 before any update)."""
        return self._total / self._count if self._count else 0.0

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


class Mean(Metric):
    """Weighted mean of the values passed to ``update_state(values, sample_weight=None)``."""

    def update_state(self, values, sample_weight=None):
        self._add(values, sample_weight)


class SparseCategoricalAccuracy(Metric):
    """Fraction of samples with argmax(y_pred) == y_true; y_true int (N,), y_pred (N, C)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = check_labels("sparse_categorical", y_true, y_pred, f"Metric {self.name!r} (SparseCategoricalAccuracy)")
        self._add(np.argmax(y_pred, axis=-1) == y, sample_weight)


class CategoricalAccuracy(Metric):
    """Fraction with argmax(y_pred) == argmax(y_true); both (N, C)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = check_labels("categorical", y_true, y_pred, f"Metric {self.name!r} (CategoricalAccuracy)")
        self._add(np.argmax(y_pred, axis=-1) == np.argmax(y, axis=-1), sample_weight)


class BinaryAccuracy(Metric):
    """Fraction of elements with (y_pred > threshold) == y_true (mean over the last axis per sample)."""

    def __init__(self, name=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        y_pred = y_pred.reshape(len(y_pred), -1)
        t = check_labels("binary", y_true, y_pred, f"Metric {self.name!r} (BinaryAccuracy)").reshape(y_pred.shape)
        hit = ((y_pred > self.threshold) == (t > 0.5)).reshape(len(y_pred), -1).mean(axis=-1)
        self._add(hit, sample_weight)


class SparseTopKCategoricalAccuracy(Metric):
    """Fraction of samples whose label is among the k highest scores (k=5, Keras' default)."""

    def __init__(self, k=5, name=None):
        if int(k) < 1:
            raise ValueError(f"`k` must be >= 1. Received: k={k}")
        self.k = int(k)
        super().__init__(name or "sparse_top_k_categorical_accuracy")

    _kind = "sparse_categorical"

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        y = check_labels(self._kind, y_true, y_pred, f"Metric {self.name!r} ({type(self).__name__})")
        y = (np.argmax(y, axis=-1) if self._kind == "categorical" else y).astype(np.int64)
        # Ties count as hits, as in Keras' in_top_k.
        target = y_pred[np.arange(len(y)), y]
        rank = np.sum(y_pred > target[:, None], axis=-1)
        self._add(rank < self.k, sample_weight)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class TopKCategoricalAccuracy(SparseTopKCategoricalAccuracy):
    """Fraction of samples whose one-hot label (argmax of y_true (N, C)) is among the k highest
    scores of y_pred (N, C) (k=5, Keras' ``TopKCategoricalAccuracy``; ties count as hits)."""

    _kind = "categorical"

    def __init__(self, k=5, name=None):
        super().__init__(k=k, name=name or "top_k_categorical_accuracy")




_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
}


def get(identifier, loss=None):
    """A Metric from a Metric, a name, or "accuracy"/"acc" (resolved by the loss's kind, like Keras).

    Args:
      identifier (str | Metric): the metric.
      loss (losses.Loss | None): the compiled loss, to resolve "accuracy".
    Raises:
      ValueError: unknown name (message names `metrics`).
    """
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        kind = getattr(loss, "kind", "sparse_categorical")
        cls = {"sparse_categorical": SparseCategoricalAccuracy, "categorical": CategoricalAccuracy,
               "binary": BinaryAccuracy}[kind]
        return cls(name=identifier)
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)
    raise ValueError(f"`metrics` entries must be 'accuracy', one of {sorted(_BY_NAME)} or Metric instances. "
                     f"Received: {identifier!r}")
