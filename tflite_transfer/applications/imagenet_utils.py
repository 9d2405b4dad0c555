"""ImageNet weights registry and utilities of MobileNetV2: which file each ``weights=`` key
names (URL, SHA-256, cache), ``preprocess_input`` and ``decode_predictions``.

Split out of ``mobilenet_v2.py`` (as Keras keeps ``imagenet_utils`` apart from the
applications); ``mobilenet_v2`` re-exports every name, see its docstring for the weights table.
"""
import os

import numpy as np

from ..utils import get_file

_CORAL = "https://github.com/google-coral/test_data/raw/master/"

#: Label files: fname -> dict(origin, size, sha256). The SHA-256 and size are
#: those of the project's reference copy of imagenet_labels.txt (1001 lines,
#: "background" first, the full WordNet synonyms of each class per line, e.g.
#: "tench, Tinca tinca"). Unverified: that `origin` serves byte-identical content
#: (it could not be fetched while writing this; if it differs, a download fails
#: the SHA-256 check with a message naming the file and the folder to place it in).
LABELS_REGISTRY = {
    "imagenet_labels.txt": dict(
        origin="https://storage.googleapis.com/download.tensorflow.org/data/ImageNetLabels.txt",
        size=21686,
        sha256="b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
    ),
}

#: Pretrained models: fname -> dict(origin, size (bytes), sha256, labels (a
#: LABELS_REGISTRY key), description).
WEIGHTS_REGISTRY = {
    "mobilenet_v2_1.0_224_quant.tflite": dict(
        origin=_CORAL + "mobilenet_v2_1.0_224_quant.tflite",
        size=3610798,
        sha256="7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
        labels="imagenet_labels.txt",
        description="TF-slim MobileNetV2 1.0/224, quantization-aware trained, uint8 per-tensor",
    ),
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": dict(
        origin=_CORAL + "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        size=4070174,
        sha256="5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
        labels="imagenet_labels.txt",
        description="TF2 Keras MobileNetV2 1.0/224, post-training int8 per-channel quantized",
    ),
}

#: The model ``weights="imagenet"`` loads (a WEIGHTS_REGISTRY key); see the
#: module docstring for the measurements behind the choice.
DEFAULT_IMAGENET_MODEL = "tf2_mobilenet_v2_1.0_224_ptq.tflite"

#: ``weights=`` keys -> WEIGHTS_REGISTRY keys. "imagenet" is resolved at call
#: time to DEFAULT_IMAGENET_MODEL.
WEIGHTS_ALIASES = {
    "imagenet_ptq": "tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "imagenet_quant": "mobilenet_v2_1.0_224_quant.tflite",
}

_POOLED_CHANNELS = 1280  # MobileNetV2 1.0: width of the last 1x1 conv, before the classifier


#: ``weights=`` key of the float ImageNet weights (``float_weights.py``): per-tensor .npy files
#: downloaded and assembled once into a float32 .tflite without classifier.
FLOAT_WEIGHTS_KEY = "imagenet_float"
_FLOAT_MODEL_FILE = "mobilenet_v2_1.0_224_float_notop.tflite"


def float_weights_path():
    """Local path (str) of the float ImageNet MobileNetV2 1.0/224 as a .tflite without classifier.

    Downloads (or finds in the cache / ``TFLITE_TRANSFER_MIRROR``) the 104
    per-tensor .npy files of ``float_weights.FILES``, each checked by SHA-256,
    and writes them once into ``$TFLITE_TRANSFER_HOME/models/`` as a float32
    .tflite (``architecture.build_tflite``); later calls reuse that file.

    Raises:
      OSError: a file is missing and cannot be downloaded (names URL and folder).
      ValueError: a file's SHA-256 or shape is wrong.
    """
    from . import architecture, float_weights
    from ..utils import atomic_write, cache_dir

    out = os.path.join(cache_dir(), "models", _FLOAT_MODEL_FILE)
    if os.path.isfile(out):
        return out
    weights = {}
    for layer, (kf, ksha, bf, bsha) in float_weights.FILES.items():
        arrs = []
        for fname, sha in ((kf, ksha), (bf, bsha)):
            path = get_file(f"{float_weights.SUBDIR}/{fname}", float_weights.ORIGIN + fname, file_hash=sha,
                            cache_subdir="models")
            arrs.append(np.load(path, allow_pickle=False))
        weights[layer] = tuple(arrs)
    data = architecture.build_tflite(weights, alpha=1.0, input_shape=(224, 224, 3), include_top=False,
                                     description="MobileNetV2 1.0/224 float ImageNet weights (no classifier)")
    with atomic_write(out) as f:
        f.write(data)
    return out


def _registry_key(weights):
    if weights == "imagenet":
        return DEFAULT_IMAGENET_MODEL
    if weights == FLOAT_WEIGHTS_KEY:
        return FLOAT_WEIGHTS_KEY
    if weights in WEIGHTS_ALIASES:
        return WEIGHTS_ALIASES[weights]
    if weights in WEIGHTS_REGISTRY:
        return weights
    return None


