"""Saving and loading ``Sequential`` models (Keras' ``saving``): ``save_model``
(behind ``Sequential.save``), ``load_model`` and the layer class lookup.

Save format (``model.save(path)``, any extension, e.g. ``.ttz``): a zip archive,
written to a temporary file then renamed (atomic), holding
  * ``config.json``: {"format": "tflite_transfer.Sequential", "format_version": 1,
    "name", "build_input_shape", "layers": [{"module", "class_name", "config",
    "weights_ref"}], "compile": {"optimizer", "loss", "metrics"} | null};
  * ``weights.npz``: ``layer{i}_w{j}`` float32 arrays of every layer that is not
    saved by reference.
A pretrained base (a layer with a ``weights_path`` attribute) is saved by
reference: ``weights_ref`` = {"path", "sha256"} of its .tflite file; load_model
checks the SHA-256. A fine-tuned base also stores its trained tensors
(``changed_tensors``: tensor indices; ``layer{i}_t{tensor}`` arrays in weights.npz,
the .tflite layout), applied over the referenced file on load. Its Keras layers' ``trainable`` flags are kept as ``frozen_layers``
(the names of the frozen ones), so a base unfrozen from ``fine_tune_at`` reloads so. The optimizer's state (moments) is not saved.
"""
import importlib
import inspect
import io
import json
import os
import zipfile

import numpy as np

from .. import losses as losses_module
from .. import optimizers as optimizers_module
from ..layers.base import Layer
from ..utils import atomic_write, sha256_of

_FORMAT = "tflite_transfer.Sequential"


def save_model(model, filepath):
    """Saves `model` (a built Sequential) to `filepath` (str | os.PathLike): architecture,
    weights and compile config in a zip (format in the module docstring), atomically.
    The base is saved by reference (path + SHA-256). Raises ValueError when the model is
    not built, OSError when the file cannot be written."""
    if not model.built:
        raise ValueError("The model is not built: fit it or call build(input_shape) before save().")
    filepath = os.fspath(filepath)
    layers_cfg, arrays = [], {}
    for i, l in enumerate(model.layers):
        entry = {"module": type(l).__module__, "class_name": type(l).__name__, "config": l.get_config(),
                 "trainable": l.trainable, "weights_ref": None}
        wp = getattr(l, "weights_path", None)
        if wp:
            entry["weights_ref"] = {"path": os.path.abspath(wp), "sha256": sha256_of(wp)}
            if l._flatten_layers()[1:]:  # the base's Keras layers: which of them were frozen
                entry["frozen_layers"] = [m.name for m in l._flatten_layers()[1:] if not m.trainable]
            changed = getattr(l, "_fine_tuned", None) or {}
            if changed:  # fine-tuned kernels / biases: stored here, the rest stays in the referenced file
                entry["changed_tensors"] = sorted(int(t) for t in changed)
                for t, w in changed.items():
                    arrays[f"layer{i}_t{int(t)}"] = np.asarray(w, np.float32)
        else:
            for j, w in enumerate(l.get_weights()):
                arrays[f"layer{i}_w{j}"] = w
        layers_cfg.append(entry)
    compile_cfg = None
    if model.optimizer is not None:
        compile_cfg = {"optimizer": optimizers_module.serialize(model.optimizer),
                       "loss": losses_module.serialize(model.loss),
                       "metrics": [m if isinstance(m, str) else m.name for m in model._metric_ids]}
    config = {"format": _FORMAT, "format_version": 1, "name": model.name,
              "build_input_shape": list(model._build_shape), "layers": layers_cfg, "compile": compile_cfg}
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
            changed = entry.get("changed_tensors") or []
            if changed:  # a fine-tuned base: its trained tensors over the file's
                layer._fine_tuned = {}
                for t in changed:
                    w = weights[f"layer{i}_t{int(t)}"]
                    layer.model.set_tensor(int(t), w)
                    layer._fine_tuned[int(t)] = w
        else:
            cls = _layer_class(entry["module"], entry["class_name"], custom_objects)
            layer = cls.from_config(cfg) if hasattr(cls, "from_config") else cls(**_accepted(cls, cfg))
        layer.trainable = bool(entry.get("trainable", True))
        frozen = set(entry.get("frozen_layers") or ())
        if frozen:  # a partly unfrozen base (fine-tuning): restore each Keras layer's flag
            for m in layer._flatten_layers()[1:]:
                m.trainable = m.name not in frozen
        layers.append(layer)
    from .sequential import Sequential  # sequential imports this module

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
        from .. import applications
        factory = getattr(applications, "MobileNetV2", None)
    if factory is None:
        factory = _layer_class(entry["module"], entry["class_name"], custom_objects)
    cfg = dict(cfg)
    cfg["weights"] = path
    if "input_shape" in cfg and cfg["input_shape"] is not None:
        cfg["input_shape"] = tuple(cfg["input_shape"])
    return factory(**_accepted(factory, cfg))



# -- weights only (Keras' save_weights / load_weights) ---------------------------------------
_WEIGHTS_FORMAT = "tflite_transfer.weights"


