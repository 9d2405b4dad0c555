"""Keras MobileNetV2 weight files (.h5) -> batch-norm-folded weights for ``architecture``.

Two layouts are read with h5py:

* Keras 2 / legacy HDF5 (the ``keras.applications`` downloads
  ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}[_no_top].h5``,
  ``model.save_weights("x.h5")`` of tf.keras, ``model.save("x.h5")``): one group
  per layer, by Keras layer name ("Conv1", "bn_Conv1", "block_3_expand", ...),
  whose ``weight_names`` attribute lists its arrays in Keras order.
* Keras 3 ``model.save_weights("x.weights.h5")``: ``layers/<auto name>/vars/<i>``
  where the auto names number the layers of each class in model order
  ("conv2d", "conv2d_1", ..., "depthwise_conv2d_k", "batch_normalization_k",
  "dense"); they are matched to the architecture in that order.

Batch norm is folded into the preceding convolution (Keras' BatchNormalization
of MobileNetV2 uses epsilon 1e-3): ``s = gamma / sqrt(var + 1e-3)``,
``kernel' = kernel * s`` (per output channel), ``bias' = beta - mean * s``.
Kernels are converted from Keras' HWIO (depthwise: HWC1) to TFLite's OHWI
(depthwise: 1HWC). Source: Keras' ``applications/mobilenet_v2.py`` and
``saving/saving_lib.py``.
"""
import os

import numpy as np

from .architecture import layer_specs

__all__ = ["read_keras_h5", "BN_EPSILON"]

BN_EPSILON = 1e-3


def _bn_name(conv_name):
    if conv_name == "Conv1":
        return "bn_Conv1"
    if conv_name == "Conv_1":
        return "Conv_1_bn"
    return conv_name + "_BN"


def _legacy_layers(f):
    """dict layer name -> list of arrays (Keras order) of a legacy HDF5 weights file."""
    root = f["model_weights"] if "model_weights" in f else f
    names = root.attrs.get("layer_names")
    if names is None:
        return None
    out = {}
    for n in names:
        n = n.decode("utf-8") if isinstance(n, bytes) else str(n)
        g = root[n]
        wn = g.attrs.get("weight_names", [])
        out[n] = [np.asarray(g[w.decode("utf-8") if isinstance(w, bytes) else str(w)]) for w in wn]
    return out


def _keras3_layers(f):
    """dict class-key ("conv2d", ...) -> list (model order) of lists of arrays, Keras 3 .weights.h5."""
    if "layers" not in f:
        return None
    groups = {}
    for name, g in f["layers"].items():
        base, _, idx = name.rpartition("_")
        if not idx.isdigit():
            base, idx = name, "0"
        if "vars" not in g:
            continue
        v = g["vars"]
        arrs = [np.asarray(v[k]) for k in sorted(v.keys(), key=int)]
        groups.setdefault(base, []).append((int(idx), name, arrs))
    return {k: [(n, a) for _, n, a in sorted(v)] for k, v in groups.items()}


def _fold(name, kernel, bn, kind):
    if len(bn) != 4:
        raise ValueError(f"Batch norm of layer {name!r} must have 4 arrays (gamma, beta, moving_mean, "
                         f"moving_variance); found {len(bn)}.")
    gamma, beta, mean, var = (np.asarray(a, np.float64) for a in bn)
    s = gamma / np.sqrt(var + BN_EPSILON)
    k = np.asarray(kernel, np.float64)
    if kind == "depthwise":
        if k.ndim != 4 or k.shape[3] != 1:
            raise ValueError(f"Layer {name!r}: expected a depthwise kernel (KH, KW, C, 1); got {k.shape}.")
        k = k[..., 0] * s  # (KH, KW, C)
        out = k[None].astype(np.float32)  # 1HWC
    else:
        if k.ndim != 4:
            raise ValueError(f"Layer {name!r}: expected a conv kernel (KH, KW, I, O); got {k.shape}.")
        k = k * s  # per output channel (last axis)
        out = np.ascontiguousarray(k.transpose(3, 0, 1, 2)).astype(np.float32)  # OHWI
    bias = (beta - np.asarray(mean, np.float64) * s).astype(np.float32)
    return out, bias


def _top_from_dense(name, arrs):
    if len(arrs) != 2:
        raise ValueError(f"Layer {name!r} (the classifier) must have a kernel and a bias; found {len(arrs)} arrays.")
    k, b = np.asarray(arrs[0], np.float32), np.asarray(arrs[1], np.float32)
    return np.ascontiguousarray(k.T.reshape(k.shape[1], 1, 1, k.shape[0])), b


