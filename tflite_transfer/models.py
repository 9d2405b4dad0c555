"""Sequential models: compile / fit / evaluate / predict / summary / save, and load_model.

Training (``Sequential.fit``) splits the model in two:
  * the *head*: the trailing Dense / Dropout layers (it must end with a Dense),
    trained by the C trainer (oneDNN inner products, fused softmax or sigmoid
    cross-entropy, dropout, L2, optimizer updates in C);
  * the *prefix*: every layer before it (augmentation, the frozen base,
    pooling). Prefix layers must not have trainable weights: fine-tuning the
    base is not supported yet (NotImplementedError).

Two paths, reported in ``history.params["feature_cache"]`` and
``model.last_fit_path``:
  * "feature_cache": no random layer (``is_random``) in the prefix, so the
    prefix output never changes: it is computed once for the training and the
    validation data (float32 N x F, e.g. N x 1280 for MobileNetV2 + pooling)
    and the head trains on the cache for all epochs.
  * "per_batch": augmentation is active, so each training batch goes through
    the prefix every epoch; a background thread loads and augments the next
    batch while the base runs on the current one. Validation features are still
    cached (no augmentation at inference).
A base followed by GlobalAveragePooling2D / GlobalMaxPooling2D is run as
``base.predict(x, pooling="avg"|"max")`` so the engine pools in C.

Save format (``model.save(path)``, any extension, e.g. ``.ttz``): a zip archive,
written to a temporary file then renamed (atomic), holding
  * ``config.json``: {"format": "tflite_transfer.Sequential", "format_version": 1,
    "name", "build_input_shape", "layers": [{"module", "class_name", "config",
    "weights_ref"}], "compile": {"optimizer", "loss", "metrics"} | null};
  * ``weights.npz``: ``layer{i}_w{j}`` float32 arrays of every layer that is not
    saved by reference.
A pretrained base (a layer with a ``weights_path`` attribute) is saved by
reference: ``weights_ref`` = {"path", "sha256"} of its .tflite file; load_model
checks the SHA-256. The optimizer's state (moments) is not saved.
"""
import importlib
import inspect
import io
import json
import math
import os
import queue
import sys
import threading
import time
import zipfile

import numpy as np

from . import _core
from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .layers.base import Layer
from .layers.core import Dense, Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D, _new_seed, _PlanCache
from .utils import atomic_write, sha256_of

History = callbacks_module.History

_FORMAT = "tflite_transfer.Sequential"


# ---------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------

def _is_dataset(obj):
    """True for the folder dataset (or anything iterable in (images, labels) batches with __len__)."""
    return (not isinstance(obj, (np.ndarray, list, tuple))) and hasattr(obj, "__iter__") and hasattr(obj, "__len__")


def _check_x(x, name):
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise ValueError(f"`{name}` must be a NumPy array or an ImageDataset. Received: {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"`{name}` must have a batch axis and at least one feature axis. "
                         f"Received: {name}.shape={x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty. Received: {name}.shape={x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"`{name}` must be numeric. Received: {name}.dtype={x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"`{name}` contains {bad} NaN or Inf values; clean or impute them first.")
    return x


class _Labels:
    """Validates labels for a loss and turns them into C-loss targets."""

    def __init__(self, loss, n_out):
        self.loss = loss
        self.n_out = n_out

    def check(self, y, name, n=None):
        """Returns y as the canonical array; ValueError naming `name` if invalid."""
        y = np.asarray(y)
        if n is not None and len(y) != n:
            raise ValueError(f"`x` and `{name}` must have the same length. Received: len(x)={n}, len({name})={len(y)}")
        if y.size == 0:
            raise ValueError(f"`{name}` is empty.")
        kind, c = self.loss.kind, self.n_out
        if kind == "sparse_categorical":
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise ValueError(f"`{name}` must be integer class indices of shape (N,) for "
                                 f"{self.loss.name}. Received: {name}.shape={y.shape} (one-hot labels need "
                                 f"categorical_crossentropy)")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"`{name}` must hold integer class indices for {self.loss.name}. "
                                 f"Received: {name}.dtype={y.dtype}")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= c:
                raise ValueError(f"`{name}` has labels outside [0, {c}) (the output layer has {c} units). "
                                 f"Received: min={lo}, max={hi}")
            return y.astype(np.int64)
        y = y.astype(np.float32) if np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_ else None
        if y is None:
            raise ValueError(f"`{name}` must be numeric.")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"`{name}` contains NaN or Inf.")
        if kind == "categorical":
            if y.ndim != 2 or y.shape[1] != c:
                raise ValueError(f"`{name}` must be one-hot / probabilities of shape (N, {c}) for {self.loss.name}. "
                                 f"Received: {name}.shape={y.shape} (integer labels need "
                                 f"sparse_categorical_crossentropy)")
            return y
        y = y.reshape(len(y), -1)
        if y.shape[1] != c:
            raise ValueError(f"`{name}` must have shape (N,) or (N, {c}) for {self.loss.name}. Received: {y.shape}")
        if y.min() < 0 or y.max() > 1:
            raise ValueError(f"`{name}` must be in [0, 1] for {self.loss.name}. Received: min={y.min()}, max={y.max()}")
        return y

    def targets(self, y):
        """float32 (n, C) C-contiguous targets for the C loss."""
        if self.loss.kind == "sparse_categorical":
            t = np.zeros((len(y), self.n_out), np.float32)
            t[np.arange(len(y)), y] = 1.0
            return t
        return np.ascontiguousarray(y, np.float32)

    def classes(self, y):
        """int class per sample (for class_weight)."""
        if self.loss.kind == "sparse_categorical":
            return y
        if self.loss.kind == "categorical":
            return np.argmax(y, axis=1)
        return (y[:, 0] > 0.5).astype(np.int64)

    def metric_true(self, y):
        return y