def weights_path(weights="imagenet"):
    """Local path (str) of a registered pretrained model, downloading it if absent.

    Args:
      weights (str): "imagenet", "imagenet_ptq", "imagenet_quant",
        "imagenet_float" (assembled by `float_weights_path`) or a
        WEIGHTS_REGISTRY file name.

    Raises:
      KeyError: unknown key.
      OSError: the file is not cached and the download failed; the message names
        the URL and the folder to place the file in.
      ValueError: the cached file's SHA-256 does not match (corrupt or different file).
    """
    key = _registry_key(weights)
    if key is None:
        raise KeyError(f"Unknown pretrained weights {weights!r}; known: "
                       f"{['imagenet', FLOAT_WEIGHTS_KEY] + sorted(WEIGHTS_ALIASES) + sorted(WEIGHTS_REGISTRY)}")
    if key == FLOAT_WEIGHTS_KEY:
        return float_weights_path()
    e = WEIGHTS_REGISTRY[key]
    return get_file(key, e["origin"], file_hash=e["sha256"], cache_subdir="models", file_size=e["size"])


def labels_path(weights="imagenet"):
    """Local path (str) of the label file that a registered model names (see weights_path).

    The file has one class name per line, line ``i`` = output index ``i``
    (line 0 = "background"). Same errors as `weights_path`.
    """
    key = _registry_key(weights)
    if key is None:
        raise KeyError(f"Unknown pretrained weights {weights!r}")
    fname = "imagenet_labels.txt" if key == FLOAT_WEIGHTS_KEY else WEIGHTS_REGISTRY[key]["labels"]
    e = LABELS_REGISTRY[fname]
    return get_file(fname, e["origin"], file_hash=e["sha256"], cache_subdir="models", file_size=e["size"])


# -- preprocess / decode -------------------------------------------------------------
def preprocess_input(x, data_format=None):
    """Scales RGB pixels from [0, 255] to [-1, 1]: ``x / 127.5 - 1`` (Keras' "tf" mode).

    As ``keras.applications.mobilenet_v2.preprocess_input``: integer input
    (e.g. uint8 images) is converted to float32 first; float input keeps its
    float dtype. Unlike Keras, a float NumPy array is never modified in place:
    a new array is returned.

    Args:
      x: array-like of RGB values in [0, 255], any shape (usually (N, H, W, 3)).
      data_format: accepted for Keras compatibility; the operation is per-element
        so the layout does not matter (None, "channels_last", "channels_first").

    Returns:
      ndarray, same shape, float32 (or the input's float dtype), values in [-1, 1]
      for inputs in [0, 255].

    Raises:
      ValueError: `x` is not numeric (bool, object, complex, strings) or
        `data_format` is not one of the values above.
    """
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError("`data_format` must be None, 'channels_last' or 'channels_first'. "
                         f"Received: data_format={data_format!r}")
    x = np.asarray(x)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError("`x` must be a numeric array of RGB values in [0, 255]. "
                         f"Received: x.shape={x.shape}, x.dtype={x.dtype}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    # x / 127.5 - 1 in the array's own float type, as Keras does.
    return x / x.dtype.type(127.5) - x.dtype.type(1.0)


def _read_labels(path):
    with open(path, encoding="utf-8") as f:
        lines = [ln.rstrip("\r\n") for ln in f]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def decode_predictions(preds, top=5, labels=None):
    """Decodes class probabilities into (class_id, class_name, score) tuples, as Keras does.

    Args:
      preds: array-like (samples, 1001) (our models: index 0 = "background") or
        (samples, 1000) (Keras' ImageNet order, without background: column ``i``
        is label ``i + 1``).
      top (int >= 1): how many classes per sample, highest score first.
      labels (str | PathLike | None): label file, one name per line, line ``i``
        = class index ``i`` (1001 lines). Default: the file registered for the
        default pretrained model (downloaded / cached like the weights).

    Returns:
      list (one per sample) of lists of ``top`` tuples
      ``(class_id: str, class_name: str, score: float)``; ``class_id`` is the
      index in the 1001-class output as a string ("653"), ``class_name`` the
      label line ("military uniform").

    Raises:
      ValueError: `preds` is not 2D with 1000 or 1001 columns, or `top` < 1.
      OSError / ValueError: the label file is missing or corrupt (see weights_path).
    """
    p = np.asarray(preds)
    if p.ndim != 2 or p.shape[1] not in (1000, 1001):
        raise ValueError("`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape "
                         f"(samples, 1001) or (samples, 1000)). Received: preds.shape={p.shape}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"`top` must be an int >= 1. Received: top={top!r}")
    names = _read_labels(os.fspath(labels) if labels is not None else labels_path())
    if len(names) != 1001:
        raise ValueError(f"Label file {labels or labels_path()} has {len(names)} lines, expected 1001 "
                         "(background + 1000 ImageNet classes).")
    offset = 1 if p.shape[1] == 1000 else 0
    out = []
    for row in p:
        idx = np.argsort(-row, kind="stable")[:top]
        out.append([(str(int(i) + offset), names[int(i) + offset], float(row[i])) for i in idx])
    return out


# -- the model ---------------------------------------------------------------------
