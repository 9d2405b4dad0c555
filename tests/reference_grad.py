"""NumPy float64 reference gradients for the ops of MobileNetV2 (the backward pass of fine-tuning).

Independent of the package: plain NumPy, float64, written from the definitions, and each
function is checked against central finite differences in ``tests/test_reference_grad.py``, so
the C backward can be compared with these.

Conventions (TFLite's, as the engine's):
  * activations NHWC: x (N, H, W, C);
  * CONV_2D kernel (O, KH, KW, I), bias (O,);
  * DEPTHWISE_CONV_2D kernel (1, KH, KW, C * M) (depth multiplier M; output channel
    ``c * M + m`` reads input channel ``c``), bias (C * M,);
  * stride (sh, sw); padding "SAME" or "VALID" with TF's rule: SAME ``out = ceil(in / s)``,
    ``pad_total = max((out - 1) * s + k - in, 0)``, ``pad_before = pad_total // 2`` (the extra
    row / column goes bottom / right); VALID ``out = ceil((in - k + 1) / s)``; dilation 1.
  * every ``*_backward`` takes the gradient of a scalar loss w.r.t. the op's output (``dy``,
    the output's shape) and returns gradients w.r.t. its inputs / parameters, same shapes.
"""
import numpy as np

__all__ = ["same_or_valid", "conv2d_forward", "conv2d_backward", "depthwise_conv2d_forward",
           "depthwise_conv2d_backward", "relu6_forward", "relu6_backward", "add_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "mean_forward", "mean_backward",
           "inverted_residual_forward", "inverted_residual_backward", "init_inverted_residual",
           "graph_loss_and_grads", "finite_difference"]


def same_or_valid(size, k, stride, padding):
    """(out, pad_before, pad_after) along one spatial axis, TF's rule (module docstring)."""
    if padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        return out, total // 2, total - total // 2
    if padding == "VALID":
        return -(-(size - k + 1) // stride), 0, 0
    raise ValueError(f"padding must be 'SAME' or 'VALID'. Received: padding={padding!r}")


def _geometry(x_shape, kh, kw, stride, padding):
    sh, sw = stride
    oh, pt, pb = same_or_valid(x_shape[1], kh, sh, padding)
    ow, pl, pr = same_or_valid(x_shape[2], kw, sw, padding)
    return oh, ow, (pt, pb), (pl, pr)


def _taps(kh, kw, oh, ow, stride):
    """(i, j, row slice, column slice) of the padded input seen by kernel tap (i, j)."""
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)


def _pad(x, ph, pw):
    return np.pad(x, ((0, 0), ph, pw, (0, 0)))


# ------------------------------------------------------------------------------------ CONV_2D
def conv2d_forward(x, w, b, stride=(1, 1), padding="SAME"):
    """y (N, OH, OW, O) = conv(x (N, H, W, I), w (O, KH, KW, I)) + b (O,), float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    o, kh, kw, _ = w.shape
    oh, ow, ph, pw = _geometry(x.shape, kh, kw, stride, padding)
    xp = _pad(x, ph, pw)
    y = np.zeros((x.shape[0], oh, ow, o))
    for i, j, rs, cs in _taps(kh, kw, oh, ow, stride):
        y += xp[:, rs, cs, :] @ w[:, i, j, :].T
    return y + np.asarray(b, np.float64)


def conv2d_backward(dy, x, w, stride=(1, 1), padding="SAME"):
    """(dx (N, H, W, I), dw (O, KH, KW, I), db (O,)) of conv2d_forward, given dy (N, OH, OW, O)."""
    x, w, dy = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(dy, np.float64)
    o, kh, kw, _ = w.shape
    oh, ow, ph, pw = _geometry(x.shape, kh, kw, stride, padding)
    assert dy.shape == (x.shape[0], oh, ow, o), (dy.shape, (x.shape[0], oh, ow, o))
    xp = _pad(x, ph, pw)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i, j, rs, cs in _taps(kh, kw, oh, ow, stride):
        dw[:, i, j, :] = np.einsum("nhwo,nhwi->oi", dy, xp[:, rs, cs, :])
        dxp[:, rs, cs, :] += dy @ w[:, i, j, :]
    dx = dxp[:, ph[0]:ph[0] + x.shape[1], pw[0]:pw[0] + x.shape[2], :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# -------------------------------------------------------------------------- DEPTHWISE_CONV_2D
def depthwise_conv2d_forward(x, w, b, stride=(1, 1), padding="SAME"):
    """y (N, OH, OW, C*M) = depthwise(x (N, H, W, C), w (1, KH, KW, C*M)) + b (C*M,), float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    _, kh, kw, cm = w.shape
    m = cm // x.shape[3]
    oh, ow, ph, pw = _geometry(x.shape, kh, kw, stride, padding)
    xp = np.repeat(_pad(x, ph, pw), m, axis=3)  # channel c*M+m reads input channel c
    y = np.zeros((x.shape[0], oh, ow, cm))
    for i, j, rs, cs in _taps(kh, kw, oh, ow, stride):
        y += xp[:, rs, cs, :] * w[0, i, j, :]
    return y + np.asarray(b, np.float64)


