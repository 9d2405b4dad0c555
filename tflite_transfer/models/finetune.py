"""Fine-tuning the base in ``fit`` (issue 8): the trainable top of a MobileNetV2 base trained
through the C engine's backward pass (``_core.TrainEngine``), with the head's trainer on top.

What trains is Keras': ``base.trainable = True`` then ``for layer in base.layers[:k]:
layer.trainable = False`` (``base.fine_tune_from(k)``). Batch norm is folded into the .tflite
convolutions, so training a conv's folded kernel and bias is what Keras does with batch norm in
inference mode (its recommended setting for fine-tuning); see ``applications.mobilenet_v2_layers``
for what ``trainable`` means on ``*_BN`` / ``*_relu`` layers. The engine makes every op from the
first trainable one on trainable (``base.first_trainable_op()``) and runs the ops below it in
inference mode, keeping nothing; a kernel or bias whose Keras layer is frozen gets no update.

Model structure: ``[layers without weights (augmentation, Rescaling)] + [base] +
[GlobalAveragePooling2D() unless the base pools itself with pooling="avg"] + head``. The
pooling runs in NumPy on the engine's last feature map (N, h, w, 1280); its backward spreads
dL/dfeature / (h w) over the map.

Two paths (``fit`` prints which):
  * no random layer before the base: the frozen bottom runs once over the training data and the
    tensors crossing the boundary (the cut) are cached, in RAM up to ``cache_budget_bytes()``
    (``TFLITE_TRANSFER_CACHE_MB``, default 1024 MiB) or else memory-mapped to a temporary file;
    each epoch runs only the trainable top, forward and backward (path "feature_cache");
  * augmentation active: each batch runs augmentation, the frozen bottom (inference) and the top
    (forward + backward) (path "per_batch").
After each epoch the trained weights are written into the base's model (``Model.set_tensor``),
so validation, ``evaluate`` and ``predict`` use them; ``base._fine_tuned`` keeps the changed
tensors for ``save`` (stored in the .ttz next to the reference to the unchanged .tflite file).
"""
import os
import tempfile

import numpy as np

from .. import _core
from ..layers.core import GlobalAveragePooling2D


def cache_budget_bytes():
    """RAM budget of the cut cache in bytes: ``TFLITE_TRANSFER_CACHE_MB`` MiB (default 1024)."""
    try:
        mb = float(os.environ.get("TFLITE_TRANSFER_CACHE_MB", "1024"))
    except ValueError:
        raise ValueError("TFLITE_TRANSFER_CACHE_MB must be a number of MiB. Received: "
                         f"{os.environ.get('TFLITE_TRANSFER_CACHE_MB')!r}") from None
    return int(mb * 2 ** 20)


def find_tuned_base(prefix):
    """(index in prefix, base) of the base to fine-tune, or None when nothing before the head trains.

    Raises:
      NotImplementedError: a layer with trainable weights that is not a MobileNetV2 base.
      ValueError: the layers around a trainable base are not [weightless layers] + base +
        [GlobalAveragePooling2D()] (or base with pooling="avg"), or more than one base trains.
    """
    found = None
    for i, l in enumerate(prefix):
        if not (l.trainable and l.count_params() > 0):
            continue
        if not hasattr(l, "first_trainable_op"):
            raise NotImplementedError(
                f"Layer {l.name!r} before the classifier head has trainable weights. Fine-tuning layers "
                f"before the head is not supported yet: freeze it with `{l.name}.trainable = False`.")
        if l.first_trainable_op() is None:  # base.trainable but every layer of it frozen
            continue
        if found is not None:
            raise ValueError("Only one base can be fine-tuned at a time; freeze the others.")
        found = (i, l)
    if found is None:
        return None
    i, base = found
    rest = prefix[i + 1:]
    gap = len(rest) == 1 and isinstance(rest[0], GlobalAveragePooling2D) and not rest[0].keepdims
    if getattr(base, "include_top", False) or not (gap and base.pooling is None or not rest and base.pooling == "avg"):
        raise ValueError(f"To fine-tune {base.name!r}, build it with include_top=False and follow it with "
                         "GlobalAveragePooling2D() (or pooling='avg') and the Dense head. Received layers after "
                         f"it: {[type(l).__name__ for l in rest]}, pooling={base.pooling!r}")
    for l in prefix[:i]:
        if l.count_params() > 0:
            raise ValueError(f"Layer {l.name!r} before the fine-tuned base {base.name!r} has weights; only "
                             "weightless layers (augmentation, Rescaling) may come before it.")
    return found