def read_keras_h5(path, alpha=1.0, include_top=False):
    """Folded MobileNetV2 weights from a Keras .h5 file.

    Args:
      path (str | PathLike): the .h5 file (either layout, see the module docstring).
      alpha (float): the width multiplier the file was made for.
      include_top (bool): also read the classifier ("predictions" Dense).

    Returns:
      (weights, classes): weights = dict layer name -> (kernel, bias) for
      ``architecture.build_tflite``; classes = the classifier's units (int) or
      None without the top.

    Raises:
      ImportError: h5py is missing.
      ValueError: not an HDF5 weights file, an unsupported layout, a missing
        layer (named) or a shape that does not fit `alpha` (named).
    """
    try:
        import h5py
    except ImportError as e:  # pragma: no cover
        raise ImportError("Reading Keras .h5 weights needs h5py: pip install 'tflite_transfer[h5]'") from e
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path!r} is not an HDF5 file ({e}).") from e
    specs = layer_specs(alpha, include_top=False)
    weights, classes = {}, None
    with f:
        legacy = _legacy_layers(f)
        if legacy is not None:
            for s in specs:
                for n in (s["name"], _bn_name(s["name"])):
                    if n not in legacy:
                        raise ValueError(f"Layer {n!r} is missing from {path!r} (a Keras MobileNetV2 weights "
                                         "file has it).")
                conv = legacy[s["name"]]
                if len(conv) != 1:
                    raise ValueError(f"Layer {s['name']!r} in {path!r} must have one array (kernel, no bias); "
                                     f"found {len(conv)}.")
                weights[s["name"]] = _fold(s["name"], conv[0], legacy[_bn_name(s["name"])], s["kind"])
            if include_top:
                if "predictions" not in legacy:
                    raise ValueError(f"Layer 'predictions' (the classifier) is missing from {path!r}: the file has "
                                     "no top; use include_top=False.")
                weights["Logits"] = _top_from_dense("predictions", legacy["predictions"])
        else:
            k3 = _keras3_layers(f)
            if k3 is None:
                raise ValueError(f"{path!r} is not a Keras weights file: no 'layer_names' attribute (Keras 2 / "
                                 "HDF5 layout) and no 'layers' group (Keras 3 .weights.h5 layout).")
            convs, dws, bns = (list(k3.get(k, [])) for k in ("conv2d", "depthwise_conv2d", "batch_normalization"))
            for s in specs:
                pool = dws if s["kind"] == "depthwise" else convs
                key = "depthwise_conv2d" if s["kind"] == "depthwise" else "conv2d"
                if not pool:
                    raise ValueError(f"Layer {s['name']!r}: no more {key} layers in {path!r} (a MobileNetV2 with "
                                     f"alpha={alpha} has more).")
                if not bns:
                    raise ValueError(f"Layer {_bn_name(s['name'])!r}: no more batch_normalization layers in "
                                     f"{path!r}.")
                (cname, carrs), (_, barrs) = pool.pop(0), bns.pop(0)
                if len(carrs) != 1:
                    raise ValueError(f"Layer {s['name']!r} ({cname} in {path!r}) must have one array (kernel, no "
                                     f"bias); found {len(carrs)}.")
                weights[s["name"]] = _fold(s["name"], carrs[0], barrs, s["kind"])
            if convs or dws or bns:
                raise ValueError(f"{path!r} has more conv / batch norm layers than MobileNetV2 (alpha={alpha}).")
            if include_top:
                dense = k3.get("dense", [])
                if len(dense) != 1:
                    raise ValueError(f"Layer 'predictions' (the classifier Dense) is missing from {path!r}: the "
                                     "file has no top; use include_top=False.")
                weights["Logits"] = _top_from_dense("predictions", dense[0][1])
    # Shape checks against alpha, naming the layer.
    for s in specs:
        k, b = weights[s["name"]]
        kh, kw = s["kernel"]
        want = (1, kh, kw, s["in_ch"]) if s["kind"] == "depthwise" else (s["out_ch"], kh, kw, s["in_ch"])
        if k.shape != want:
            raise ValueError(f"Layer {s['name']!r} in {path!r} has kernel shape {k.shape} (TFLite layout), but "
                             f"MobileNetV2 with alpha={alpha} needs {want}: pass the file's alpha.")
    if include_top:
        k, b = weights["Logits"]
        last = specs[-1]["out_ch"]
        if k.shape[3] != last:
            raise ValueError(f"Layer 'predictions' in {path!r} takes {k.shape[3]} features; alpha={alpha} gives "
                             f"{last}.")
        classes = int(k.shape[0])
    return weights, classes