def _class_weight_array(class_weight, n_classes):
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise ValueError(f"`class_weight` must be a dict {{class index: weight}}. Received: {type(class_weight).__name__}")
    w = np.ones(n_classes, np.float32)
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (0 <= int(k) < n_classes):
            raise ValueError(f"`class_weight` keys must be class indices in [0, {n_classes}). Received key: {k!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"`class_weight` values must be finite and >= 0. Received: {{{k}: {v}}}")
        w[int(k)] = v
    return w


def _split_arrays(x, y, validation_split, seed, stratify):
    """(x_tr, y_tr, x_val, y_val): a stratified (when possible) shuffled split with `seed`."""
    n = len(x)
    n_train = int(n * (1.0 - validation_split))
    n_val = n - n_train
    if n_train < 1 or n_val < 1:
        raise ValueError(f"`validation_split`={validation_split} leaves an empty "
                         f"{'training' if n_train < 1 else 'validation'} set with {n} samples.")
    rng = np.random.default_rng(seed)
    idx_val = None
    if stratify is not None:
        classes, counts = np.unique(stratify, return_counts=True)
        if counts.min() >= 2 and n_val >= len(classes) and n_train >= len(classes):
            from sklearn.model_selection import train_test_split
            idx_tr, idx_val = train_test_split(np.arange(n), test_size=n_val, random_state=seed, shuffle=True,
                                               stratify=stratify)
    if idx_val is None:
        perm = rng.permutation(n)
        idx_tr, idx_val = perm[:n_train], perm[n_train:]
    idx_tr, idx_val = np.sort(idx_tr), np.sort(idx_val)
    return x[idx_tr], y[idx_tr], x[idx_val], y[idx_val]


def _prefetch(iterable, fn, depth=2):
    """Yields fn(item) for each item, computed by a background thread `depth` items ahead.

    Used to decode and augment the next batch while the engine runs the current
    one (the engine and the decoder release the GIL). Exceptions propagate.
    """
    q = queue.Queue(depth)
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                q.put(("ok", fn(item)))
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer
            q.put(("err", e))

    t = threading.Thread(target=work, daemon=True, name="tflite_transfer-prefetch")
    t.start()
    try:
        while True:
            kind, v = q.get()
            if kind == "end":
                return
            if kind == "err":
                raise v
            yield v
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


# ---------------------------------------------------------------------------
# the head (trained in C)
# ---------------------------------------------------------------------------

class _Head:
    """Runs the trailing Dense / Dropout layers with the C kernels."""

    def __init__(self, layers, loss):
        self.layers = layers
        self.loss = loss
        last = layers[-1]
        act = last.activation
        kind = loss.kind
        ok = ((kind in ("sparse_categorical", "categorical") and
               ((act == "softmax" and not loss.from_logits) or (act is None and loss.from_logits))) or
              (kind == "binary" and ((act == "sigmoid" and not loss.from_logits) or (act is None and loss.from_logits))))
        if not ok:
            want = "softmax" if kind != "binary" else "sigmoid"
            raise ValueError(f"The last Dense layer {last.name!r} has activation={act!r} but the loss is "
                             f"{loss.name}(from_logits={loss.from_logits}). Use activation='{want}' with "
                             f"from_logits=False, or activation=None with from_logits=True.")
        for l in layers[:-1]:
            if isinstance(l, Dense) and l.activation not in (None, "relu"):
                raise ValueError(f"Hidden Dense layer {l.name!r}: activation must be None or 'relu' for training. "
                                 f"Received: {l.activation!r}")
        self._loss_fwd = _core.sigmoid_bce_forward if kind == "binary" else _core.softmax_xent_forward
        self._loss_bwd = _core.sigmoid_bce_backward if kind == "binary" else _core.softmax_xent_backward
        self._plans = {}

    def _plan(self, l, n):
        cache = self._plans.get(id(l))
        if cache is None:
            cache = self._plans[id(l)] = _PlanCache(limit=6)
        return cache.get(n, l.kernel.shape[0], l.units)

    def forward(self, x, training):
        """(logits before the final activation (n, C) float32, tape for backward)."""
        x = np.ascontiguousarray(x, np.float32)
        tape = []
        last = self.layers[-1]
        for l in self.layers:
            if isinstance(l, Dense):
                z = np.empty((len(x), l.units), np.float32)
                self._plan(l, len(x)).forward(x, l.kernel, l.bias, z)
                if l.activation == "relu" and l is not last:
                    _core.relu_forward(z, z)
                tape.append(("dense", l, x, z))
                x = z
            elif isinstance(l, Dropout) and training and l.rate > 0:
                y = np.empty_like(x)
                mask = np.empty(x.shape, np.uint8)
                _core.dropout_forward(x, l.rate, l.next_seed(), y, mask)
                tape.append(("dropout", l, mask))
                x = y
        return x, tape

    def outputs(self, logits):
        """Model outputs from logits: the final activation applied (a new array)."""
        out = logits.copy()
        act = self.layers[-1].activation
        if act == "softmax":
            _core.softmax_forward(out, out)
        elif act == "sigmoid":
            _core.sigmoid_forward(out, out)
        return out

    def regularization(self):
        total = 0.0
        for l in self.layers:
            if isinstance(l, Dense) and l.kernel_regularizer is not None:
                total += _core.l2_forward(l.kernel, l.kernel_regularizer.l2)
        return total

    def loss_value(self, logits, targets, sample_weight):
        """(mean loss + regularization (float), probabilities/sigmoids (n, C))."""
        probs = np.empty_like(logits)
        s = self._loss_fwd(logits, targets, sample_weight, self.loss.label_smoothing, probs)
        return s / len(logits) + self.regularization(), probs

    def train_step(self, x, targets, sample_weight, optimizer):
        """One optimizer step on a batch; returns (loss, model outputs (n, C))."""
        n = len(x)
        logits, tape = self.forward(x, training=True)
        loss, probs = self.loss_value(logits, targets, sample_weight)
        d = np.empty_like(logits)
        self._loss_bwd(probs, targets, sample_weight, self.loss.label_smoothing, 1.0 / n, d)
        grads, variables = [], []
        first_dense = next(i for i, t in enumerate(tape) if t[0] == "dense")
        for i in range(len(tape) - 1, -1, -1):
            t = tape[i]
            if t[0] == "dropout":
                _core.dropout_backward(d, t[2], t[1].rate, d)
                continue
            _, l, xin, z = t
            if l.activation == "relu" and l is not self.layers[-1]:
                _core.relu_backward(d, z, d)
            dk = np.empty_like(l.kernel)
            db = np.empty_like(l.bias)
            dx = np.empty_like(xin) if i > first_dense else None
            self._plan(l, n).backward(d, xin, l.kernel, dx, dk, db)
            if l.kernel_regularizer is not None:
                _core.l2_backward(l.kernel, l.kernel_regularizer.l2, dk)
            if l.trainable:
                grads.append(dk)
                variables.append(l.kernel)
                if l.use_bias:
                    grads.append(db)
                    variables.append(l.bias)
            d = dx
            if d is None:
                break  # nothing before the first Dense needs a gradient
        if variables:
            optimizer.apply(grads, variables)
        return loss, probs


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------

class Sequential:
    """A linear stack of layers, Keras' ``keras.Sequential``.

    Args:
      layers (list of Layer | None): the layers, input first.
      name (str | None): model name.

    Attributes: ``layers``, ``optimizer``, ``loss``, ``metrics`` (after compile),
    ``history`` (after fit), ``last_fit_path`` ("feature_cache" | "per_batch"),
    ``stop_training`` (callbacks set it).
    """

    def __init__(self, layers=None, name=None):
        self.name = name or "sequential"
        self._layers = []
        for l in layers or []:
            self.add(l)
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self._metric_ids = []
        self.stop_training = False
        self.history = None
        self.last_fit_path = None
        self._build_shape = None
        self._rng = np.random.default_rng(_new_seed())  # layers.set_random_seed makes it reproducible

    # -- structure -----------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Appends `layer` (a Layer instance); ValueError otherwise."""
        if not isinstance(layer, Layer):
            raise ValueError(f"Sequential only accepts Layer instances. Received: {layer!r}")
        self._layers.append(layer)
        self._build_shape = None

    def build(self, input_shape):
        """Builds every layer for `input_shape` (tuple, batch first, batch may be None)."""
        if not self._layers:
            raise ValueError("The Sequential model has no layers; add some first.")
        shape = (None,) + tuple(input_shape[1:])
        for l in self._layers:
            if not l.built:
                l.build(shape)
            shape = tuple(l.compute_output_shape(shape))
        self._build_shape = (None,) + tuple(input_shape[1:])

    @property
    def built(self):
        return self._build_shape is not None

    def _output_shapes(self):
        shape, out = self._build_shape, []
        for l in self._layers:
            shape = tuple(l.compute_output_shape(shape))
            out.append(shape)
        return out

    def _split(self):
        """Index where the head (trailing Dense/Dropout, ending in Dense) starts."""
        if not self._layers or not isinstance(self._layers[-1], Dense):
            raise ValueError("To train, the model must end with a Dense layer (the classifier head). "
                             f"Layers: {[type(l).__name__ for l in self._layers]}")
        s = len(self._layers)
        while s > 0 and isinstance(self._layers[s - 1], (Dense, Dropout)):
            s -= 1
        for l in self._layers[:s]:
            if l.trainable and l.count_params() > 0:
                raise NotImplementedError(
                    f"Layer {l.name!r} before the classifier head has trainable weights. Fine-tuning layers "
                    f"before the head is not supported yet: freeze it with `{l.name}.trainable = False`.")
        return s

    def _stages(self, prefix):
        """[(fn(x, training) -> x, is_random, has_weights)] for the prefix layers."""
        stages, i = [], 0
        while i < len(prefix):
            l = prefix[i]
            nxt = prefix[i + 1] if i + 1 < len(prefix) else None
            if (hasattr(l, "predict") and isinstance(nxt, (GlobalAveragePooling2D, GlobalMaxPooling2D))
                    and not nxt.keepdims and l.count_params() > 0):
                pooling = "max" if isinstance(nxt, GlobalMaxPooling2D) else "avg"
                stages.append((lambda x, tr, l=l, p=pooling: np.asarray(
                    l.predict(x, batch_size=max(len(x), 1), verbose=0, pooling=p), np.float32), False, True))
                i += 2
                continue
            stages.append((lambda x, tr, l=l: l(x, training=bool(tr and l.is_random)), bool(l.is_random),
                           l.count_params() > 0))
            i += 1
        return stages

    @staticmethod
    def _run(stages, x, training):
        for fn, _, _ in stages:
            x = fn(x, training)
        return x

    # -- compile ---------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Configures training (Keras' compile).

        Args:
          optimizer (str | Optimizer): "adam", "sgd", "rmsprop", "adamw" or an instance.
          loss (str | Loss): "sparse_categorical_crossentropy", "categorical_crossentropy",
            "binary_crossentropy" or an instance. Required.
          metrics (list | None): "accuracy" (resolved by the loss, Keras), metric names or instances.
        Raises ValueError for unknown identifiers or a missing loss.
        """
        if loss is None:
            raise ValueError("`loss` is required, e.g. loss='sparse_categorical_crossentropy'.")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        self._metric_ids = list(metrics)
        self.metrics = [metrics_module.get(m, self.loss) for m in metrics]

    # -- data plumbing -----------------------------------------------------------
    def _check_input_shape(self, x, name):
        """ValueError naming `name` when array `x` does not fit the built input shape."""
        if self.built and tuple(x.shape[1:]) != tuple(self._build_shape[1:]):
            raise ValueError(f"`{name}` must have shape (N,) + {tuple(self._build_shape[1:])} to match the "
                             f"model's input {self._build_shape}. Received: {name}.shape={x.shape}")

    def _ensure_built(self, x_or_ds):
        if self.built:
            if not _is_dataset(x_or_ds):
                self._check_input_shape(np.asarray(x_or_ds), "x")
            return
        if _is_dataset(x_or_ds):
            for images, _ in x_or_ds:
                self.build((None,) + tuple(np.asarray(images).shape[1:]))
                return
            raise ValueError("The dataset is empty.")
        self.build((None,) + tuple(np.asarray(x_or_ds).shape[1:]))

    def _iter_batches(self, x, y, batch_size, shuffle):
        """(x_batch, y_batch) from arrays (a new permutation per call when shuffle) or a dataset."""
        if _is_dataset(x):
            for images, labels in x:
                yield np.asarray(images), np.asarray(labels)
            return
        n = len(x)
        order = self._rng.permutation(n) if shuffle else np.arange(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            if not shuffle:
                idx = slice(s, s + batch_size)
            yield x[idx], (y[idx] if y is not None else None)

    def _features(self, stages, x, y, batch_size, labels, what, verbose):
        """Prefix output (N, F) float32 and checked labels, computed once (inference mode)."""
        from tqdm.auto import tqdm

        feats, ys = [], []
        self._last_batch_len = 0
        total = len(x) if _is_dataset(x) else math.ceil(len(x) / batch_size)
        with tqdm(total=total, desc=f"features ({what})", unit="batch", disable=verbose != 1,
                  leave=False, file=sys.stdout) as bar:
            # Decode the next batch in the background while the base runs on this one.
            for xb, yb in _prefetch(self._iter_batches(x, y, batch_size, shuffle=False), lambda item: item):
                f = self._run(stages, xb, False)
                self._last_batch_len = max(self._last_batch_len, len(f))
                feats.append(np.ascontiguousarray(f, np.float32).reshape(len(f), -1))
                if yb is not None and labels is not None:
                    ys.append(labels.check(yb, "y" if what == "train" else "validation labels"))
                bar.update(1)
        return np.concatenate(feats), (np.concatenate(ys) if ys else None)

    # -- fit -----------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, initial_epoch=0, validation_split_seed=0):
        """Trains the head (Keras' fit). Returns a History.

        Args:
          x: NumPy array (N, ...) (uint8 images or float features) or an ImageDataset
            yielding (images, labels) batches (then `y` must be None).
          y: labels: int (N,) for sparse_categorical_crossentropy, float (N, C) for
            categorical_crossentropy, (N,) or (N, units) in [0, 1] for binary_crossentropy.
          batch_size (int >= 1), epochs (int >= 1), initial_epoch (int in [0, epochs)).
          verbose: "auto" (= 1), 0 (silent), 1 (progress bar per epoch), 2 (one line per epoch).
          callbacks: list of callbacks.Callback.
          validation_split (float in [0, 1)): arrays only. Unlike Keras (which takes the
            last fraction before shuffling, wrong on class-sorted arrays), the split is
            *stratified by class and shuffled* with `validation_split_seed` (default 0;
            plain shuffled when a class has fewer than 2 samples), taken once before training.
          validation_data: (x_val, y_val) arrays or an ImageDataset. Overrides validation_split.
          shuffle (bool): reshuffle the training samples each epoch (arrays / cached features;
            an ImageDataset shuffles itself).
          class_weight (dict | None): {class index: weight}; scales each sample's loss
            (missing classes weigh 1.0, as Keras).
          validation_split_seed (int): seed of the validation split (extension of Keras).

        Raises:
          RuntimeError: compile() was not called.
          ValueError: invalid arguments or data (the message names the argument).
          NotImplementedError: a layer before the head has trainable weights (fine-tuning).
        """
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("You must call `compile()` before `fit()`.")
        if x is None:
            raise ValueError("`x` is required.")
        batch_size = _check_int("batch_size", batch_size, 1)
        epochs = _check_int("epochs", epochs, 1)
        initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
        if initial_epoch >= epochs:
            raise ValueError(f"`initial_epoch` must be < `epochs`. Received: initial_epoch={initial_epoch}, "
                             f"epochs={epochs}")
        verbose = _check_verbose(verbose)
        validation_split = float(validation_split)
        if not (0.0 <= validation_split < 1.0):
            raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split}")

        is_ds = _is_dataset(x)
        if is_ds:
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset (it yields the labels).")
            if validation_split:
                raise ValueError("`validation_split` is only supported for NumPy arrays; for a dataset use "
                                 "image_dataset_from_directory(validation_split=..., subset='both').")
        else:
            x = _check_x(x, "x")
            if y is None:
                raise ValueError("`y` is required when `x` is an array.")
        self._ensure_built(x)
        s = self._split()
        prefix, head_layers = self._layers[:s], self._layers[s:]
        head = _Head(head_layers, self.loss)
        n_out = head_layers[-1].units
        labels = _Labels(self.loss, n_out)
        cw = _class_weight_array(class_weight, n_out if self.loss.kind != "binary" else 2)

        if not is_ds:
            y = labels.check(y, "y", n=len(x))
            if validation_split and validation_data is None:
                strat = labels.classes(y)
                x, y, xv, yv = _split_arrays(x, y, validation_split, validation_split_seed, strat)
                validation_data = (xv, yv)
        val = None
        if validation_data is not None:
            if _is_dataset(validation_data):
                val = (validation_data, None)
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                xv = _check_x(validation_data[0], "validation_data[0]")
                self._check_input_shape(xv, "validation_data[0]")
                yv = labels.check(validation_data[1], "validation_data[1]", n=len(xv))
                val = (xv, yv)
            else:
                raise ValueError("`validation_data` must be a tuple (x_val, y_val) or an ImageDataset. "
                                 f"Received: {type(validation_data).__name__}")

        stages = self._stages(prefix)
        cached = not any(r for _, r, _ in stages)
        self.last_fit_path = "feature_cache" if cached else "per_batch"
        timings = {"features": 0.0, "train": 0.0, "validation": 0.0}
        if verbose:
            if cached:
                print(f"fit: every layer before the head is frozen and none is random: computing the "
                      f"{'base ' if prefix else ''}features once and training the head on the cache "
                      f"(path: feature_cache).")
            else:
                print("fit: random layers (augmentation) are active before the head: running them and the frozen "
                      "base on every batch, loading the next batch in the background (path: per_batch).")

        t0 = time.perf_counter()
        if cached:
            feats, ytr = self._features(stages, x, None if is_ds else y, batch_size, labels, "train", verbose)
            n_train = len(feats)
            if is_ds:  # keep the dataset's own batching, as Keras does
                batch_size = int(getattr(x, "batch_size", None) or self._last_batch_len)
            steps = math.ceil(n_train / batch_size)
        else:
            n_train = x.num_images if is_ds and hasattr(x, "num_images") else (None if is_ds else len(x))
            steps = len(x) if is_ds else math.ceil(len(x) / batch_size)
        val_feats = val_y = None
        if val is not None:
            val_feats, val_y = self._features(stages, val[0], val[1], batch_size, labels, "validation", verbose)
        timings["features"] = time.perf_counter() - t0

        history = History()
        # History last, as in Keras, so it records what other callbacks add to the logs.
        cbs = callbacks_module.CallbackList(list(callbacks or []) + [history], self, {})
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "feature_cache": cached,
                  "fit_path": self.last_fit_path, "samples": n_train, "timings": timings}
        for c in cbs.callbacks:
            c.set_params(params)
        self.stop_training = False
        self.history = history
        cbs.on_train_begin({})

        # Prefix stages that run in the loader thread: everything before the first weighted stage.
        n_pre = next((i for i, st in enumerate(stages) if st[2]), len(stages))
        pre, post = stages[:n_pre], stages[n_pre:]

        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            te = time.perf_counter()
            loss_m = metrics_module.Mean("loss")
            for m in self.metrics:
                m.reset_state()
            bar = _progress(verbose, steps, epoch, epochs)
            if cached:
                order = self._rng.permutation(n_train) if shuffle else np.arange(n_train)
                batches = ((feats[order[i:i + batch_size]], ytr[order[i:i + batch_size]])
                           for i in range(0, n_train, batch_size))
            else:
                def load(item, pre=pre):
                    xb, yb = item
                    yb = labels.check(yb, "y")
                    return self._run(pre, xb, True), yb
                batches = ((self._run(post, xb, True), yb) for xb, yb in
                           _prefetch(self._iter_batches(x, None if is_ds else y, batch_size, shuffle), load))
            for step, (fb, yb) in enumerate(batches):
                cbs.on_train_batch_begin(step, {})
                sw = None if cw is None else np.ascontiguousarray(cw[labels.classes(yb)])
                loss, out = head.train_step(fb, labels.targets(yb), sw, self.optimizer)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"The loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                             f"lower the learning rate or check the inputs.")
                loss_m.update_state(loss, len(fb))
                for m in self.metrics:
                    m.update_state(yb, out)  # probabilities, also with from_logits
                logs = {"loss": loss_m.result(), **{m.name: m.result() for m in self.metrics}}
                cbs.on_train_batch_end(step, logs)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            timings["train"] += time.perf_counter() - te
            logs = {"loss": float(loss_m.result()), **{m.name: float(m.result()) for m in self.metrics}}
            if val_feats is not None:
                tv = time.perf_counter()
                vlogs = self._evaluate_features(head, val_feats, val_y, labels, batch_size)
                logs.update({"val_" + k: v for k, v in vlogs.items()})
                timings["validation"] += time.perf_counter() - tv
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
                bar.close()
            elif verbose == 2:
                dt = time.perf_counter() - te
                print(f"Epoch {epoch + 1}/{epochs} - {dt:.1f}s - " +
                      " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end({})
        return history

    def _evaluate_features(self, head, feats, y, labels, batch_size):
        loss_m = metrics_module.Mean("loss")
        ms = [metrics_module.get(i, self.loss) for i in self._metric_ids] if self._metric_ids else []
        for i in range(0, len(feats), batch_size):
            fb, yb = feats[i:i + batch_size], y[i:i + batch_size]
            logits, _ = head.forward(fb, training=False)
            loss, probs = head.loss_value(logits, labels.targets(yb), None)
            loss_m.update_state(loss, len(fb))
            for m in ms:
                m.update_state(yb, probs)
        return {"loss": float(loss_m.result()), **{m.name: float(m.result()) for m in ms}}

    # -- evaluate / predict ----------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False):
        """Loss and metrics on data (Keras' evaluate), inference mode, no class weights.

        Returns the loss (float) when no metrics were compiled, else [loss, *metrics]
        (or a dict with return_dict=True). Raises RuntimeError before compile,
        ValueError for bad data.
        """
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("You must call `compile()` before `evaluate()`.")
        verbose = _check_verbose(verbose)
        batch_size = _check_int("batch_size", batch_size, 1)
        if _is_dataset(x):
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset.")
        else:
            x = _check_x(x, "x")
            if y is None:
                raise ValueError("`y` is required when `x` is an array.")
        self._ensure_built(x)
        s = self._split_for_inference()
        head = _Head(self._layers[s:], self.loss)
        labels = _Labels(self.loss, self._layers[-1].units)
        if not _is_dataset(x):
            y = labels.check(y, "y", n=len(x))
        feats, yy = self._features(self._stages(self._layers[:s]), x, y, batch_size, labels, "evaluate", verbose)
        logs = self._evaluate_features(head, feats, yy, labels, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def _split_for_inference(self):
        s = len(self._layers)
        while s > 0 and isinstance(self._layers[s - 1], (Dense, Dropout)):
            s -= 1
        if s == len(self._layers):
            raise ValueError("The model must end with a Dense layer.")
        return s

    def predict(self, x, batch_size=32, verbose="auto"):
        """Model outputs (N, units) float32 in inference mode (Keras' predict).

        x: NumPy array (N, ...) or an ImageDataset (its labels are ignored; a shuffling
        dataset gives its shuffled order). Raises ValueError for bad input.
        """
        verbose = _check_verbose(verbose)
        batch_size = _check_int("batch_size", batch_size, 1)
        if not _is_dataset(x):
            x = _check_x(x, "x")
        self._ensure_built(x)
        if not isinstance(self._layers[-1], Dense):
            return self._run(self._stages(self._layers), x, False)
        s = self._split_for_inference()
        feats, _ = self._features(self._stages(self._layers[:s]), x, None, batch_size, None, "predict", verbose)
        out = []
        for i in range(0, len(feats), batch_size):
            z = feats[i:i + batch_size]
            for l in self._layers[s:]:
                z = l(z, training=False)
            out.append(np.asarray(z, np.float32))
        return np.concatenate(out)

    def __call__(self, x, training=False):
        """Forward pass on a NumPy batch (layers' own call)."""
        x = np.asarray(x)
        self._ensure_built(x)
        for l in self._layers:
            x = l(x, training=training)
        return x

    # -- weights -------------------------------------------------------------------------
    def get_weights(self):
        """All layers' weights (float32 copies), layer order then Keras order within a layer."""
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
        """Sets weights from a list like get_weights(); ValueError on a count or shape mismatch
        (nothing is changed then)."""
        weights = list(weights)
        counts = [len(l.get_weights()) for l in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(f"`weights` must be a list of {sum(counts)} arrays (like get_weights()). "
                             f"Received: {len(weights)}")
        i = 0
        pending = []
        for l, c in zip(self._layers, counts):
            cur = l.get_weights()
            for j in range(c):
                if np.shape(weights[i + j]) != cur[j].shape:
                    raise ValueError(f"`weights`[{i + j}] (layer {l.name!r}) must have shape {cur[j].shape}. "
                                     f"Received: {np.shape(weights[i + j])}")
            pending.append((l, weights[i:i + c]))
            i += c
        for l, w in pending:
            if w:
                l.set_weights(w)

    def count_params(self):
        return int(sum(l.count_params() for l in self._layers))

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn=None):
        """Prints a Keras-like table: layer (type), output shape, params; then total,
        trainable and non-trainable parameter counts. Builds nothing: call fit / build first
        for shapes (unbuilt shapes print as '?')."""
        print_fn = print_fn or print
        shapes = self._output_shapes() if self.built else ["?"] * len(self._layers)
        rows = [(f"{l.name} ({type(l).__name__})", str(s), f"{l.count_params():,}") for l, s in zip(self._layers, shapes)]
        w = [max([len(r[i]) for r in rows] + [len(h)]) + 2 for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = "=" * sum(w)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * sum(w))
        print_fn("Layer (type)".ljust(w[0]) + "Output Shape".ljust(w[1]) + "Param #".rjust(w[2]))
        print_fn(line)
        for r in rows:
            print_fn(r[0].ljust(w[0]) + r[1].ljust(w[1]) + r[2].rjust(w[2]))
        print_fn(line)
        total = self.count_params()
        trainable = sum(l.count_params() for l in self._layers if l.trainable)
        print_fn(f" Total params: {total:,}")
        print_fn(f" Trainable params: {trainable:,}")
        print_fn(f" Non-trainable params: {total - trainable:,}")
        print_fn("_" * sum(w))

    # -- save --------------------------------------------------------------------------------
    def save(self, filepath):
        """Saves architecture, weights and compile config to a zip (format in the module
        docstring), atomically. The base is saved by reference (path + SHA-256)."""

        if not self.built:
            raise ValueError("The model is not built: fit it or call build(input_shape) before save().")
        filepath = os.fspath(filepath)
        layers_cfg, arrays = [], {}
        for i, l in enumerate(self._layers):
            entry = {"module": type(l).__module__, "class_name": type(l).__name__, "config": l.get_config(),
                     "trainable": l.trainable, "weights_ref": None}
            wp = getattr(l, "weights_path", None)
            if wp:
                entry["weights_ref"] = {"path": os.path.abspath(wp), "sha256": sha256_of(wp)}
            else:
                for j, w in enumerate(l.get_weights()):
                    arrays[f"layer{i}_w{j}"] = w
            layers_cfg.append(entry)
        compile_cfg = None
        if self.optimizer is not None:
            compile_cfg = {"optimizer": optimizers_module.serialize(self.optimizer),
                           "loss": losses_module.serialize(self.loss),
                           "metrics": [m if isinstance(m, str) else m.name for m in self._metric_ids]}
        config = {"format": _FORMAT, "format_version": 1, "name": self.name,
                  "build_input_shape": list(self._build_shape), "layers": layers_cfg, "compile": compile_cfg}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with atomic_write(filepath, suffix=".ttz") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", json.dumps(config, indent=1, default=_json_default))
            z.writestr("weights.npz", buf.getvalue())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {o!r}")


def load_model(filepath, custom_objects=None, compile=True):
    """Loads a model written by ``Sequential.save``.

    Args:
      filepath (str | os.PathLike): the file.
      custom_objects (dict | None): {class name: Layer subclass} for layers defined
        outside tflite_transfer, as in Keras. Only this package's layers and these
        classes are loaded: a model file cannot import or call other code.
      compile (bool): compile with the saved optimizer, loss and metrics.

    Raises:
      OSError: the file cannot be read.
      ValueError: not a tflite_transfer model file, or a referenced base weights
        file is missing or its SHA-256 differs (the message names the path).
    """

    filepath = os.fspath(filepath)
    try:
        return _load_model(filepath, custom_objects or {}, compile)
    except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError,
            zipfile.BadZipFile) as e:
        # A damaged or hand-edited file: say which file, not only what Python tripped on.
        raise ValueError(f"{filepath} is not a valid tflite_transfer model file: "
                         f"{type(e).__name__}: {e}") from e
    except ValueError as e:
        if filepath in str(e):
            raise
        raise ValueError(f"{filepath}: {e}") from e


def _load_model(filepath, custom_objects, compile):
    try:
        with zipfile.ZipFile(filepath) as z:
            config = json.loads(z.read("config.json"))
            weights = np.load(io.BytesIO(z.read("weights.npz")))
            weights = {k: weights[k] for k in weights.files}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{filepath} is not a tflite_transfer model file ({e}).") from e
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ValueError(f"{filepath} is not a tflite_transfer model file "
                         f"(format={config.get('format') if isinstance(config, dict) else None!r}).")
    layers = []
    for i, entry in enumerate(config["layers"]):
        cfg = dict(entry["config"])
        ref = entry.get("weights_ref")
        if ref:
            path = ref["path"]
            if not os.path.exists(path):
                raise ValueError(f"{filepath}: layer {cfg.get('name')!r} references weights {path}, which does not "
                                 f"exist (SHA-256 {ref['sha256']}).")
            if sha256_of(path) != ref["sha256"]:
                raise ValueError(f"{filepath}: weights file {path} has changed (SHA-256 differs from "
                                 f"{ref['sha256']}).")
            layer = _build_base(entry, cfg, path, custom_objects)
        else:
            cls = _layer_class(entry["module"], entry["class_name"], custom_objects)
            layer = cls.from_config(cfg) if hasattr(cls, "from_config") else cls(**_accepted(cls, cfg))
        layer.trainable = bool(entry.get("trainable", True))
        layers.append(layer)
    model = Sequential(layers, name=config.get("name"))
    model.build(tuple(config["build_input_shape"]))
    for i, l in enumerate(layers):
        if config["layers"][i].get("weights_ref"):
            continue
        ws = [weights[f"layer{i}_w{j}"] for j in range(len(l.get_weights()))]
        if ws:
            l.set_weights(ws)
    c = config.get("compile")
    if compile and c:
        model.compile(optimizer=optimizers_module.get(c["optimizer"]), loss=losses_module.get(c["loss"]),
                      metrics=c["metrics"])
    return model


def _layer_class(module, class_name, custom_objects):
    """The Layer subclass a saved config names; only this package's layers and the
    caller's `custom_objects` are loaded (a model file must not be able to import or
    call arbitrary code)."""
    custom = custom_objects.get(class_name)
    if isinstance(custom, type) and issubclass(custom, Layer):
        return custom
    if not (isinstance(module, str) and (module == "tflite_transfer" or module.startswith("tflite_transfer."))):
        raise ValueError(f"layer module {module!r} is not part of tflite_transfer")
    cls = getattr(importlib.import_module(module), str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"{module}.{class_name} is not a tflite_transfer layer")
    return cls


def _accepted(fn, cfg):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return cfg
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return cfg
    return {k: v for k, v in cfg.items() if k in params}


def _build_base(entry, cfg, path, custom_objects):
    """Rebuilds a pretrained base from its config, pointing `weights` at `path`."""
    factory = None
    if entry["module"].startswith("tflite_transfer.applications"):
        from . import applications
        factory = getattr(applications, "MobileNetV2", None)
    if factory is None:
        factory = _layer_class(entry["module"], entry["class_name"], custom_objects)
    cfg = dict(cfg)
    cfg["weights"] = path
    if "input_shape" in cfg and cfg["input_shape"] is not None:
        cfg["input_shape"] = tuple(cfg["input_shape"])
    return factory(**_accepted(factory, cfg))


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"`{name}` must be an integer >= {lo}. Received: {name}={v!r}")
    return int(v)


def _check_verbose(v):
    if v == "auto":
        return 1
    if v not in (0, 1, 2) or isinstance(v, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={v!r}")
    return int(v)


def _progress(verbose, steps, epoch, epochs):
    if verbose != 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step", file=sys.stdout, leave=True,
                dynamic_ncols=True)
