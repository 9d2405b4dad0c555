"""Figures for training and evaluation (matplotlib), the plots of the TensorFlow transfer-learning
tutorial as functions.

Every function returns the ``matplotlib.figure.Figure`` it drew on and takes an optional `ax`: a
``matplotlib.axes.Axes`` or, for figures with several panels/images, a sequence (or array) of Axes
with at least as many entries as panels. Without `ax` a new figure is created (it is not shown:
call ``plt.show()`` or ``fig.savefig(path)``). Nothing here changes matplotlib's global backend.

Functions: ``plot_history`` (training curves), ``plot_confusion_matrix`` (scikit-learn's
``ConfusionMatrixDisplay``), ``plot_misclassified`` (image grid with true/predicted class and
confidence), ``plot_augmented_samples`` (what the random layers do), ``plot_images`` (a batch with
labels), ``plot_precision_recall`` (per-class bars), ``save_evaluation_figures`` (all of them as PNG).
"""
import math
import os

import numpy as np

__all__ = ["plot_history", "plot_confusion_matrix", "plot_misclassified", "plot_augmented_samples",
           "plot_images", "plot_precision_recall", "save_evaluation_figures"]


def _axes(ax, n, ncols=None, panel_size=(3.2, 3.0)):
    """(figure, list of n Axes): new subplots, or the given Axes checked and flattened."""
    import matplotlib.pyplot as plt

    if ax is None:
        ncols = ncols or n
        ncols = max(1, min(ncols, n))
        nrows = math.ceil(n / ncols)
        fig, axs = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                                squeeze=False)
        axs = list(axs.ravel())
        for a in axs[n:]:
            a.set_axis_off()
        return fig, axs[:n]
    axs = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axs) < n:
        raise ValueError(f"`ax` must hold at least {n} Axes for this figure. Received: {len(axs)}")
    return axs[0].figure, axs[:n]


def _history_dict(history):
    if hasattr(history, "history"):
        h, epochs = history.history, list(getattr(history, "epoch", []) or [])
    elif isinstance(history, dict):
        h, epochs = history, []
    else:
        raise ValueError(f"`history` must be a History (fit's return value) or a dict of lists. "
                         f"Received: {type(history).__name__}")
    n = max((len(v) for v in h.values()), default=0)
    if len(epochs) != n:
        epochs = list(range(n))
    return {k: list(map(float, v)) for k, v in h.items()}, epochs


