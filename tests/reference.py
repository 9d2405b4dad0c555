"""Independent NumPy float64 reference for the TFLite graphs the engine runs.

This is the yardstick the C engine is tested against, so it shares no code with
it: the ``.tflite`` flatbuffer is read with the ``tflite`` package (the
pure-Python classes generated from TFLite's ``schema.fbs``), not with our C
reader; quantized and float16 weights are dequantized here
(``w = scale * (q - zero_point)``, per tensor or per channel along
``quantized_dimension``); every op is computed in float64.

Semantics follow TFLite's reference kernels in float:
  * SAME padding: ``out = ceil(in / stride)``,
    ``pad_total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)``,
    ``pad_before = pad_total // 2`` (the extra row/column goes bottom/right).
    VALID: ``out = ceil((in - (k - 1) * dilation) / stride)``, no padding.
  * AVERAGE_POOL_2D divides by the number of in-bounds elements of each window
    (padding is not counted); MAX_POOL_2D ignores padding.
  * Fused activations NONE, RELU (max(x, 0)), RELU6 (min(max(x, 0), 6)).
  * QUANTIZE / DEQUANTIZE are the identity (activations stay float).
  * RESHAPE keeps dimension 0 as the batch: the stored models have batch 1, so a
    target shape whose first entry is 1 or -1 gets the actual batch there.
  * FULLY_CONNECTED flattens its input to ``(-1, in_features)``.

Convolutions are a sum over kernel offsets of strided slices contracted with
``np.tensordot`` (an einsum over the offset's [I, O] weight slice), in float64.

Usage::

    ref = ReferenceModel(path_or_bytes)
    y = ref.run(x)                       # the model's output, float64
    ys = ref.run(x, outputs=[i, j])      # dict {tensor index: array}
"""
import math

import numpy as np
import tflite

# TFLite TensorType codes (schema.fbs).
_FLOAT32, _FLOAT16, _INT32, _UINT8, _INT64, _INT8 = 0, 1, 2, 3, 4, 9
_NP_TYPES = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32, _UINT8: np.uint8,
             _INT64: np.int64, _INT8: np.int8}
_ACT = {0: "NONE", 1: "RELU", 3: "RELU6"}
_PAD = {0: "SAME", 1: "VALID"}
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _options(op, cls):
    tab = op.BuiltinOptions()
    if tab is None:
        return None
    o = cls()
    o.Init(tab.Bytes, tab.Pos)
    return o