def depthwise_conv2d_backward(dy, x, w, stride=(1, 1), padding="SAME"):
    """(dx (N, H, W, C), dw (1, KH, KW, C*M), db (C*M,)) of depthwise_conv2d_forward."""
    x, w, dy = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(dy, np.float64)
    _, kh, kw, cm = w.shape
    c = x.shape[3]
    m = cm // c
    oh, ow, ph, pw = _geometry(x.shape, kh, kw, stride, padding)
    assert dy.shape == (x.shape[0], oh, ow, cm), (dy.shape, (x.shape[0], oh, ow, cm))
    xp = np.repeat(_pad(x, ph, pw), m, axis=3)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i, j, rs, cs in _taps(kh, kw, oh, ow, stride):
        dw[0, i, j, :] = np.einsum("nhwc,nhwc->c", dy, xp[:, rs, cs, :])
        dxp[:, rs, cs, :] += dy * w[0, i, j, :]
    dxp = dxp.reshape(dxp.shape[:3] + (c, m)).sum(axis=4)  # the M outputs of channel c add up
    dx = dxp[:, ph[0]:ph[0] + x.shape[1], pw[0]:pw[0] + x.shape[2], :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# ------------------------------------------------------------------------------- RELU6 / ADD
def relu6_forward(x):
    """min(max(x, 0), 6), float64."""
    return np.clip(np.asarray(x, np.float64), 0.0, 6.0)


def relu6_backward(dy, y):
    """dx = dy where 0 < y < 6, else 0, from the saved *output* y (TF's Relu6Grad uses the
    input x: 0 < x < 6 and 0 < clip(x, 0, 6) < 6 are the same set, so both agree; at exactly
    0 or 6 the gradient is 0, as TF's)."""
    y = np.asarray(y, np.float64)
    return np.asarray(dy, np.float64) * ((y > 0.0) & (y < 6.0))


def add_backward(dy):
    """(da, db) of y = a + b (same shapes, no broadcasting): both are dy."""
    dy = np.asarray(dy, np.float64)
    return dy.copy(), dy.copy()


# -------------------------------------------------------------------- AVERAGE_POOL_2D / MEAN
def avg_pool2d_forward(x, pool=(2, 2), stride=(2, 2), padding="VALID"):
    """TFLite AVERAGE_POOL_2D: mean over each window; with SAME padding the padded
    positions are not counted (divisor = the window's in-image size)."""
    x = np.asarray(x, np.float64)
    kh, kw = pool
    oh, ow, ph, pw = _geometry(x.shape, kh, kw, stride, padding)
    xp, ones = _pad(x, ph, pw), _pad(np.ones((1,) + x.shape[1:3] + (1,)), ph, pw)
    s = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    cnt = np.zeros((1, oh, ow, 1))
    for _, _, rs, cs in _taps(kh, kw, oh, ow, stride):
        s += xp[:, rs, cs, :]
        cnt += ones[:, rs, cs, :]
    return s / cnt


def avg_pool2d_backward(dy, x_shape, pool=(2, 2), stride=(2, 2), padding="VALID"):
    """dx (x_shape) of avg_pool2d_forward: each output's gradient, divided by its count,
    goes to every in-image element of its window."""
    kh, kw = pool
    oh, ow, ph, pw = _geometry(x_shape, kh, kw, stride, padding)
    ones = _pad(np.ones((1,) + tuple(x_shape[1:3]) + (1,)), ph, pw)
    cnt = np.zeros((1, oh, ow, 1))
    for _, _, rs, cs in _taps(kh, kw, oh, ow, stride):
        cnt += ones[:, rs, cs, :]
    g = np.asarray(dy, np.float64) / cnt
    dxp = np.zeros((x_shape[0], x_shape[1] + sum(ph), x_shape[2] + sum(pw), x_shape[3]))
    for _, _, rs, cs in _taps(kh, kw, oh, ow, stride):
        dxp[:, rs, cs, :] += g
    return dxp[:, ph[0]:ph[0] + x_shape[1], pw[0]:pw[0] + x_shape[2], :]


def mean_forward(x, keepdims=True):
    """MEAN over H and W (axes 1, 2): (N, 1, 1, C) (keepdims) or (N, C)."""
    return np.asarray(x, np.float64).mean(axis=(1, 2), keepdims=keepdims)


def mean_backward(dy, x_shape):
    """dx (x_shape): dy / (H * W) broadcast over H and W; dy (N, C) or (N, 1, 1, C)."""
    n, h, w, c = x_shape
    return np.broadcast_to(np.asarray(dy, np.float64).reshape(n, 1, 1, c) / (h * w), x_shape).copy()


# ------------------------------------------------------------------ inverted residual block
def init_inverted_residual(rng, c_in, c_out, expansion=6, dtype=np.float64):
    """Random parameters {name: array} for a block: expand_w (E, 1, 1, C_in), expand_b (E,)
    (absent when expansion == 1), depthwise_w (1, 3, 3, E), depthwise_b (E,), project_w
    (C_out, 1, 1, E), project_b (C_out,), E = C_in * expansion. Scaled so activations
    spread over (0, 6) rather than saturating."""
    e = c_in * expansion
    p = {}
    if expansion != 1:
        p["expand_w"] = rng.normal(0, 1.0 / np.sqrt(c_in), (e, 1, 1, c_in))
        p["expand_b"] = rng.normal(0.5, 0.3, e)
    p["depthwise_w"] = rng.normal(0, 1.0 / 3.0, (1, 3, 3, e))
    p["depthwise_b"] = rng.normal(0.5, 0.3, e)
    p["project_w"] = rng.normal(0, 1.0 / np.sqrt(e), (c_out, 1, 1, e))
    p["project_b"] = rng.normal(0, 0.3, c_out)
    return {k: v.astype(dtype) for k, v in p.items()}


def inverted_residual_forward(x, params, stride=1, skip=None):
    """MobileNetV2's block, folded batch norm (Keras' ``_inverted_res_block`` in inference mode):
    [1x1 expand conv + bias + ReLU6] -> 3x3 depthwise (stride, SAME) + bias + ReLU6 -> 1x1
    project conv + bias (linear) [-> + x when skip]. `skip` default: stride 1 and
    C_in == C_out (Keras' rule).

    Returns (y, cache): y (N, OH, OW, C_out) float64; cache for inverted_residual_backward."""
    x = np.asarray(x, np.float64)
    if skip is None:
        skip = stride == 1 and x.shape[3] == params["project_w"].shape[0]
    cache = {"x": x, "stride": stride, "skip": skip}
    h = x
    if "expand_w" in params:
        h = cache["expand_y"] = relu6_forward(conv2d_forward(h, params["expand_w"], params["expand_b"]))
    cache["dw_x"] = h
    h = cache["dw_y"] = relu6_forward(depthwise_conv2d_forward(h, params["depthwise_w"], params["depthwise_b"],
                                                               (stride, stride), "SAME"))
    y = conv2d_forward(h, params["project_w"], params["project_b"])
    if skip:
        y = y + x
    return y, cache


def inverted_residual_backward(dy, params, cache):
    """(dx, grads {param name: gradient, same shape}) of inverted_residual_forward."""
    dy = np.asarray(dy, np.float64)
    grads = {}
    dh, grads["project_w"], grads["project_b"] = conv2d_backward(dy, cache["dw_y"], params["project_w"])
    dh = relu6_backward(dh, cache["dw_y"])
    s = cache["stride"]
    dh, grads["depthwise_w"], grads["depthwise_b"] = depthwise_conv2d_backward(
        dh, cache["dw_x"], params["depthwise_w"], (s, s), "SAME")
    if "expand_w" in params:
        dh = relu6_backward(dh, cache["expand_y"])
        dh, grads["expand_w"], grads["expand_b"] = conv2d_backward(dh, cache["x"], params["expand_w"])
    if cache["skip"]:
        dskip, dh2 = add_backward(dy)
        dh = dh + dskip
    return dh, grads


# ------------------------------------------------------------- the top of a .tflite graph
def graph_loss_and_grads(ref, x, y, head_kernel, head_bias, first_op, overrides=None):
    """Loss and gradients of a .tflite MobileNetV2 (read by ``tests/reference.py``) + a Dense
    softmax head, float64: the whole-network reference for the engine's reverse walk.

    Forward: the graph's ops up to the pooled features (``reference.pooled_feature_tensor``),
    flattened to (N, F); logits ``f @ head_kernel + head_bias``; mean sparse categorical
    cross-entropy. Backward: from the head down to op `first_op` (inclusive), in reverse op
    order, with the functions above (fused RELU6 from the saved output; ADD to both inputs;
    MEAN / AVERAGE_POOL_2D; QUANTIZE / DEQUANTIZE / RESHAPE pass the gradient through).

    Args:
      ref: reference.ReferenceModel.
      x: (N, H, W, 3) preprocessed input; y: (N,) int labels.
      head_kernel (F, C), head_bias (C,).
      first_op (int): lowest op index whose kernel / bias gradients are wanted.
      overrides: {tensor index: array} replacing constants (for finite differences).

    Returns dict: loss (float), features (N, F), by_op {op index: (d kernel (.tflite layout),
      d bias)} for every CONV_2D / DEPTHWISE_CONV_2D op with index >= first_op that the
      features depend on, head {"kernel", "bias"}.
    """
    import reference

    overrides = overrides or {}
    const = lambda t: overrides[t] if t in overrides else ref.tensors[t]["data"]
    pooled = reference.pooled_feature_tensor(ref)
    vals = {ref.inputs[0]: np.asarray(x, np.float64)}
    ran = []
    for op in ref.ops:
        if pooled in vals:
            break
        ins = [None if i < 0 else (vals[i] if i in vals else const(i)) for i in op["inputs"]]
        vals[op["outputs"][0]] = reference._OPS[op["type"]](ins, op["options"], len(x))
        ran.append(op)
    n = len(x)
    f = vals[pooled].reshape(n, -1)
    z = f @ head_kernel + head_bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.asarray(y)
    loss = float(-np.log(p[np.arange(n), y]).mean())
    dz = (p - np.eye(p.shape[1])[y]) / n
    grads = {pooled: (dz @ np.asarray(head_kernel, np.float64).T).reshape(vals[pooled].shape)}
    by_op = {}

    def acc(t, g):
        grads[t] = grads[t] + g if t in grads else g

    for idx in range(len(ran) - 1, -1, -1):
        op = ran[idx]
        if idx < first_op:
            break
        out = op["outputs"][0]
        if out not in grads:
            continue
        d, o, t_in = grads.pop(out), op["options"], op["inputs"][0]
        kind = op["type"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if o["activation"] == "RELU6":
                d = relu6_backward(d, vals[out])
            elif o["activation"] != "NONE":
                raise NotImplementedError(f"op {idx}: activation {o['activation']}")
            back = conv2d_backward if kind == "CONV_2D" else depthwise_conv2d_backward
            dx, dw, db = back(d, vals[t_in], const(op["inputs"][1]), (o["stride_h"], o["stride_w"]), o["padding"])
            by_op[idx] = (dw, db)
            acc(t_in, dx)
        elif kind == "ADD":
            assert o["activation"] == "NONE"
            da, db_ = add_backward(d)
            acc(op["inputs"][0], da)
            acc(op["inputs"][1], db_)
        elif kind == "MEAN":
            acc(t_in, mean_backward(d.reshape(d.shape[0], -1), vals[t_in].shape))
        elif kind == "AVERAGE_POOL_2D":
            acc(t_in, avg_pool2d_backward(d, vals[t_in].shape, (o["filter_h"], o["filter_w"]),
                                          (o["stride_h"], o["stride_w"]), o["padding"]))
        elif kind in ("QUANTIZE", "DEQUANTIZE", "RESHAPE"):
            acc(t_in, d.reshape(vals[t_in].shape))
        else:
            raise NotImplementedError(f"op {idx}: no backward reference for {kind}")
    return dict(loss=loss, features=f, by_op=by_op, head={"kernel": f.T @ dz, "bias": dz.sum(0)})


# --------------------------------------------------------------------------------- checking
def finite_difference(f, x, eps=1e-6):
    """Central differences of the scalar function f at x (float64 array): df/dx, x's shape.
    O(eps^2) error for smooth f; every element is perturbed (keep x small)."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + eps
        fp = f(x)
        flat[i] = v - eps
        fm = f(x)
        flat[i] = v
        gf[i] = (fp - fm) / (2 * eps)
    return g
