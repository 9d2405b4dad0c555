"""The inference graph of a model as a small, format-neutral list of tensors and ops.

Both writers (``litert.py``: .tflite flatbuffer, ``onnx_export.py``: ONNX) take a
`Graph`. Conventions are TFLite's: activations NHWC float32; CONV_2D kernels
[O, KH, KW, I], DEPTHWISE_CONV_2D kernels [1, KH, KW, C], FULLY_CONNECTED
weights [O, I]; shapes with batch 1 (the batch is dynamic in both writers).

A tensor is a dict(name, shape (list[int]), dtype ("float32" | "int32" | "uint8"
| "int8"), data (ndarray or None: a constant), quant (None or dict(scale,
zero_point, quantized_dimension))). An op is a dict(op (TFLite builtin name),
inputs, outputs (tensor indices; -1 = absent optional input), options (dict,
names as in ``tests/tflite_builder.py``: padding, stride_w, stride_h,
fused_activation_function, depth_multiplier, keep_dims, beta, new_shape)).
"""
import numpy as np

__all__ = ["Graph", "from_sequential", "from_base"]

_PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE")
_SUPPORTED_BASE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MEAN", "AVERAGE_POOL_2D",
                       "MAX_POOL_2D", "RESHAPE", "SOFTMAX", "FULLY_CONNECTED", "CONCATENATION")


class Graph:
    """Tensors and ops of one inference graph (see the module docstring).

    Attributes: tensors (list of dict), ops (list of dict), inputs, outputs
    (lists of tensor indices), labels (list[str] | None: class names of the
    output), metadata (dict of str -> str: extra key/values the writers store).
    """

    def __init__(self):
        self.tensors = []
        self.ops = []
        self.inputs = []
        self.outputs = []
        self.labels = None
        self.metadata = {}

    def add_tensor(self, name, shape, dtype="float32", data=None, quant=None):
        """Appends a tensor; returns its index (int)."""
        if data is not None:
            data = np.ascontiguousarray(np.asarray(data, dtype=np.dtype(dtype)))
            shape = list(data.shape)
        self.tensors.append(dict(name=str(name), shape=[int(s) for s in shape], dtype=dtype, data=data,
                                 quant=quant))
        return len(self.tensors) - 1

    def add_const(self, name, data, dtype=None):
        """Appends a constant tensor holding `data` (ndarray); returns its index."""
        data = np.asarray(data)
        return self.add_tensor(name, data.shape, dtype or str(data.dtype), data=data)

    def add_op(self, op, inputs, outputs, **options):
        """Appends an op; returns its index (int)."""
        self.ops.append(dict(op=op, inputs=[int(i) for i in inputs], outputs=[int(o) for o in outputs],
                             options=options))
        return len(self.ops) - 1

    def shape(self, t):
        return list(self.tensors[t]["shape"])

    def const(self, t):
        """The constant data (ndarray) of tensor `t`, or None for an activation."""
        return self.tensors[t]["data"]


