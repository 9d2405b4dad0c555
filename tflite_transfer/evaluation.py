"""Evaluation in one call: what the TensorFlow transfer-learning tutorial does by hand after
training (predict the validation set, scikit-learn's classification report and confusion matrix,
look at the misclassified photos).

``report(model, ds)`` returns an ``EvaluationReport``; ``tflite_transfer.visualization`` plots it.
"""
import dataclasses

import numpy as np

__all__ = ["EvaluationReport", "report"]


@dataclasses.dataclass
class EvaluationReport:
    """The result of ``report``. N = number of samples, C = number of classes.

    Attributes:
      probabilities: float32 (N, C) model outputs (for a 1-unit sigmoid model: (N, 2), [1 - p, p]).
      y_pred: int64 (N,) predicted class (argmax of `probabilities`).
      y_true: int64 (N,) true class, in the same order (a dataset's ``file_paths`` order).
      confidence: float32 (N,) the probability of the predicted class.
      class_names: list[str] of length C.
      classification_report: str, scikit-learn's ``classification_report`` text.
      classification_report_dict: dict, the same with ``output_dict=True``.
      confusion_matrix: int64 (C, C), rows true class, columns predicted (scikit-learn's).
      accuracy: float in [0, 1].
      misclassified: int64 (M,) indices i with y_pred[i] != y_true[i], ascending.
      file_paths: list[str] (N) for a dataset, else None.
      misclassified_paths: list[str] (M) for a dataset, else None.
    """

    probabilities: np.ndarray
    y_pred: np.ndarray
    y_true: np.ndarray
    confidence: np.ndarray
    class_names: list
    classification_report: str
    classification_report_dict: dict
    confusion_matrix: np.ndarray
    accuracy: float
    misclassified: np.ndarray
    file_paths: list = None
    misclassified_paths: list = None

    def __str__(self):
        return (f"accuracy {self.accuracy:.4f} on {len(self.y_true)} samples, "
                f"{len(self.misclassified)} misclassified\n{self.classification_report}")


def _labels_to_int(y, n_classes, name):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot (categorical)
        return np.argmax(y, axis=1).astype(np.int64)
    y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 else y
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be class indices (N,), one-hot (N, C) or binary (N, 1). "
                         f"Received: {name}.shape={y.shape}")
    if y.size and (np.any(y < 0) or np.any(y >= n_classes) or np.any(y != np.round(y))):
        raise ValueError(f"`{name}` must hold class indices in [0, {n_classes}). "
                         f"Received: values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _as_probabilities(out):
    out = np.asarray(out, np.float32)
    if out.ndim != 2:
        raise ValueError(f"The model's output must be 2-D (N, units). Received: shape={out.shape}")
    if out.shape[1] == 1:  # sigmoid: class 1 probability
        out = np.concatenate([1.0 - out, out], axis=1)
    return out


def report(model, x, y=None, batch_size=32, class_names=None, digits=4):
    """Predicts `x` with `model` and compares with the true labels (the seed's hand-written evaluation).

    Args:
      model: a compiled or loaded classifier whose ``predict`` returns (N, C) probabilities (or
        (N, 1) for a sigmoid output).
      x: an ``ImageDataset`` with labels (``image_dataset_from_directory``) or a NumPy array of
        images (N, H, W, 3) (then `y` is required).
      y: labels for an array `x`: int (N,), one-hot (N, C) or binary (N, 1). Must be None for a dataset.
      batch_size (int >= 1): prediction batch size for arrays (a dataset keeps its own batches).
      class_names (list[str] | None): default: the dataset's ``class_names``, else "0", "1", ...
      digits (int): digits of the report text.

    A dataset is read once in its ``file_paths`` order, whatever its ``shuffle`` setting (the epoch
    shuffle of a training set is not applied), so ``y_true``, ``y_pred`` and ``file_paths`` line up
    with ``ds.file_paths``; batches are predicted one by one, so the whole set is never held in memory.

    Returns:
      EvaluationReport (see its attributes).

    Raises:
      ValueError: `y` given with a dataset or missing with an array, a dataset without labels, labels
        out of range, a model output that is not (N, C).

    Follows: scikit-learn's ``classification_report`` / ``confusion_matrix`` (zero_division=0).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    paths = None
    if hasattr(x, "file_paths") and hasattr(x, "_batches"):
        if y is not None:
            raise ValueError("`y` must be None when `x` is a dataset (it yields the labels).")
        if getattr(x, "label_mode", "int") is None:
            raise ValueError("`x` is a dataset without labels (label_mode=None); report needs labels.")
        class_names = list(class_names or x.class_names)
        paths = list(x.file_paths)
        order = np.arange(x.num_images, dtype=np.int64)
        probs, ys = [], []
        # File order, not the (possibly shuffled) epoch order: the dataset's own loader, epoch 0 order.
        for xb, yb in x._batches(order, int(x.batch_size or 32)):
            probs.append(_as_probabilities(model.predict(xb, batch_size=len(xb), verbose=0)))
            ys.append(np.asarray(yb))
        n_cls = len(class_names)
        probs = np.concatenate(probs) if probs else np.zeros((0, n_cls), np.float32)
        y_raw = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    else:
        if y is None:
            raise ValueError("`y` is required when `x` is an array.")
        x = np.asarray(x)
        if len(x) != len(y):
            raise ValueError(f"`x` and `y` must have the same length. Received: len(x)={len(x)}, len(y)={len(y)}")
        probs = _as_probabilities(model.predict(x, batch_size=batch_size, verbose=0))
        y_raw = y
        if class_names is None:
            class_names = [str(i) for i in range(probs.shape[1])]
        class_names = list(class_names)
    n_cls = probs.shape[1]
    if len(class_names) != n_cls:
        raise ValueError(f"`class_names` has {len(class_names)} names but the model predicts {n_cls} classes.")
    y_true = _labels_to_int(y_raw, n_cls, "y")
    y_pred = np.argmax(probs, axis=1).astype(np.int64) if len(probs) else np.zeros(0, np.int64)
    labels = list(range(n_cls))
    text = classification_report(y_true, y_pred, labels=labels, target_names=class_names, digits=digits,
                                 zero_division=0)
    as_dict = classification_report(y_true, y_pred, labels=labels, target_names=class_names,
                                    output_dict=True, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    wrong = np.flatnonzero(y_pred != y_true).astype(np.int64)
    conf = probs[np.arange(len(probs)), y_pred] if len(probs) else np.zeros(0, np.float32)
    return EvaluationReport(
        probabilities=probs, y_pred=y_pred, y_true=y_true, confidence=conf.astype(np.float32),
        class_names=class_names, classification_report=text, classification_report_dict=as_dict,
        confusion_matrix=cm, accuracy=float(np.mean(y_pred == y_true)) if len(y_true) else float("nan"),
        misclassified=wrong, file_paths=paths,
        misclassified_paths=None if paths is None else [paths[i] for i in wrong])
