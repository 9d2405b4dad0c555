"""Feature extraction and prediction over many images on a Dask cluster (``dask.distributed``).

Transfer learning's cost is the frozen base's forward pass over every image; the head is tiny.
`predict` spreads that pass over the workers of a ``dask.distributed`` cluster — a
``LocalCluster`` on one machine, or ``Client("tcp://scheduler:8786")`` for many — and returns the
outputs in file order; `load_features` reads back the ``.npy`` shards it writes for data larger
than memory, and ``Sequential.fit`` trains a head on them (the feature-cache path, so the result is
the one a single-machine ``fit`` gives on the same features).

How the work is split: the file list (in the order the input defines: a dataset's ``file_paths``,
a folder's sorted listing, or the list given) is cut into partitions of `partition_size` files. One
task per partition decodes its files (the C loader, as ``image_dataset_from_directory``), runs the
model and returns its block. The model travels as its *saved form* — the ``Sequential.save`` zip:
architecture and head weights, the ``.tflite`` base by reference (path + SHA-256) — never as a
pickled C engine; each worker thread rebuilds it once and keeps it for later tasks. A worker that
does not have the referenced ``.tflite`` path resolves a registered model (``weights="imagenet"``
...) through its own cache or ``TFLITE_TRANSFER_MIRROR`` and checks the SHA-256.

Needs the optional extra: ``pip install tflite_transfer[distributed]`` (``dask[distributed]``).
Follows the Dask futures API (``Client.map`` / ``as_completed``): https://distributed.dask.org/.
"""
import dataclasses
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

from . import data as data_module
from ._native import ImageDecodeError, _core

__all__ = ["DistributedPrediction", "predict", "load_features"]

_STATUS_DECODE, _STATUS_IO, _STATUS_OOM = 4, 6, 5
_INDEX = "index.json"
_FORMAT = "tflite_transfer.distributed.features"


@dataclasses.dataclass
class DistributedPrediction:
    """What `predict` and `load_features` return.

    Attributes:
      predictions (np.ndarray | None): float32 (N, ...) model outputs, row i for file_paths[i];
        None when `predict` wrote shards (`output`) — `load_features(output)` reads them.
      file_paths (list[str]): the N files that were predicted, in input order.
      skipped (list[tuple[str, str]]): (path, reason) of the files left out (on_error="skip").
      labels (np.ndarray | None): int32 (N,) labels aligned with file_paths when the input was a
        labelled ImageDataset, else None.
      class_names (list[str] | None): the dataset's class names.
      output (str | None): the shard folder, when written.
      shards (list[str]): the shard files in order (their rows concatenate to the N outputs).
      timings (dict): `predict`'s account, summed over tasks, in seconds: ``model_load_s``
        (rebuilding the model; ~0 once cached), ``decode_s``, ``model_s``, ``task_s``,
        ``worker_cpu_s`` (CPU time of the worker process during its tasks), and ``wall_s`` (the
        client's wall clock), ``tasks``. Empty from `load_features`.

    ``np.asarray(result)`` gives `predictions`, so a result can be passed as ``x`` to ``fit``.
    """

    predictions: object
    file_paths: list
    skipped: list
    labels: object = None
    class_names: object = None
    output: object = None
    shards: list = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        if self.predictions is None:
            raise ValueError("The predictions were written to shards; read them with "
                             f"tflite_transfer.distributed.load_features({self.output!r}).")
        return self.predictions if dtype is None else self.predictions.astype(dtype)

    def __len__(self):
        return len(self.file_paths)


# ---------------------------------------------------------------------------------------------
# the model's saved form, and its rebuild on a worker
# ---------------------------------------------------------------------------------------------