def _same_out(n, stride):
    return -(-n // stride)


def from_base(g, base, x, name_prefix=""):
    """Appends the graph of a pretrained base (MobileNetV2Model) applied to tensor `x`.

    `x` is the float32 preprocessed input (values in [-1, 1]), NHWC with the
    base's input size. Weights are read from the live model (``base.model``
    through ``base._export_tensor`` when the base defines it, e.g. fine-tuned
    weights; else ``base.model.get_tensor``: float32, dequantized). QUANTIZE /
    DEQUANTIZE ops of quantized files are dropped (the export is float).

    Returns the output tensor index: the last feature map (N, h, w, C) for
    include_top=False, with the base's own pooling when it has one, or the
    class probabilities for include_top=True.

    Raises:
      NotImplementedError: the base's graph has an op the writers do not support
        (the message names it).
    """
    core = base.model
    out_t = base._output_dependency()
    ops = base._needed_ops(out_t)
    get = getattr(base, "_export_tensor", None) or core.get_tensor
    infos = core.tensors
    mapped = {core.inputs[0]: x}
    h, w = base._hw

    def tensor_of(t):
        if t < 0:
            return -1
        if t in mapped:
            return mapped[t]
        info = infos[t]
        if not info["is_constant"]:
            raise NotImplementedError(f"Export: tensor {info['name']!r} of {base.name!r} is used before it is "
                                      "computed (unsupported graph).")
        data = np.asarray(get(t))
        if info["dtype"] in ("int32", "int64") and not info["quantization"]:
            data = data.astype(np.int32)
        else:
            data = data.astype(np.float32)
        mapped[t] = g.add_const(name_prefix + info["name"], data)
        return mapped[t]

    for op in ops:
        typ = op["type"]
        if typ in _PASS_THROUGH:
            mapped[op["outputs"][0]] = tensor_of(op["inputs"][0])
            continue
        if typ not in _SUPPORTED_BASE_OPS:
            raise NotImplementedError(f"Export does not support the {typ} op (operator {op['index']}) of "
                                      f"{base.name!r}.")
        o = op["options"]
        ins = [tensor_of(i) for i in op["inputs"]]
        shape = list(core.output_shape(op["outputs"][0], batch=1, height=h, width=w))
        if typ == "RESHAPE":
            # A fixed batch of 1 in the file's shape tensor would pin the batch: make it -1.
            new = [-1] + [int(s) for s in shape[1:]]
            ins = [ins[0], g.add_const(name_prefix + infos[op["outputs"][0]]["name"] + "/shape",
                                       np.asarray(new, np.int32))]
            opts = dict(new_shape=new)
        elif typ in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = dict(padding=o["padding"], stride_w=o["stride_w"], stride_h=o["stride_h"],
                        dilation_w_factor=o.get("dilation_w", 1), dilation_h_factor=o.get("dilation_h", 1),
                        fused_activation_function=o.get("activation", "NONE"))
            if typ == "DEPTHWISE_CONV_2D":
                opts["depth_multiplier"] = o.get("depth_multiplier", 1)
        elif typ in ("ADD", "FULLY_CONNECTED", "CONCATENATION"):
            opts = dict(fused_activation_function=o.get("activation", "NONE"))
            if typ == "CONCATENATION":
                opts["axis"] = o.get("axis", -1)
        elif typ == "MEAN":
            opts = dict(keep_dims=bool(o.get("keep_dims", False)))
        elif typ in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            opts = {k: o[k] for k in ("padding", "stride_w", "stride_h", "filter_width", "filter_height")
                    if k in o}
            opts["fused_activation_function"] = o.get("activation", "NONE")
        elif typ == "SOFTMAX":
            opts = dict(beta=float(o.get("beta", 1.0)))
        else:
            opts = {}
        y = g.add_tensor(name_prefix + infos[op["outputs"][0]]["name"], shape)
        mapped[op["outputs"][0]] = y
        g.add_op(typ, ins, [y], **opts)
    y = mapped[out_t]
    if not base.include_top and base.pooling is not None:
        y = _global_pool(g, y, base.pooling, keepdims=False, name=name_prefix + "pool")
    return y


def _global_pool(g, x, kind, keepdims, name):
    n, _, _, c = g.shape(x)
    axes = g.add_const(name + "/axes", np.asarray([1, 2], np.int32))
    y = g.add_tensor(name, [n, 1, 1, c] if keepdims else [n, c])
    g.add_op("MEAN" if kind == "avg" else "REDUCE_MAX", [x, axes], [y], keep_dims=bool(keepdims))
    return y


def _preprocess_uint8(g, h, w):
    """uint8 NHWC input -> float32 x / 127.5 - 1: DEQUANTIZE (scale 1/127.5, zero point 0), then ADD -1."""
    x = g.add_tensor("input", [1, h, w, 3], "uint8",
                     quant=dict(scale=[1.0 / 127.5], zero_point=[0], quantized_dimension=0))
    y = g.add_tensor("preprocess/scaled", [1, h, w, 3])
    g.add_op("DEQUANTIZE", [x], [y])
    minus1 = g.add_const("preprocess/offset", np.asarray([-1.0], np.float32))
    z = g.add_tensor("preprocess/output", [1, h, w, 3])
    g.add_op("ADD", [y, minus1], [z], fused_activation_function="NONE")
    return x, z


_ACT = {None: "NONE", "linear": "NONE", "relu": "RELU"}


def from_sequential(model, input_dtype="uint8", labels=None):
    """The inference graph (`Graph`) of a built `Sequential` of a pretrained base and a head.

    Follows Keras' inference semantics: random layers (augmentation) and Dropout
    are identities and are left out; the base, global pooling, Flatten and Dense
    layers (with relu / softmax / sigmoid activations) are written.

    Args:
      model: a built ``Sequential`` whose image layers come first.
      input_dtype: "uint8": the graph takes RGB pixels uint8 (N, H, W, 3) in
        [0, 255] and preprocesses them itself (``x / 127.5 - 1``); "float32":
        the graph takes float32 (N, H, W, 3) already scaled to [-1, 1] (by
        ``mobilenet_v2.preprocess_input``).
      labels: class names (list of str, one per output) or None.

    Raises:
      ValueError: the model is not built, or `input_dtype` / `labels` are bad.
      NotImplementedError: a layer the writers cannot express (named).
    """
    from ..layers.core import Dense, Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D

    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"`input_dtype` must be 'uint8' or 'float32'. Received: input_dtype={input_dtype!r}")
    if not model.built:
        raise ValueError("The model is not built: call it on data (fit / predict) or `build()` it before export.")
    shape = model._build_shape
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"Export expects an image model (input (N, H, W, 3)). Received: input_shape={shape}")
    g = Graph()
    h, w = int(shape[1]), int(shape[2])
    if input_dtype == "uint8":
        g_in, x = _preprocess_uint8(g, h, w)
    else:
        g_in = x = g.add_tensor("input", [1, h, w, 3])
    g.inputs = [g_in]
    for layer in model.layers:
        if isinstance(layer, Dropout) or (layer.is_random and type(layer).__name__ != "RandomCrop"):
            continue  # identity at inference, as in Keras
        if hasattr(layer, "_output_dependency") and hasattr(layer, "model"):
            x = from_base(g, layer, x, name_prefix=layer.name + "/")
        elif isinstance(layer, (GlobalAveragePooling2D, GlobalMaxPooling2D)):
            x = _global_pool(g, x, "avg" if isinstance(layer, GlobalAveragePooling2D) else "max",
                             layer.keepdims, layer.name)
        elif isinstance(layer, Flatten):
            s = g.shape(x)
            n_feat = int(np.prod(s[1:]))
            shp = g.add_const(layer.name + "/shape", np.asarray([-1, n_feat], np.int32))
            y = g.add_tensor(layer.name, [s[0], n_feat])
            g.add_op("RESHAPE", [x, shp], [y], new_shape=[-1, n_feat])
            x = y
        elif isinstance(layer, Dense):
            if len(g.shape(x)) != 2:
                raise NotImplementedError(f"Export: Dense {layer.name!r} on a {len(g.shape(x))}D input; put a "
                                          "global pooling or Flatten before it.")
            kernel, bias = layer.get_weights()
            wt = g.add_const(layer.name + "/kernel", np.ascontiguousarray(kernel.T, dtype=np.float32))
            bt = g.add_const(layer.name + "/bias", bias.astype(np.float32))
            act = layer.activation
            y = g.add_tensor(layer.name + ("/logits" if act in ("softmax", "sigmoid") else ""),
                             [g.shape(x)[0], layer.units])
            g.add_op("FULLY_CONNECTED", [x, wt, bt], [y], fused_activation_function=_ACT.get(act, "NONE"))
            x = y
            if act in ("softmax", "sigmoid"):
                y = g.add_tensor(layer.name, g.shape(x))
                if act == "softmax":
                    g.add_op("SOFTMAX", [x], [y], beta=1.0)
                else:
                    g.add_op("LOGISTIC", [x], [y])
                x = y
        else:
            raise NotImplementedError(f"Export does not support layer {layer.name!r} "
                                      f"({type(layer).__name__}).")
    g.outputs = [x]
    if labels is not None:
        n_out = g.shape(x)[-1]
        # A str is iterable (one "name" per character) and str(None) is "None": both would
        # write a file whose class names are silently wrong, so only a sequence of str passes.
        if isinstance(labels, (str, bytes)) or not all(isinstance(s, str) for s in labels):
            raise ValueError(f"`labels` must be a list of {n_out} class names (str). "
                             f"Received: labels={labels!r:.200}")
        labels = [str(s) for s in labels]
        if len(labels) != n_out or any("\n" in s for s in labels):
            raise ValueError(f"`labels` must be {n_out} class names (one per output, no newlines). "
                             f"Received: {len(labels)} names")
        g.labels = labels
    return g