class BaseTuner:
    """Forward / backward of a base's trainable top for the training loop.

    Engines are built per batch size (``_core.TrainEngine``; at most 3 kept). The trained values
    live in float32 arrays bound to the engines (updated in place by the optimizer); ``sync``
    writes them into the base's model.
    """

    def __init__(self, base):
        self.base = base
        self.train_from = base.first_trainable_op()
        self.masks = base.trainable_op_masks()
        self.tensor = base.feature_map_tensor
        self.hw = base._hw
        self.values, self.grads, self.trainable, self.shapes = {}, {}, {}, {}
        self._engines = {}
        self._last = None
        ops = base.model.ops
        self.first_layer = next((l.name for l in base.layers if l.trainable), None)
        self.op_name = ops[self.train_from]["type"]

    @classmethod
    def for_base(cls, base):
        """The base's tuner from an earlier fit when what trains is unchanged (its engines are
        reused; their parameters are reloaded from the model), else a new one."""
        old = getattr(base, "_tuner", None)
        if old is not None and old.train_from == base.first_trainable_op() and \
                old.masks == base.trainable_op_masks():
            for t, v in old.values.items():
                v[...] = base.model.get_tensor(t).ravel()
            return old
        base._tuner = cls(base)
        return base._tuner

    def engine(self, n):
        """The TrainEngine for batches of n (built and bound on first use)."""
        e = self._engines.get(n)
        if e is not None:
            return e
        if len(self._engines) >= 3:
            self._engines.pop(next(iter(self._engines)))
        h, w = self.hw
        e = _core.TrainEngine(self.base.model, n, h, w, self.tensor, self.train_from)
        ops = self.base.model.ops
        for k, p in enumerate(e.params):
            t = p["tensor"]
            if t not in self.values:
                arr = self.base.model.get_tensor(t)
                self.shapes[t] = arr.shape
                self.values[t] = np.ascontiguousarray(arr, np.float32).ravel()
                self.grads[t] = np.zeros(p["size"], np.float32)
                kernel, bias = self.masks.get(p["op"], (True, True))
                self.trainable[t] = kernel if t == ops[p["op"]]["inputs"][1] else bias
            e.bind_param(k, self.values[t], self.grads[t])
        self._engines[n] = e
        return e

    @property
    def n_trainable(self):
        """Number of trained scalars (after the first engine is built)."""
        return int(sum(v.size for t, v in self.values.items() if self.trainable[t]))

    def _pool(self, fmap, e):
        self._last = (e, fmap.shape)
        return fmap.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)

    def forward(self, x):
        """Pooled features (n, 1280) float32 of a preprocessed batch x (n, H, W, 3) float32,
        keeping what backward needs."""
        e = self.engine(len(x))
        return self._pool(e.run(np.ascontiguousarray(x, np.float32)), e)

    def bottom(self, x):
        """The cut tensors (list of float32 arrays, batch first) of a preprocessed batch."""
        return self.engine(len(x)).run_bottom(np.ascontiguousarray(x, np.float32))

    def forward_top(self, cut):
        """Pooled features from cached cut tensors (as ``bottom`` returned them, any batch size)."""
        e = self.engine(len(cut[0]))
        return self._pool(e.run_top([np.ascontiguousarray(c, np.float32) for c in cut]), e)

    def backward(self, dfeat):
        """dL/dfeatures (n, 1280) -> (grads, variables) of the trainable kernels and biases."""
        e, shape = self._last
        n, h, w, c = shape
        dy = np.empty(shape, np.float32)
        dy[...] = (np.asarray(dfeat, np.float32) / (h * w))[:, None, None, :]
        e.backward(dy)
        ts = [t for t in self.values if self.trainable[t]]
        return [self.grads[t] for t in ts], [self.values[t] for t in ts]

    def sync(self):
        """Writes the trained values into the base's model (and records them for save)."""
        changed = getattr(self.base, "_fine_tuned", None)
        if changed is None:
            changed = self.base._fine_tuned = {}
        for t, v in self.values.items():
            if self.trainable[t]:
                self.base.model.set_tensor(t, v)
                changed[t] = v.reshape(self.shapes[t]).copy()