def _own_weights(model):
    """{"layer{i}_w{j}": array} for every layer not saved by reference (the pretrained base,
    which has a `weights_path`, is fixed and not written)."""
    out = {}
    for i, l in enumerate(model.layers):
        if getattr(l, "weights_path", None):
            continue
        for j, w in enumerate(l.get_weights()):
            out[f"layer{i}_w{j}"] = w
    return out


def save_weights(model, filepath):
    """Writes the weights of `model` (a built Sequential) to `filepath`, atomically.

    Format by extension: ``.h5`` (e.g. Keras 3's ``.weights.h5`` names) -> HDF5 through h5py
    (the ``h5`` extra); anything else -> NumPy ``.npz``. Both hold float32 arrays
    ``layer{i}_w{j}`` (layer i, weight j in Keras order) for each layer not saved by reference,
    and the layer names and classes (``__layers__``) for the checks of `load_weights`. The
    pretrained base is fixed (its .tflite file), so it is not written: a MobileNetV2 + head
    checkpoint is the head's size.

    Raises ValueError (model not built), ImportError (.h5 without h5py), OSError (write).
    """
    if not model.built:
        raise ValueError("The model is not built: fit it or call build(input_shape) before save_weights().")
    filepath = os.fspath(filepath)
    arrays = _own_weights(model)
    meta = json.dumps({"format": _WEIGHTS_FORMAT, "layers": [[l.name, type(l).__name__] for l in model.layers]})
    if filepath.lower().endswith(".h5"):
        try:
            import h5py
        except ImportError as e:
            raise ImportError(f"Writing {filepath!r} (.h5) needs h5py (pip install h5py, or the package's "
                              f"'h5' extra); other extensions are written as .npz without it.") from e
        with atomic_write(filepath, suffix=".h5") as f, h5py.File(f, "w") as h:
            h.attrs["__layers__"] = meta
            for k, v in arrays.items():
                h.create_dataset(k, data=v)
        return
    with atomic_write(filepath, suffix=".npz") as f:
        np.savez(f, __layers__=np.array(meta), **arrays)


def _read_weights(filepath):
    if filepath.lower().endswith(".h5"):
        import h5py

        with h5py.File(filepath, "r") as h:
            meta = h.attrs.get("__layers__")
            return {k: np.asarray(h[k]) for k in h.keys()}, meta
    if not zipfile.is_zipfile(filepath):
        # np.load would otherwise try its pickle path and answer with its allow_pickle advice.
        raise ValueError("neither an HDF5 (.h5) file nor a NumPy .npz archive")
    with np.load(filepath, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = arrays.pop("__layers__", None)
    return arrays, (None if meta is None else str(meta))


def load_weights(model, filepath):
    """Loads weights written by `save_weights` (or by ``ModelCheckpoint(save_weights_only=True)``,
    including its earlier ``w0, w1, ...`` .npz files of every ``get_weights()`` array) into `model`,
    which must have the same layers (built; the base the same file). Nothing changes on error.

    Raises:
      FileNotFoundError: no such file. ValueError: not a weights file, or the layer count,
      classes or weight shapes differ (the message names the file and the layer).
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"Weights file not found: {filepath!r}")
    if not model.built:
        raise ValueError(f"Build the model (fit, build(input_shape) or a first layer with an input shape) "
                         f"before load_weights({filepath!r}).")
    try:
        arrays, meta = _read_weights(filepath)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{filepath} is not a weights file written by save_weights: {e}") from e
    if meta is None and arrays and all(k.startswith("w") and k[1:].isdigit() for k in arrays):
        weights = [arrays[f"w{i}"] for i in range(len(arrays))]  # whole get_weights() list
        try:
            model.set_weights(weights)
        except ValueError as e:
            raise ValueError(f"{filepath}: {e}") from e
        return
    try:
        info = json.loads(meta)
        assert info.get("format") == _WEIGHTS_FORMAT
        saved_layers = info["layers"]
    except Exception:
        raise ValueError(f"{filepath} is not a weights file written by save_weights.") from None
    mine = [[l.name, type(l).__name__] for l in model.layers]
    if len(saved_layers) != len(mine) or any(a[1] != b[1] for a, b in zip(saved_layers, mine)):
        raise ValueError(f"{filepath} holds the weights of layers {[c for _, c in saved_layers]}; this model has "
                         f"{[c for _, c in mine]}.")
    pending = []
    for i, l in enumerate(model.layers):
        if getattr(l, "weights_path", None):
            continue
        cur = l.get_weights()
        ws = []
        for j, c in enumerate(cur):
            w = arrays.get(f"layer{i}_w{j}")
            if w is None or w.shape != c.shape:
                raise ValueError(f"{filepath}: layer {l.name!r} weight {j} must have shape {c.shape}. "
                                 f"Received: {None if w is None else w.shape}")
            ws.append(w)
        if ws:
            pending.append((l, ws))
    for l, ws in pending:
        l.set_weights(ws)
