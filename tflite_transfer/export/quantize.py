"""Post-training full-integer (int8) quantization of an export `Graph`, as TensorFlow's
TFLite converter does it (``optimizations=[tf.lite.Optimize.DEFAULT]`` with a
``representative_dataset``, ``inference_input_type=tf.uint8``), following the TFLite
8-bit quantization specification (https://ai.google.dev/edge/litert/models/quantization_spec):

* weights: int8, symmetric (zero point 0), per output channel for CONV_2D (dim 0) and
  DEPTHWISE_CONV_2D (dim 3), per tensor for FULLY_CONNECTED; range [-127, 127];
* biases: int32, scale = input scale x weight scale (per channel), zero point 0;
* activations: int8, asymmetric per tensor; the range is the min / max seen on the
  representative dataset (widened to include 0), run through the float graph in NumPy;
* RESHAPE and REDUCE_MAX keep their input's parameters; SOFTMAX / LOGISTIC outputs use
  the fixed scale 1/256 and zero point -128 the int8 kernels require;
* input: uint8 pixels with scale 1/127.5 and zero point 127 (as TensorFlow's own
  MobileNetV2 ptq file), then QUANTIZE to int8; the half-step offset of that zero point
  from the exact 127.5 is folded into the first convolution's bias;
* output: DEQUANTIZE to float32.

The float graph must be the uint8-input graph of ``graph.from_sequential``.
"""
import numpy as np

from .graph import Graph

__all__ = ["quantize_int8", "run_float", "calibrate"]


# -- a small float32 NumPy interpreter of the export graph (for calibration) -----------------
def _same_pad(n, k, s, d=1):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return out, total // 2, total - total // 2


def _pad_input(x, kh, kw, sh, sw, padding):
    n, h, w, c = x.shape
    if padding == "SAME":
        oh, pt, pb = _same_pad(h, kh, sh)
        ow, pl, pr = _same_pad(w, kw, sw)
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    return x, oh, ow


def _act(y, a):
    if a == "RELU6":
        return np.clip(y, 0, 6, out=y)
    if a == "RELU":
        return np.maximum(y, 0, out=y)
    return y


def _conv(x, w, b, o):
    # x (N, H, W, I); w (O, KH, KW, I); b (O,)
    o_ch, kh, kw, _ = w.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    xp, oh, ow = _pad_input(x, kh, kw, sh, sw, o.get("padding", "SAME"))
    y = np.zeros((x.shape[0], oh, ow, o_ch), np.float32)
    for i in range(kh):
        for j in range(kw):
            sl = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
            y += sl @ w[:, i, j, :].T
    if b is not None:
        y += b
    return _act(y, o.get("fused_activation_function", "NONE"))


def _depthwise(x, w, b, o):
    # x (N, H, W, C); w (1, KH, KW, C)
    _, kh, kw, c = w.shape
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    xp, oh, ow = _pad_input(x, kh, kw, sh, sw, o.get("padding", "SAME"))
    y = np.zeros((x.shape[0], oh, ow, c), np.float32)
    for i in range(kh):
        for j in range(kw):
            y += xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] * w[0, i, j]
    if b is not None:
        y += b
    return _act(y, o.get("fused_activation_function", "NONE"))