def _saved_form(model):
    """(zip bytes of Sequential.save, is_base) for a built Sequential or a MobileNetV2 base."""
    from .applications.mobilenet_v2 import MobileNetV2Model
    from .models import Sequential

    if isinstance(model, MobileNetV2Model):
        seq = Sequential([model], name="base")
        seq.build(model.input_shape)
        is_base = True
    elif isinstance(model, Sequential):
        if not model.built:
            raise ValueError("`model` is not built: fit it or call build(input_shape) first.")
        seq, is_base = model, False
    else:
        raise ValueError("`model` must be a tflite_transfer Sequential or a MobileNetV2 base. "
                         f"Received: {type(model).__name__}")
    with tempfile.TemporaryDirectory(prefix="tt_dist_") as d:
        path = os.path.join(d, "model.ttz")
        seq.save(path)
        with open(path, "rb") as f:
            return f.read(), is_base


def _content_key(blob):
    """Hash of the saved model's contents (not of the zip, whose timestamps change per save)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode())
            h.update(z.read(name))
    return h.hexdigest()[:24]


def _localized(blob):
    """The saved zip with each missing base path replaced by this machine's copy of the same
    registered file (cache / mirror / download), when the file name is registered."""
    from .applications.mobilenet_v2 import WEIGHTS_REGISTRY, weights_path

    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        config = json.loads(z.read("config.json"))
        weights = z.read("weights.npz")
    changed = False
    for entry in config.get("layers", []):
        ref = entry.get("weights_ref")
        if not ref or os.path.exists(ref["path"]):
            continue
        name = os.path.basename(ref["path"])
        if name in WEIGHTS_REGISTRY and WEIGHTS_REGISTRY[name]["sha256"] == ref["sha256"]:
            ref["path"] = weights_path(name)
            changed = True
        # otherwise load_model raises ValueError naming the missing path
    if not changed:
        return blob
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("weights.npz", weights)
    return buf.getvalue()


_local = threading.local()  # per worker thread: {key: model}; a C engine serializes its own runs


def _worker_model(key, blob, is_base):
    """The model for `key`, rebuilt from `blob` once per worker thread."""
    from .models import load_model

    cache = getattr(_local, "models", None)
    if cache is None:
        cache = _local.models = {}
    if key not in cache:
        cache.clear()  # one model per thread at a time: a new run replaces the last one
        fd, path = tempfile.mkstemp(prefix="tt_dist_", suffix=".ttz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_localized(blob))
            model = load_model(path, compile=False)
        finally:
            os.unlink(path)
        cache[key] = model.layers[0] if is_base else model
    return cache[key]


def _run_partition(index, paths, *, model_key, blob, is_base, batch_size, image_size, interp, crop, max_pixels,
                   on_error, num_threads):
    """One task: decode `paths`, run the model. Returns (index, outputs float32 (k, ...) | None,
    kept positions int64 (k,), skipped [(position, reason)], timings {name: seconds})."""
    t0, c0 = time.perf_counter(), time.process_time()
    model = _worker_model(model_key, blob, is_base)
    t1 = time.perf_counter()
    h, w = image_size
    loader = _core.Loader(list(paths), h, w, interp, False, crop, max_pixels, num_threads)
    try:
        images, failures = loader.wait(loader.submit(np.arange(len(paths), dtype=np.int64)))
    finally:
        loader.close()
    t2 = time.perf_counter()
    skipped = []
    for pos, status, msg in failures:
        path = paths[pos]
        if on_error == "raise":
            if status == _STATUS_DECODE:
                raise ImageDecodeError(f"{msg} (file {path!r}; pass on_error='skip' to leave undecodable "
                                       "files out)")
            if status == _STATUS_IO:
                raise OSError(f"Cannot read image file {path!r}: {msg}")
            if status == _STATUS_OOM:
                raise MemoryError(f"Out of memory loading {path!r}: {msg}")
            raise RuntimeError(f"Loading {path!r} failed: {msg}")
        skipped.append((int(pos), str(msg)))
    bad = {p for p, _ in skipped}
    kept = np.asarray([i for i in range(len(paths)) if i not in bad], dtype=np.int64)
    out = None
    if len(kept):
        x = images if len(kept) == len(paths) else images[kept]
        if is_base:
            out = model.predict(x, batch_size=batch_size)
        else:
            out = model.predict(x, batch_size=batch_size, verbose=0)
        out = np.ascontiguousarray(out, dtype=np.float32)
    t3 = time.perf_counter()
    timings = {"model_load_s": t1 - t0, "decode_s": t2 - t1, "model_s": t3 - t2, "task_s": t3 - t0,
               "worker_cpu_s": time.process_time() - c0}
    return index, out, kept, skipped, timings


# ---------------------------------------------------------------------------------------------
# the client side
# ---------------------------------------------------------------------------------------------

def _file_list(data):
    """(paths, labels | None, class_names | None, image_size | None, interp code | None, crop | None)."""
    if isinstance(data, data_module.ImageDataset):
        labels = None if data.labels is None else np.asarray(data.labels, np.int32)
        return (list(data.file_paths), labels, data.class_names if labels is not None else None,
                tuple(data.image_size), data._interp, bool(data.crop_to_aspect_ratio))
    if isinstance(data, (str, os.PathLike)):
        d = os.fspath(data)
        if not os.path.exists(d):
            raise FileNotFoundError(f"`data` {d!r} does not exist.")
        if not os.path.isdir(d):
            raise NotADirectoryError(f"`data` {d!r} is a file; pass a folder, a list of files or an ImageDataset.")
        paths = data_module._list_valid_files(d, False)
        if not paths:
            raise ValueError(f"No images found in directory {d!r}. Allowed formats: {data_module.ALLOWLIST_FORMATS}")
        return paths, None, None, None, None, None
    if isinstance(data, (list, tuple)):
        paths = []
        for p in data:
            if not isinstance(p, (str, os.PathLike)):
                raise ValueError(f"`data` must list file paths (str). Received an item {p!r}")
            paths.append(os.fspath(p))
        if not paths:
            raise ValueError("`data` is an empty list of files.")
        return paths, None, None, None, None, None
    raise ValueError("`data` must be an ImageDataset, a folder or a list of image paths. "
                     f"Received: {type(data).__name__}")


def _model_image_size(model):
    shape = getattr(model, "input_shape", None)
    if shape is None:
        shape = getattr(model, "_build_shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError("`model` must take images (N, H, W, 3): build it with an image input shape. "
                         f"Received input shape: {shape}")
    return int(shape[1]), int(shape[2])


def _check_positive(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={v!r}")
    return int(v)


def predict(model, data, client=None, batch_size=32, partition_size=256, output=None, on_error="raise",
            interpolation="bilinear", crop_to_aspect_ratio=False, max_pixels=None, num_threads=1,
            verbose="auto"):
    """Runs `model` over many image files on a Dask cluster; outputs in file order.

    Args:
      model: a MobileNetV2 base (``applications.MobileNetV2``) or a built ``Sequential`` whose input
        is (N, H, W, 3) images. Sent to the workers in its saved form (architecture + weights, the
        .tflite base by path and SHA-256); each worker thread rebuilds it once.
      data: an ImageDataset (its ``file_paths`` order, image size, interpolation and labels are
        used), a folder (every image under it, Keras' listing order: folders sorted, then file
        names), or a list of image file paths.
      client (distributed.Client | None): the cluster; default ``distributed.get_client()`` (the
        current client — raises ValueError when there is none).
      batch_size (int >= 1): images per engine run inside a task.
      partition_size (int >= 1): files per task. Bigger amortizes the scheduler's per-task cost
        (~1 ms) and the per-task loader start; smaller balances the load and loses less work when
        a worker dies. 256 images is ~1-3 s of work per core.
      output (str | os.PathLike | None): a folder to write ``.npy`` shards to (one per partition,
        written by the client as results arrive, so at most one partition is held in memory) with
        an ``index.json`` (and ``labels.npy`` for a labelled dataset); read back with
        `load_features`. None: return the outputs as one array.
      on_error: "raise" — the first file that cannot be decoded or read raises (ImageDecodeError /
        OSError naming it) and the remaining tasks are cancelled; "skip" — such files are left
        out and listed in ``skipped`` (and a warning names their count).
      interpolation (str), crop_to_aspect_ratio (bool), max_pixels (int | None): decoding as in
        ``image_dataset_from_directory``; an ImageDataset's own settings take precedence.
      num_threads (int >= 1): C decoding threads per task (Dask supplies the parallelism).
      verbose: "auto" (= 1) or 1: a tqdm progress bar counting images; 0: silent.

    Returns:
      DistributedPrediction: ``predictions`` float32 (N,) + model output shape (None when
      `output` is set), ``file_paths``, ``skipped``, ``labels``, ``class_names``, ``output``,
      ``shards``.

    Raises:
      ImportError: dask.distributed is not installed (extra ``[distributed]``).
      ValueError: bad arguments, no client, a dataset whose image size differs from the model's, or
        nothing left after skipping. ImageDecodeError / OSError: on_error="raise" and a bad file.
    """
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tflite_transfer.distributed needs dask.distributed: "
                          "pip install 'tflite_transfer[distributed]'") from e
    batch_size = _check_positive("batch_size", batch_size)
    partition_size = _check_positive("partition_size", partition_size)
    num_threads = _check_positive("num_threads", num_threads)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}")
    if verbose == "auto":
        verbose = 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    max_pixels = data_module._check_max_pixels(max_pixels)
    blob, is_base = _saved_form(model)
    model_hw = _model_image_size(model)
    paths, labels, class_names, ds_size, ds_interp, ds_crop = _file_list(data)
    if ds_size is not None and ds_size != model_hw:
        raise ValueError(f"The dataset's image_size {ds_size} differs from the model's input size {model_hw}. "
                         "Create the dataset with image_size=" + str(model_hw) + ".")
    interp = ds_interp if ds_interp is not None else data_module._interp_code(interpolation)
    crop = ds_crop if ds_crop is not None else bool(crop_to_aspect_ratio)
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError as e:
            raise ValueError("No Dask client: pass `client=distributed.Client(...)` or create one first.") from e
    key = _content_key(blob)
    parts = [paths[i:i + partition_size] for i in range(0, len(paths), partition_size)]
    token = os.urandom(4).hex()
    futures = _submit(client, parts, token, dict(model_key=key, blob=blob, is_base=is_base, batch_size=batch_size,
                                                 image_size=model_hw, interp=interp, crop=crop,
                                                 max_pixels=max_pixels, on_error=on_error,
                                                 num_threads=num_threads))
    if output is not None:
        output = os.path.abspath(os.fspath(output))
        os.makedirs(output, exist_ok=True)
        for f in os.listdir(output):  # a previous run's shards must not mix with this one's
            if f.startswith("part-") and f.endswith(".npy") or f in (_INDEX, "labels.npy"):
                os.unlink(os.path.join(output, f))
    t_start = time.perf_counter()
    timings = {}
    blocks = [None] * len(parts)
    kept = [None] * len(parts)
    skipped_by_part = [[] for _ in parts]
    shard_rows = [0] * len(parts)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), desc="predict (distributed)", unit="img", disable=verbose == 0, file=sys.stdout)
    try:
        for fut in distributed.as_completed(futures):
            i, out, kp, sk, tm = fut.result()
            for k, v in tm.items():
                timings[k] = timings.get(k, 0.0) + v
            fut.release()
            kept[i], skipped_by_part[i] = kp, sk
            if out is not None:
                shard_rows[i] = len(out)
                if output is not None:
                    np.save(os.path.join(output, f"part-{i:05d}.npy"), out)
                else:
                    blocks[i] = out
            bar.update(len(parts[i]))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    timings["wall_s"] = time.perf_counter() - t_start
    timings["tasks"] = len(parts)
    keep_idx, skipped = [], []
    for i, part in enumerate(parts):
        base = i * partition_size
        keep_idx.extend(base + int(k) for k in kept[i])
        skipped.extend((part[p], msg) for p, msg in skipped_by_part[i])
    if skipped:
        import warnings

        warnings.warn(f"Skipped {len(skipped)} undecodable image file(s) (on_error='skip'):\n  "
                      + "\n  ".join(f"{p}: {m}" for p, m in skipped), stacklevel=2)
    if not keep_idx:
        raise ValueError("No decodable images left after on_error='skip' skipped: "
                         + ", ".join(p for p, _ in skipped))
    keep_idx = np.asarray(keep_idx, dtype=np.int64)
    file_paths = [paths[i] for i in keep_idx]
    labs = None if labels is None else labels[keep_idx]
    if output is None:
        preds = np.concatenate([b for b in blocks if b is not None])
        return DistributedPrediction(preds, file_paths, skipped, labs, class_names, timings=timings)
    shards = [f"part-{i:05d}.npy" for i in range(len(parts)) if shard_rows[i]]
    if labs is not None:
        np.save(os.path.join(output, "labels.npy"), labs)
    index = {"format": _FORMAT, "format_version": 1, "shards": shards,
             "rows": [shard_rows[i] for i in range(len(parts)) if shard_rows[i]],
             "file_paths": file_paths, "skipped": [list(s) for s in skipped],
             "class_names": class_names, "labels": "labels.npy" if labs is not None else None}
    tmp = os.path.join(output, _INDEX + ".tmp")
    with open(tmp, "w") as f:
        json.dump(index, f)
    os.replace(tmp, os.path.join(output, _INDEX))  # the index last: its presence means complete
    return DistributedPrediction(None, file_paths, skipped, labs, class_names, output,
                                 [os.path.join(output, s) for s in shards], timings)


def _identity(x):
    return x


def _submit(client, parts, token, kwargs):
    # The saved model goes into the graph once, as a task (recomputable if the workers that hold
    # it die, unlike scattered data); the partition tasks depend on it.
    kwargs = dict(kwargs, blob=client.submit(_identity, kwargs["blob"], key=f"tt-model-{token}", pure=False))
    return [client.submit(_run_partition, i, part, key=f"tt-predict-{token}-{i:05d}", pure=False, **kwargs)
            for i, part in enumerate(parts)]


def load_features(directory, mmap_mode=None):
    """Reads the shards `predict(..., output=directory)` wrote.

    Args:
      directory (str | os.PathLike): the output folder (with ``index.json``).
      mmap_mode (None | "r"): None loads the rows into one in-memory array; "r" memory-maps a
        single shard (more shards are concatenated in memory either way).

    Returns:
      DistributedPrediction with ``predictions`` float32 (N, ...) in file order, ``file_paths``,
      ``skipped``, ``labels`` (or None), ``class_names``, ``output`` and ``shards``.

    Raises:
      FileNotFoundError: no ``index.json`` in `directory` (not written, or the run did not finish).
      ValueError: a shard's row count differs from the index.
    """
    directory = os.path.abspath(os.fspath(directory))
    path = os.path.join(directory, _INDEX)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {_INDEX} in {directory!r}: not a tflite_transfer.distributed output "
                                "folder, or its run did not finish.")
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a tflite_transfer.distributed index (format={index.get('format')!r}).")
    arrays = []
    for name, rows in zip(index["shards"], index["rows"]):
        a = np.load(os.path.join(directory, name), mmap_mode=mmap_mode)
        if len(a) != rows:
            raise ValueError(f"{os.path.join(directory, name)} has {len(a)} rows; {_INDEX} says {rows}.")
        arrays.append(a)
    preds = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    labels = np.load(os.path.join(directory, index["labels"])) if index.get("labels") else None
    return DistributedPrediction(preds, list(index["file_paths"]), [tuple(s) for s in index["skipped"]], labels,
                                 index.get("class_names"), directory,
                                 [os.path.join(directory, s) for s in index["shards"]])