class CutCache:
    """The cut tensors of every training sample: NumPy arrays in RAM, or memory-mapped files in a
    temporary folder (removed by ``close``) when their size exceeds ``budget`` bytes."""

    def __init__(self, shapes, n, budget):
        per = sum(int(np.prod(s[1:])) for s in shapes) * 4
        self.nbytes = per * n
        self.mapped = self.nbytes > budget
        self._dir = tempfile.TemporaryDirectory(prefix="tt_cut_") if self.mapped else None
        self.arrays = []
        for k, s in enumerate(shapes):
            shape = (n,) + tuple(s[1:])
            if self.mapped:
                self.arrays.append(np.lib.format.open_memmap(os.path.join(self._dir.name, f"cut{k}.npy"), "w+",
                                                             np.float32, shape))
            else:
                self.arrays.append(np.empty(shape, np.float32))
        self.where = self._dir.name if self.mapped else "RAM"

    def put(self, start, parts):
        for a, p in zip(self.arrays, parts):
            a[start:start + len(p)] = p

    def take(self, idx):
        idx = np.sort(idx)
        return [np.ascontiguousarray(a[idx]) for a in self.arrays], idx

    def close(self):
        self.arrays = []
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def build_cut_cache(trainer, tuner, pre_stages, x, y, batch_size, labels, verbose):
    """Runs the weightless layers and the frozen bottom once over the training data (inference
    mode) and caches the cut: returns (CutCache, labels (N,) or (N, C), N, largest batch)."""
    import math
    import sys

    from tqdm.auto import tqdm

    from .data_adapters import _is_dataset, _prefetch

    cache, ys, start, largest = None, [], 0, 0
    is_ds = _is_dataset(x)
    total = len(x) if is_ds else math.ceil(len(x) / batch_size)
    n_all = (x.num_images if hasattr(x, "num_images") else None) if is_ds else len(x)
    chunks = []  # when the dataset's size is unknown: keep the parts, then copy once
    with tqdm(total=total, desc="bottom (train)", unit="batch", disable=verbose != 1, leave=False,
              file=sys.stdout) as bar:
        for xb, yb in _prefetch(trainer._iter_batches(x, y, batch_size, shuffle=False), lambda item: item):
            xp = tuner.base._prepare(trainer._run(pre_stages, xb, False))
            parts = tuner.bottom(xp)
            largest = max(largest, len(xp))
            if cache is None and n_all is not None:
                cache = CutCache([p.shape for p in parts], n_all, cache_budget_bytes())
            if cache is not None:
                cache.put(start, parts)
            else:
                chunks.append(parts)
            start += len(xp)
            ys.append(labels.check(yb, "y"))
            bar.update(1)
    if cache is None:
        cache = CutCache([p.shape for p in chunks[0]], start, cache_budget_bytes())
        s = 0
        for parts in chunks:
            cache.put(s, parts)
            s += len(parts[0])
    return cache, np.concatenate(ys), start, largest