class ReferenceModel:
    """A .tflite model held as float64 NumPy arrays and run op by op.

    Args:
      model: path (str / PathLike) of a .tflite file, or its bytes.

    Attributes:
      tensors (list of dict): name, shape (tuple, as stored), type (TFLite code),
        quant (None or dict(scale, zero_point, quantized_dimension)),
        data (float64 ndarray for float/quantized constants, int64 ndarray for
        plain integer constants, None for activations).
      ops (list of dict): type (str, e.g. "CONV_2D"), inputs, outputs (tuples of
        tensor indices, -1 = absent), options (dict).
      inputs, outputs (tuple of int): the subgraph's input/output tensors.
    """

    def __init__(self, model):
        if isinstance(model, (bytes, bytearray, memoryview)):
            buf = bytes(model)
        else:
            with open(model, "rb") as f:
                buf = f.read()
        m = tflite.Model.GetRootAsModel(buf, 0)
        g = m.Subgraphs(0)
        self.inputs = tuple(int(i) for i in g.InputsAsNumpy())
        self.outputs = tuple(int(i) for i in g.OutputsAsNumpy())
        self.tensors = [self._read_tensor(m, g.Tensors(i)) for i in range(g.TensorsLength())]
        codes = []
        for i in range(m.OperatorCodesLength()):
            c = m.OperatorCodes(i)
            # Schema rule: the real code is the larger of the two fields.
            codes.append(max(int(c.BuiltinCode()), int(c.DeprecatedBuiltinCode())))
        self.ops = [self._read_op(g.Operators(i), codes) for i in range(g.OperatorsLength())]

    # -- reading --------------------------------------------------------------
    @staticmethod
    def _read_tensor(m, t):
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        ttype = int(t.Type())
        q = t.Quantization()
        quant = None
        if q is not None and q.ScaleLength() > 0:
            quant = dict(scale=np.asarray(q.ScaleAsNumpy(), np.float64),
                         zero_point=np.asarray(q.ZeroPointAsNumpy(), np.float64)
                         if q.ZeroPointLength() else np.zeros(q.ScaleLength()),
                         quantized_dimension=int(q.QuantizedDimension()))
        data = None
        b = m.Buffers(t.Buffer())
        if b is not None and b.DataLength() > 0:
            raw = b.DataAsNumpy().tobytes()
            arr = np.frombuffer(raw, dtype=np.dtype(_NP_TYPES[ttype]).newbyteorder("<")).reshape(shape)
            if quant is not None:
                scale, zp = quant["scale"], quant["zero_point"]
                if scale.size > 1:
                    bshape = [1] * len(shape)
                    bshape[quant["quantized_dimension"]] = scale.size
                    scale, zp = scale.reshape(bshape), zp.reshape(bshape)
                data = scale * (arr.astype(np.float64) - zp)
            elif ttype in (_FLOAT32, _FLOAT16):
                data = arr.astype(np.float64)
            else:
                data = arr.astype(np.int64)
        name = t.Name().decode("utf-8", "replace") if t.Name() else ""
        return dict(name=name, shape=shape, type=ttype, quant=quant, data=data)

    @staticmethod
    def _read_op(op, codes):
        code = codes[op.OpcodeIndex()]
        name = _OP_NAMES.get(code, f"UNKNOWN_{code}")
        opts = {}
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions
            o = _options(op, cls)
            opts = dict(padding=_PAD[o.Padding()], stride_h=o.StrideH(), stride_w=o.StrideW(),
                        dilation_h=o.DilationHFactor() or 1, dilation_w=o.DilationWFactor() or 1,
                        activation=_ACT[o.FusedActivationFunction()])
            if name == "DEPTHWISE_CONV_2D":
                opts["depth_multiplier"] = o.DepthMultiplier() or 1
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            o = _options(op, tflite.Pool2DOptions)
            opts = dict(padding=_PAD[o.Padding()], stride_h=o.StrideH(), stride_w=o.StrideW(),
                        filter_h=o.FilterHeight(), filter_w=o.FilterWidth(),
                        activation=_ACT[o.FusedActivationFunction()])
        elif name == "ADD":
            o = _options(op, tflite.AddOptions)
            opts = dict(activation=_ACT[o.FusedActivationFunction()] if o else "NONE")
        elif name == "FULLY_CONNECTED":
            o = _options(op, tflite.FullyConnectedOptions)
            opts = dict(activation=_ACT[o.FusedActivationFunction()] if o else "NONE",
                        keep_dims=bool(o.KeepNumDims()) if o else False)
        elif name == "CONCATENATION":
            o = _options(op, tflite.ConcatenationOptions)
            opts = dict(axis=o.Axis(), activation=_ACT[o.FusedActivationFunction()])
        elif name == "MEAN":
            o = _options(op, tflite.ReducerOptions)
            opts = dict(keep_dims=bool(o.KeepDims()) if o else False)
        elif name == "SOFTMAX":
            o = _options(op, tflite.SoftmaxOptions)
            opts = dict(beta=o.Beta() if o else 1.0)
        elif name == "RESHAPE":
            o = _options(op, tflite.ReshapeOptions)
            if o is not None and o.NewShapeLength():
                opts = dict(new_shape=tuple(int(s) for s in o.NewShapeAsNumpy()))
        elif name not in ("PAD", "QUANTIZE", "DEQUANTIZE"):
            raise NotImplementedError(f"reference: op {name} is not supported")
        return dict(type=name, inputs=tuple(int(i) for i in op.InputsAsNumpy()),
                    outputs=tuple(int(i) for i in op.OutputsAsNumpy()), options=opts)

    # -- running --------------------------------------------------------------
    def constant(self, i):
        """The dequantized (float64) or integer (int64) data of constant tensor `i`."""
        return self.tensors[i]["data"]

    def run(self, x, outputs=None, chunk=8):
        """Runs the graph on float input `x` (N, H, W, C), already preprocessed.

        Args:
          x: array-like, converted to float64.
          outputs: None (the model's first output), an int (that tensor) or a
            list of ints (returns a dict {index: array}).
          chunk: images per pass, to bound memory (float64 activations of a
            batch of 32 at 112x112x96 would take 300 MB each).

        Returns:
          float64 ndarray (or dict of them) with the batch as dimension 0.
        """
        x = np.asarray(x, np.float64)
        want = [self.outputs[0]] if outputs is None else ([outputs] if np.isscalar(outputs) else list(outputs))
        parts = [self._run(x[s:s + chunk], want) for s in range(0, x.shape[0], chunk)]
        res = {i: np.concatenate([p[i] for p in parts], axis=0) for i in want}
        if outputs is None or np.isscalar(outputs):
            return res[want[0]]
        return res

    def _run(self, x, want):
        vals = {self.inputs[0]: x}
        pending = set(want) - set(vals)
        for op in self.ops:
            if not pending:
                break
            ins = [None if i < 0 else (vals[i] if i in vals else self.tensors[i]["data"]) for i in op["inputs"]]
            out = _OPS[op["type"]](ins, op["options"], x.shape[0])
            vals[op["outputs"][0]] = out
            pending.discard(op["outputs"][0])
        missing = [i for i in want if i not in vals]
        if missing:
            raise KeyError(f"tensors {missing} are not computed by the graph")
        return {i: vals[i] for i in want}