def run_float(g, x, record=None):
    """Runs float Graph `g` on input batch `x` in NumPy float32; returns the output.

    `record`: None or a dict tensor index -> [min, max] updated with every activation's range.
    """
    vals = {g.inputs[0]: x}
    for op in g.ops:
        typ, o, ins = op["op"], op["options"], op["inputs"]

        def v(i):
            c = g.const(i)
            return c if c is not None else vals[i]

        if typ == "DEQUANTIZE":
            q = g.tensors[ins[0]]["quant"]
            y = (v(ins[0]).astype(np.float32) - np.float32(q["zero_point"][0])) * np.float32(q["scale"][0])
        elif typ == "CONV_2D":
            y = _conv(v(ins[0]), v(ins[1]), v(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None, o)
        elif typ == "DEPTHWISE_CONV_2D":
            y = _depthwise(v(ins[0]), v(ins[1]), v(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None, o)
        elif typ == "ADD":
            y = _act((v(ins[0]) + v(ins[1])).astype(np.float32), o.get("fused_activation_function", "NONE"))
        elif typ in ("MEAN", "REDUCE_MAX"):
            fn = np.mean if typ == "MEAN" else np.max
            y = fn(v(ins[0]), axis=tuple(int(a) for a in v(ins[1]).ravel()),
                   keepdims=bool(o.get("keep_dims", False))).astype(np.float32)
        elif typ == "RESHAPE":
            y = v(ins[0]).reshape([v(ins[0]).shape[0]] + [int(s) for s in o["new_shape"][1:]])
        elif typ == "FULLY_CONNECTED":
            y = v(ins[0]) @ v(ins[1]).T
            if len(ins) > 2 and ins[2] >= 0:
                y = y + v(ins[2])
            y = _act(y.astype(np.float32), o.get("fused_activation_function", "NONE"))
        elif typ == "SOFTMAX":
            z = v(ins[0]) * np.float32(o.get("beta", 1.0))
            z = np.exp(z - z.max(axis=-1, keepdims=True))
            y = (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)
        elif typ == "LOGISTIC":
            y = (1.0 / (1.0 + np.exp(-v(ins[0])))).astype(np.float32)
        else:
            raise NotImplementedError(f"int8 quantization does not support the {typ} op")
        vals[op["outputs"][0]] = y
        if record is not None:
            r = record.setdefault(op["outputs"][0], [np.inf, -np.inf])
            r[0] = min(r[0], float(y.min()))
            r[1] = max(r[1], float(y.max()))
    return vals[g.outputs[0]]


def _batches(representative_dataset):
    """uint8 (N, H, W, 3) arrays from a representative dataset (arrays, (x, y) pairs,
    lists of arrays as TF's generators yield, or an ImageDataset), or from a callable returning
    such an iterable (TFLiteConverter's convention: ``representative_dataset=gen``). Values are
    the uint8 pixel range [0, 255]; non-finite floats raise ValueError."""
    if callable(representative_dataset) and not hasattr(representative_dataset, "__iter__"):
        representative_dataset = representative_dataset()
    try:
        items = iter(representative_dataset)
    except TypeError:
        raise ValueError("`representative_dataset` must be an iterable of image batches (or a function returning "
                         f"one). Received: {type(representative_dataset).__name__}") from None
    for item in items:
        if isinstance(item, (tuple, list)):
            item = item[0]
        x = np.asarray(item)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError("`representative_dataset` must yield image batches (N, H, W, 3). "
                             f"Received: x.shape={x.shape}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise ValueError("`representative_dataset` yielded NaN or Inf pixel values; calibration needs images in "
                             "[0, 255].")
        yield x


def calibrate(g, representative_dataset, batch_size=8):
    """Activation ranges: dict tensor index -> (min, max), over the representative dataset."""
    record = {}
    n = 0
    for x in _batches(representative_dataset):
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size]
            if np.issubdtype(xb.dtype, np.floating):
                xb = np.clip(np.rint(xb), 0, 255)
            run_float(g, xb.astype(np.uint8), record)
            n += len(xb)
    if n == 0:
        raise ValueError("`representative_dataset` yielded no images.")
    return {t: (min(lo, 0.0), max(hi, 0.0)) for t, (lo, hi) in record.items()}


def _act_quant(lo, hi):
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return dict(scale=[float(scale)], zero_point=[zp], quantized_dimension=0)


def _quantize_weights(w, axis):
    """Symmetric int8 per channel along `axis` (None: per tensor): (q int8, scales float64)."""
    w = np.asarray(w, np.float64)
    if axis is None:
        m = np.asarray([np.abs(w).max()])
    else:
        m = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = np.where(m > 0, m / 127.0, 1e-9)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def quantize_int8(g, representative_dataset):
    """The int8 Graph of float Graph `g` (uint8 input version), see the module docstring.

    Raises:
      ValueError: `g` does not take uint8 pixels, or the dataset is empty / not images.
      NotImplementedError: an op without an int8 mapping.
    """
    t_in = g.inputs[0]
    if g.tensors[t_in]["dtype"] != "uint8" or len(g.ops) < 2 or g.ops[0]["op"] != "DEQUANTIZE" \
            or g.ops[1]["op"] != "ADD":
        raise ValueError("int8 quantization needs the uint8-input graph (input_dtype='uint8').")
    ranges = calibrate(g, representative_dataset)
    q = Graph()
    q.labels, q.metadata = g.labels, dict(g.metadata, quantization="int8")
    h, w = g.shape(t_in)[1:3]
    qin = q.add_tensor("input", [1, h, w, 3], "uint8", quant=dict(scale=[1 / 127.5], zero_point=[127],
                                                                   quantized_dimension=0))
    x8 = q.add_tensor("input_int8", [1, h, w, 3], "int8", quant=dict(scale=[1 / 127.5], zero_point=[-1],
                                                                      quantized_dimension=0))
    q.add_op("QUANTIZE", [qin], [x8])
    q.inputs = [qin]
    # The represented value (q - 127) / 127.5 is 0.5 / 127.5 above the exact (q - 127.5) / 127.5.
    input_shift = 0.5 / 127.5
    mapped = {g.ops[1]["outputs"][0]: x8}
    first_conv = True

    def qparams(t):
        return q.tensors[t]["quant"]

    for op in g.ops[2:]:
        typ, o, ins, out = op["op"], op["options"], op["inputs"], op["outputs"][0]
        name = g.tensors[out]["name"]
        shape = g.shape(out)
        xin = mapped[ins[0]]
        if typ in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            wf = np.asarray(g.const(ins[1]), np.float64)
            axis = 0 if typ == "CONV_2D" else 3 if typ == "DEPTHWISE_CONV_2D" else None
            wq, ws = _quantize_weights(wf, axis)
            bf = np.asarray(g.const(ins[2]), np.float64) if len(ins) > 2 and ins[2] >= 0 else \
                np.zeros(shape[-1], np.float64)
            if first_conv and typ == "CONV_2D":
                bf = bf - input_shift * wf.sum(axis=(1, 2, 3))  # see input_shift
            first_conv = False
            s_in = qparams(xin)["scale"][0]
            bscale = s_in * ws if axis is not None else s_in * np.full(len(bf), ws[0])
            bq = np.clip(np.rint(bf / bscale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            wt = q.add_tensor(g.tensors[ins[1]]["name"], wq.shape, "int8", data=wq,
                              quant=dict(scale=ws.tolist(), zero_point=[0] * len(ws),
                                         quantized_dimension=axis or 0))
            bs = bscale.tolist() if axis is not None else [float(bscale[0])]  # per channel / per tensor
            bt = q.add_tensor(g.tensors[ins[2]]["name"] if len(ins) > 2 and ins[2] >= 0 else name + "/bias",
                              bq.shape, "int32", data=bq,
                              quant=dict(scale=bs, zero_point=[0] * len(bs), quantized_dimension=0))
            y = q.add_tensor(name, shape, "int8", quant=_act_quant(*ranges[out]))
            q.add_op(typ, [xin, wt, bt], [y], **o)
        elif typ == "ADD":
            y = q.add_tensor(name, shape, "int8", quant=_act_quant(*ranges[out]))
            q.add_op("ADD", [xin, mapped[ins[1]]], [y], **o)
        elif typ == "MEAN":
            axes = q.add_const(g.tensors[ins[1]]["name"], g.const(ins[1]).astype(np.int32))
            y = q.add_tensor(name, shape, "int8", quant=_act_quant(*ranges[out]))
            q.add_op("MEAN", [xin, axes], [y], **o)
        elif typ in ("RESHAPE", "REDUCE_MAX"):
            c = q.add_const(g.tensors[ins[1]]["name"], g.const(ins[1]).astype(np.int32))
            y = q.add_tensor(name, shape, "int8", quant=dict(qparams(xin)))
            q.add_op(typ, [xin, c], [y], **o)
        elif typ in ("SOFTMAX", "LOGISTIC"):
            y = q.add_tensor(name, shape, "int8", quant=dict(scale=[1 / 256.0], zero_point=[-128],
                                                             quantized_dimension=0))
            q.add_op(typ, [xin], [y], **o)
        else:
            raise NotImplementedError(f"int8 quantization does not support the {typ} op")
        mapped[out] = y
    yq = mapped[g.outputs[0]]
    yf = q.add_tensor("output", q.shape(yq), "float32")
    q.add_op("DEQUANTIZE", [yq], [yf])
    q.outputs = [yf]
    return q