def plot_history(history, fine_tune_history=None, metrics=None, fine_tune_epoch=None, ax=None):
    """Training curves: one panel for the loss and one per metric, training and validation.

    Args:
      history: fit's ``History`` (or its ``.history`` dict: name -> list of floats per epoch).
      fine_tune_history: optional second ``History`` from fine-tuning (``fit(...,
        initial_epoch=history.epoch[-1])`` as the tutorial, or ``+ 1``); its epochs are appended to
        `history`'s, keeping fit's epoch numbers (renumbered to follow on when they restart at 0),
        and a vertical line "start of fine-tuning" marks where they begin (the tutorial's plot): on
        the shared epoch when the first fine-tuning epoch repeats the last frozen one's number,
        else half-way between them.
      metrics (list[str] | None): the quantities to plot; default "loss" then every other key
        without the "val_" prefix (learning_rate excluded).
      fine_tune_epoch (int | None): 0-based epoch where fine-tuning began, for a single combined
        history; default: the first epoch of `fine_tune_history`.
      ax: None, or a sequence of len(metrics) Axes.

    X axis: epoch, 1-based (Keras prints "Epoch 1/10"). Returns: the Figure.
    Raises: ValueError for an unknown metric name or a bad `history`.
    """
    from matplotlib.ticker import MaxNLocator

    h, epochs = _history_dict(history)
    marker = None
    if fine_tune_history is not None:
        h2, epochs2 = _history_dict(fine_tune_history)
        # fit(initial_epoch=k) numbers its epochs from k (the tutorial passes k = history.epoch[-1], so
        # its first fine-tuning epoch shares the last frozen epoch's number); a fit without
        # initial_epoch restarts at 0: then continue the numbering.
        if epochs2 and epochs and epochs2[0] < epochs[-1]:
            epochs2 = [e + epochs[-1] + 1 - epochs2[0] for e in epochs2]
        if fine_tune_epoch is None and epochs2:
            fine_tune_epoch = epochs2[0]
        keys = list(dict.fromkeys(list(h) + list(h2)))
        h = {k: h.get(k, [math.nan] * len(epochs)) + h2.get(k, [math.nan] * len(epochs2)) for k in keys}
        if epochs and epochs2 and epochs2[0] == epochs[-1]:
            marker = epochs2[0] + 1  # on the shared epoch number
        epochs = epochs + epochs2
    if fine_tune_epoch is not None and marker is None:
        marker = fine_tune_epoch + 0.5  # between the last frozen epoch and the first fine-tuning one (1-based)
    if metrics is None:
        metrics = ["loss"] if "loss" in h else []
        metrics += [k for k in h if not k.startswith("val_") and k not in ("loss", "learning_rate", "lr")]
    for m in metrics:
        if m not in h and "val_" + m not in h:
            raise ValueError(f"`metrics` entry {m!r} is not in the history. Available: {sorted(h)}")
    fig, axs = _axes(ax, len(metrics), panel_size=(4.8, 3.4))
    x = np.asarray(epochs) + 1
    for a, m in zip(axs, metrics):
        if m in h:
            a.plot(x, h[m], marker="o", ms=3, label=f"training {m}")
        if "val_" + m in h:
            a.plot(x, h["val_" + m], marker="o", ms=3, label=f"validation {m}")
        if marker is not None:
            a.axvline(marker, color="gray", linestyle="--", label="start of fine-tuning")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.set_ylabel(m)
        a.set_title(m)
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true=None, y_pred=None, class_names=None, normalize=None, confusion_matrix=None,
                          ax=None, cmap="Blues"):
    """The confusion matrix as an image with the values written in, by scikit-learn's
    ``ConfusionMatrixDisplay`` (which replaced ``plot_confusion_matrix``).

    Args:
      y_true, y_pred: int class indices (N,) (or pass `confusion_matrix`, or an ``EvaluationReport``
        as `y_true`).
      class_names (list[str] | None): tick labels (default: the report's, else 0..C-1).
      normalize: None (counts), "true" (each row divided by its sum: recall on the diagonal), or
        "both" (two panels: counts, then row-normalized).
      confusion_matrix: int (C, C), rows true, columns predicted, instead of y_true/y_pred.
      ax: an Axes (two for normalize="both").
    Returns: the Figure; ``fig.axes[i].images[0].get_array()`` holds the plotted matrix.
    Raises: ValueError for a bad `normalize` or missing inputs.
    """
    from sklearn.metrics import ConfusionMatrixDisplay
    from sklearn.metrics import confusion_matrix as _cm

    if normalize not in (None, "true", "both"):
        raise ValueError(f"`normalize` must be None, 'true' or 'both'. Received: normalize={normalize!r}")
    if hasattr(y_true, "confusion_matrix") and y_pred is None:  # an EvaluationReport
        confusion_matrix = y_true.confusion_matrix
        class_names = class_names or y_true.class_names
    elif confusion_matrix is None:
        if y_true is None or y_pred is None:
            raise ValueError("Pass `y_true` and `y_pred`, a `confusion_matrix`, or an EvaluationReport.")
        n = len(class_names) if class_names is not None else int(max(np.max(y_true), np.max(y_pred)) + 1)
        confusion_matrix = _cm(np.asarray(y_true), np.asarray(y_pred), labels=list(range(n)))
    cm = np.asarray(confusion_matrix)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"`confusion_matrix` must be square (C, C). Received: shape={cm.shape}")
    labels = list(class_names) if class_names is not None else list(range(cm.shape[0]))
    kinds = [None, "true"] if normalize == "both" else [normalize]
    fig, axs = _axes(ax, len(kinds), panel_size=(5.2, 4.6))
    for a, kind in zip(axs, kinds):
        if kind == "true":
            rows = cm.sum(axis=1, keepdims=True)
            m = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
            fmt, title = ".2f", "Confusion matrix (row-normalized)"
        else:
            m, fmt, title = cm, "d", "Confusion matrix (counts)"
        disp = ConfusionMatrixDisplay(m, display_labels=labels)
        disp.plot(ax=a, cmap=cmap, values_format=fmt, colorbar=False, xticks_rotation=45)
        a.set_title(title)
    fig.tight_layout()
    return fig