# -- ops (float64) ---------------------------------------------------------------
def _act(y, name):
    if name == "RELU":
        return np.maximum(y, 0.0)
    if name == "RELU6":
        return np.clip(y, 0.0, 6.0)
    return y


def _same_or_valid(size, k, stride, dilation, padding):
    """Returns (out, pad_before, pad_after) for one spatial axis (TF's rule)."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + eff - size, 0)
        return out, total // 2, total - total // 2
    out = math.ceil((size - eff + 1) / stride)
    if out < 1:
        raise ValueError(f"VALID window {eff} larger than input {size}")
    return out, 0, 0


def _windows(x, kh, kw, o, pad_value=0.0):
    """Yields (i, j, slice of x) for every kernel offset: x (N, H, W, C) padded,
    the slice is (N, OH, OW, C) for output positions with stride."""
    sh, sw, dh, dw = o["stride_h"], o["stride_w"], o.get("dilation_h", 1), o.get("dilation_w", 1)
    oh, pt, pb = _same_or_valid(x.shape[1], kh, sh, dh, o["padding"])
    ow, pl, pr = _same_or_valid(x.shape[2], kw, sw, dw, o["padding"])
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]


def _conv2d(ins, o, n):
    x, w, b = ins[0], ins[1], (ins[2] if len(ins) > 2 else None)
    cout, kh, kw, cin = w.shape
    if x.shape[3] != cin:
        raise ValueError(f"CONV_2D: input has {x.shape[3]} channels, filter expects {cin}")
    y = None
    for i, j, xs in _windows(x, kh, kw, o):
        t = np.tensordot(xs, w[:, i, j, :].T, axes=([3], [0]))  # (N, OH, OW, O)
        y = t if y is None else y + t
    if b is not None:
        y = y + b
    return _act(y, o["activation"])


def _depthwise(ins, o, n):
    x, w, b = ins[0], ins[1], (ins[2] if len(ins) > 2 else None)
    _, kh, kw, cout = w.shape
    m = o.get("depth_multiplier", 1)
    if m != 1:
        x = np.repeat(x, m, axis=3)  # output channel c*m + k reads input channel c
    y = None
    for i, j, xs in _windows(x, kh, kw, o):
        t = xs * w[0, i, j, :]
        y = t if y is None else y + t
    if b is not None:
        y = y + b
    return _act(y, o["activation"])


def _pool(kind):
    def f(ins, o, n):
        x = ins[0]
        kh, kw = o["filter_h"], o["filter_w"]
        if kind == "max":
            y = None
            for _, _, xs in _windows(x, kh, kw, o, pad_value=-np.inf):
                y = xs.copy() if y is None else np.maximum(y, xs)
        else:
            ones = np.ones((1,) + x.shape[1:3] + (1,))
            s = cnt = None
            for (_, _, xs), (_, _, cs) in zip(_windows(x, kh, kw, o), _windows(ones, kh, kw, o)):
                s = xs.copy() if s is None else s + xs
                cnt = cs.copy() if cnt is None else cnt + cs
            y = s / cnt
        return _act(y, o["activation"])
    return f


def _mean(ins, o, n):
    axes = tuple(int(a) % ins[0].ndim for a in np.atleast_1d(ins[1]))
    return ins[0].mean(axis=axes, keepdims=o.get("keep_dims", False))


def _pad(ins, o, n):
    p = np.asarray(ins[1]).reshape(-1, 2)
    return np.pad(ins[0], [tuple(int(v) for v in r) for r in p], constant_values=0.0)


def _reshape(ins, o, n):
    x = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        shape = [int(s) for s in np.asarray(ins[1]).ravel()]
    else:
        shape = list(o["new_shape"])
    if shape and shape[0] in (1, -1):
        shape[0] = x.shape[0]
    return x.reshape(shape)


def _fully_connected(ins, o, n):
    x, w, b = ins[0], ins[1], (ins[2] if len(ins) > 2 else None)
    y = x.reshape(-1, w.shape[1]) @ w.T
    if b is not None:
        y = y + b
    if o.get("keep_dims"):
        y = y.reshape(x.shape[:-1] + (w.shape[0],))
    return _act(y, o["activation"])


def _softmax(ins, o, n):
    z = ins[0] * o.get("beta", 1.0)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _add(ins, o, n):
    return _act(ins[0] + ins[1], o["activation"])


def _concat(ins, o, n):
    return _act(np.concatenate(ins, axis=o["axis"]), o["activation"])


def _identity(ins, o, n):
    return ins[0]


_OPS = {
    "CONV_2D": _conv2d, "DEPTHWISE_CONV_2D": _depthwise, "AVERAGE_POOL_2D": _pool("avg"),
    "MAX_POOL_2D": _pool("max"), "MEAN": _mean, "PAD": _pad, "RESHAPE": _reshape,
    "FULLY_CONNECTED": _fully_connected, "SOFTMAX": _softmax, "ADD": _add,
    "CONCATENATION": _concat, "QUANTIZE": _identity, "DEQUANTIZE": _identity,
}


def pooled_feature_tensor(ref):
    """Index of the pooled feature vector: the output of the last MEAN /
    AVERAGE_POOL_2D op (found independently of the package's own analysis)."""
    idx = [op["outputs"][0] for op in ref.ops if op["type"] in ("MEAN", "AVERAGE_POOL_2D")]
    if not idx:
        raise ValueError("no MEAN / AVERAGE_POOL_2D op")
    return idx[-1]


def logits_tensor(ref):
    """Index of the tensor that feeds the final SOFTMAX."""
    sm = [op for op in ref.ops if op["type"] == "SOFTMAX"]
    return sm[-1]["inputs"][0]
