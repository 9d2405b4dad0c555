"""Input and label adapters for ``Sequential`` (Keras' ``trainers/data_adapters``).

Turns what the user passes to fit / evaluate / predict into checked arrays and
batches: ``_check_x`` (NumPy inputs), ``_Labels`` (labels for a loss and the
targets of the C loss), ``_class_weight_array``, ``_split_arrays``
(validation_split), ``iter_batches`` (arrays or an ImageDataset) and
``_prefetch`` (a background loader thread). Errors are ValueError naming the
argument, Keras-style ("... Received: x.shape=(2, 3)").
"""
import math
import queue
import threading

import numpy as np

def _is_dataset(obj):
    """True for the folder dataset (or anything iterable in (images, labels) batches with __len__)."""
    # str/bytes/dict are iterable and sized too, but never batches: they go to _check_x, which names them.
    return ((not isinstance(obj, (np.ndarray, list, tuple, str, bytes, dict))) and hasattr(obj, "__iter__")
            and hasattr(obj, "__len__"))


def _is_distributed_features(obj):
    from ..distributed import DistributedPrediction

    return isinstance(obj, DistributedPrediction)


def _unwrap_features(x, y, name="x"):
    """(features, labels) of a ``distributed.DistributedPrediction`` (the result of
    ``distributed.predict``, in memory or as .npy shards, or of ``distributed.load_features``);
    `y` defaults to its labels. Anything else is returned unchanged."""
    from ..distributed import load_features

    if not _is_distributed_features(x):
        return x, y
    if x.predictions is None:
        x = load_features(x.output)
    if y is None:
        if x.labels is None:
            raise ValueError(f"`{name}` (distributed features) carries no labels (its input was not a labelled "
                             "dataset): pass them as `y`.")
        y = x.labels
    return np.asarray(x.predictions), y


def _check_x(x, name):
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError:  # NumPy's "inhomogeneous shape": images of different sizes
            shapes = []
            for e in x:
                s = tuple(np.shape(e)) if not isinstance(e, (list, tuple)) else _nested_shape(e)
                if s not in shapes:
                    shapes.append(s)
            raise ValueError(f"`{name}` is a list of {len(x)} arrays of different shapes "
                             f"({', '.join(map(str, shapes[:4]))}{', ...' if len(shapes) > 4 else ''}); a batch "
                             f"needs one shape (N, H, W, 3). Load images at one size, e.g. "
                             f"tt.data.load_img(path, target_size=(224, 224)), or resize them with "
                             f"tt.data.resize(image, (224, 224)), then np.stack them.") from None
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


def _nested_shape(e):
    try:
        return tuple(np.shape(e))
    except ValueError:
        return ("ragged",)


def _looks_unbatched(x, want):
    """True when x (ndarray) looks like one sample of shape `want` (tuple without batch) or,
    without a known shape, like one (H, W, C) image."""
    if want is not None:
        return tuple(x.shape) == tuple(want)
    return x.ndim == 3 and x.shape[-1] in (1, 3, 4) and min(x.shape[:2]) > 4


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
    if stratify is not None:
        missing = sorted(set(np.asarray(stratify)[idx_tr].tolist()) - set(np.asarray(stratify)[idx_val].tolist()))
        if missing:
            import warnings
            warnings.warn(f"The validation split ({n_val} samples) has no samples of class(es) {missing}, which "
                          f"the training split has: raise validation_split or add samples of those classes.",
                          UserWarning, stacklevel=4)
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




def iter_dataset(ds, file_order):
    """(images, labels | None) batches of a dataset. file_order=True: the dataset's
    `iter_file_order()` when it has one (file_paths order, shuffle state not advanced:
    what inference uses, so outputs line up with ``ds.labels``); else a normal epoch."""
    it = ds.iter_file_order() if file_order and hasattr(ds, "iter_file_order") else iter(ds)
    for item in it:
        if isinstance(item, tuple):
            yield np.asarray(item[0]), (np.asarray(item[1]) if len(item) > 1 else None)
        else:  # label_mode=None: images only
            yield np.asarray(item), None


def iter_batches(x, y, batch_size, shuffle, rng, file_order=False):
    """(x_batch, y_batch) from arrays or a dataset.

    x: array (N, ...) or an ImageDataset (then its own batches and labels, `y`,
    `batch_size` and `shuffle` unused; `file_order` as in `iter_dataset`);
    y: array (N, ...) or None (y_batch None);
    shuffle: a new permutation from `rng` (np.random.Generator) per call.
    """
    if _is_dataset(x):
        yield from iter_dataset(x, file_order)
        return
    n = len(x)
    order = rng.permutation(n) if shuffle else np.arange(n)
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        if not shuffle:
            idx = slice(s, s + batch_size)
        yield x[idx], (y[idx] if y is not None else None)