def _to_image(img):
    """(H, W, 3) array for imshow: uint8 as is, float scaled from [-1, 1] or [0, 255] to [0, 1]."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if img.min() < 0:
        img = (img + 1.0) / 2.0
    elif img.max() > 1.0:
        img = img / 255.0
    return np.clip(img, 0.0, 1.0)


def _load(images, image_size):
    if isinstance(images, np.ndarray):
        return images
    from .data import load_img

    out = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            im = load_img(im, target_size=image_size)
        out.append(im)
    return out


def plot_images(images, labels=None, class_names=None, max_images=9, ncols=3, ax=None):
    """A grid of images with their class as title (the tutorial's first look at the data).

    Args:
      images: uint8 or float (N, H, W, 3) array, a list of arrays, or a batch ``(images, labels)``
        tuple as a dataset yields it.
      labels: int (N,) or one-hot (N, C) or None; class_names (list[str] | None).
      max_images (int): at most this many (the first ones); ncols (int): grid width.
      ax: None or a sequence of >= min(N, max_images) Axes.
    Returns: the Figure (one Axes per image, each with one image).
    """
    if isinstance(images, tuple) and len(images) == 2 and labels is None:
        images, labels = images
    n = min(len(images), int(max_images))
    fig, axs = _axes(ax, n, ncols=ncols, panel_size=(2.4, 2.6))
    for i, a in enumerate(axs):
        a.imshow(_to_image(images[i]))
        if labels is not None:
            lab = np.asarray(labels[i])
            k = int(np.argmax(lab)) if lab.ndim == 1 and lab.size > 1 else int(lab.reshape(-1)[0])
            a.set_title(class_names[k] if class_names is not None else str(k), fontsize=9)
        a.set_axis_off()
    fig.tight_layout()
    return fig


def plot_misclassified(report=None, images=None, y_true=None, y_pred=None, confidence=None, class_names=None,
                       max_images=16, ncols=4, image_size=(224, 224), ax=None):
    """A grid of misclassified images titled "true: A / pred: B (0.87)".

    Args:
      report: an ``EvaluationReport`` from ``evaluation.report`` (its misclassified files are
        loaded with ``data.load_img``); or pass the arrays below instead.
      images: uint8/float (M, H, W, 3) array or list of file paths, the misclassified samples.
      y_true, y_pred: int (M,); confidence: float (M,) probability of the predicted class.
      class_names (list[str] | None). max_images (int): the first ones shown; ncols (int).
      image_size ((h, w)): size files are loaded at.
      ax: None or a sequence of >= min(M, max_images) Axes.
    Returns: the Figure (one image per misclassified sample shown; a text note when there is none).
    Raises: ValueError when the report has no file paths and no `images` are given.
    """
    if report is not None:
        idx = report.misclassified[:max_images]
        if images is None:
            if report.misclassified_paths is None:
                raise ValueError("The report has no file paths (it was made from arrays): pass `images`, the "
                                 "misclassified images, as well.")
            images = report.misclassified_paths[:max_images]
        else:
            images = images[: len(idx)] if len(images) == len(report.misclassified) else [images[i] for i in idx]
        y_true, y_pred, confidence = report.y_true[idx], report.y_pred[idx], report.confidence[idx]
        class_names = class_names or report.class_names
    if images is None or y_true is None or y_pred is None:
        raise ValueError("Pass an EvaluationReport, or `images`, `y_true` and `y_pred`.")
    n = min(len(images), int(max_images))
    images = _load(images[:n] if not isinstance(images, np.ndarray) else images[:n], image_size)
    name = (lambda k: class_names[k]) if class_names is not None else str
    if n == 0:
        fig, (a,) = _axes(ax, 1)
        a.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        a.set_axis_off()
        return fig
    fig, axs = _axes(ax, n, ncols=ncols, panel_size=(2.6, 2.9))
    for i, a in enumerate(axs):
        a.imshow(_to_image(images[i]))
        conf = "" if confidence is None else f" ({float(confidence[i]):.2f})"
        a.set_title(f"true: {name(int(y_true[i]))}\npred: {name(int(y_pred[i]))}{conf}", fontsize=8, color="C3")
        a.set_axis_off()
    fig.tight_layout()
    return fig


def plot_augmented_samples(augmentation, images, num_samples=9, ncols=3, ax=None):
    """What the random layers do: one image augmented `num_samples` times (the tutorial's grid), or
    each image of a batch augmented once when `num_samples` is None.

    Args:
      augmentation: a random layer, a list of layers, or a ``Sequential`` of them; called with
        ``training=True`` (inference leaves images unchanged).
      images: uint8 or float (H, W, 3) one image, or (N, H, W, 3) a batch (then its first image
        is repeated, unless num_samples is None).
      num_samples (int | None), ncols (int), ax: None or a sequence of Axes (one per sample).
    Returns: the Figure; panel 0 is the original ("original"), the others augmented copies.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"`images` must be (H, W, C) or (N, H, W, C). Received: images.shape={x.shape}")
    layers = augmentation
    if hasattr(augmentation, "layers"):
        layers = augmentation.layers
    elif not isinstance(augmentation, (list, tuple)):
        layers = [augmentation]

    def augment(batch):
        for layer in layers:
            batch = layer(batch, training=True)
        return np.asarray(batch)

    if num_samples is None:
        originals = x
        out = augment(x.copy())
        n = len(x)
    else:
        n = int(num_samples)
        originals = None
        out = np.concatenate([x[:1]] + [augment(x[:1].copy()) for _ in range(n - 1)]) if n > 1 else x[:1]
    fig, axs = _axes(ax, n, ncols=ncols, panel_size=(2.4, 2.5))
    for i, a in enumerate(axs):
        a.imshow(_to_image(out[i]))
        a.set_title("original" if originals is None and i == 0 else f"augmented {i}", fontsize=9)
        a.set_axis_off()
    fig.tight_layout()
    return fig


def plot_precision_recall(y_true=None, y_pred=None, class_names=None, ax=None):
    """Per-class precision and recall as grouped bars (scikit-learn's
    ``precision_recall_fscore_support``, zero_division=0), values printed on the bars.

    Args: y_true, y_pred: int (N,) (or an ``EvaluationReport`` as `y_true`); class_names; ax: an Axes.
    Returns: the Figure (its Axes holds 2 * C bars: C precision, then C recall; y label "score").
    """
    from sklearn.metrics import precision_recall_fscore_support

    if hasattr(y_true, "y_pred") and y_pred is None:
        class_names = class_names or y_true.class_names
        y_true, y_pred = y_true.y_true, y_true.y_pred
    if y_true is None or y_pred is None:
        raise ValueError("Pass `y_true` and `y_pred`, or an EvaluationReport.")
    n = len(class_names) if class_names is not None else int(max(np.max(y_true), np.max(y_pred)) + 1)
    p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(range(n)), zero_division=0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    fig, (a,) = _axes(ax, 1, panel_size=(max(5.0, 1.2 * n), 3.6))
    pos = np.arange(n)
    w = 0.38
    b1 = a.bar(pos - w / 2, p, w, label="precision")
    b2 = a.bar(pos + w / 2, r, w, label="recall")
    a.bar_label(b1, fmt="%.2f", fontsize=7)
    a.bar_label(b2, fmt="%.2f", fontsize=7)
    a.set_xticks(pos, names, rotation=30, ha="right")
    a.set_ylim(0, 1.1)
    a.set_ylabel("score")
    a.set_title("Per-class precision and recall")
    a.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def save_evaluation_figures(directory, history=None, report=None, prefix="", dpi=100, fine_tune_history=None):
    """Writes the figures as PNG into `directory` (created) and returns {name: path}.

    Files: ``<prefix>training_curves.png`` (from `history`), ``<prefix>confusion_matrix.png`` (counts and
    row-normalized), ``<prefix>precision_recall.png`` and ``<prefix>misclassified.png`` (from `report`;
    the last only when the report has file paths). Uses the Agg canvas of each figure, so it works
    without a display; figures are closed after saving.
    """
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    figs = {}
    if history is not None:
        figs["training_curves"] = plot_history(history, fine_tune_history=fine_tune_history)
    if report is not None:
        figs["confusion_matrix"] = plot_confusion_matrix(report, normalize="both")
        figs["precision_recall"] = plot_precision_recall(report)
        if report.misclassified_paths is not None:
            figs["misclassified"] = plot_misclassified(report)
    out = {}
    for name, fig in figs.items():
        path = os.path.join(directory, f"{prefix}{name}.png")
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        out[name] = path
    return out
