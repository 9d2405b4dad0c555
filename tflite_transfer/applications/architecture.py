"""MobileNetV2 built from its architecture (any alpha, any input size) as a float .tflite.

Follows ``keras.applications.MobileNetV2`` (Sandler et al. 2018; Keras'
``mobilenet_v2.py``): stem Conv1 3x3/2 -> 17 inverted-residual blocks
(expansion t, channels c, repeats n, first stride s: (1,16,1,1) (6,24,2,2)
(6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)) -> Conv_1 1x1 ->
global average pool [-> logits]. Channel counts are
``_make_divisible(c * alpha, 8)``; the last conv has 1280 channels, or
``_make_divisible(1280 * alpha, 8)`` for alpha > 1. Batch norm is folded into
the convolutions (the caller passes folded kernels and biases); stride-2 layers
use TF's SAME padding, which equals Keras' ``correct_pad`` + VALID.

The network is written as a float32 .tflite (float32 NHWC input already scaled
to [-1, 1]) with the exporter's writer, then loaded by the C reader like any
other model.

Weights: dict layer name (Keras' names: "Conv1", "expanded_conv_depthwise",
"expanded_conv_project", "block_{i}_expand" / "_depthwise" / "_project" for
i = 1..16, "Conv_1", "Logits") -> (kernel, bias) float32, kernels in TFLite
layout (conv [O, KH, KW, I], depthwise [1, KH, KW, C]).
"""
import numpy as np

from ..export.graph import Graph
from ..export.litert import to_tflite_bytes

__all__ = ["ALPHAS", "BLOCKS", "layer_specs", "build_tflite", "make_divisible"]

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))


def make_divisible(v, divisor=8, min_value=None):
    """Keras' ``_make_divisible``: nearest multiple of `divisor`, not below 90% of `v`."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def layer_specs(alpha=1.0, include_top=False, classes=1000):
    """The conv layers in graph order: list of dict(name, kind ("conv" | "depthwise"),
    kernel (KH, KW), in_ch, out_ch, stride, relu6 (bool), block (int | None),
    residual (bool: the block's output adds its input))."""
    specs = []
    c_in = 3
    first = make_divisible(32 * alpha, 8)
    specs.append(dict(name="Conv1", kind="conv", kernel=(3, 3), in_ch=c_in, out_ch=first, stride=2, relu6=True,
                      block=None, residual=False))
    c_in = first
    i = 0
    for t, c, n, s in BLOCKS:
        c_out = make_divisible(int(c * alpha), 8)
        for r in range(n):
            stride = s if r == 0 else 1
            prefix = "expanded_conv" if i == 0 else f"block_{i}"
            res = stride == 1 and c_in == c_out
            hidden = c_in * t
            if i:
                specs.append(dict(name=f"{prefix}_expand", kind="conv", kernel=(1, 1), in_ch=c_in, out_ch=hidden,
                                  stride=1, relu6=True, block=i, residual=False))
            specs.append(dict(name=f"{prefix}_depthwise", kind="depthwise", kernel=(3, 3), in_ch=hidden,
                              out_ch=hidden, stride=stride, relu6=True, block=i, residual=False))
            specs.append(dict(name=f"{prefix}_project", kind="conv", kernel=(1, 1), in_ch=hidden, out_ch=c_out,
                              stride=1, relu6=False, block=i, residual=res))
            c_in = c_out
            i += 1
    last = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    specs.append(dict(name="Conv_1", kind="conv", kernel=(1, 1), in_ch=c_in, out_ch=last, stride=1, relu6=True,
                      block=None, residual=False))
    if include_top:
        specs.append(dict(name="Logits", kind="conv", kernel=(1, 1), in_ch=last, out_ch=classes, stride=1,
                          relu6=False, block=None, residual=False))
    return specs


def _expected_shape(spec):
    kh, kw = spec["kernel"]
    if spec["kind"] == "depthwise":
        return (1, kh, kw, spec["in_ch"])
    return (spec["out_ch"], kh, kw, spec["in_ch"])


def build_tflite(weights, alpha=1.0, input_shape=(224, 224, 3), include_top=False, classes=1000,
                 description="MobileNetV2"):
    """The float32 .tflite (bytes) of MobileNetV2 with `weights` (see the module docstring).

    The graph: float32 input (1, H, W, 3) in [-1, 1] -> ... -> Conv_1 map ->
    MEAN over H, W (keep_dims) [-> Logits 1x1 conv -> RESHAPE (-1, classes) ->
    SOFTMAX when include_top]. Without the top the pooled (1, 1, 1, C) MEAN
    output is the graph output.

    Raises:
      ValueError: a layer is missing from `weights` or has the wrong shape (the
        message names the layer and the shapes).
    """
    h, w = int(input_shape[0]), int(input_shape[1])
    g = Graph()
    x = g.add_tensor("input", [1, h, w, 3])
    g.inputs = [x]
    block_in = None
    for spec in layer_specs(alpha, include_top, classes):
        name = spec["name"]
        if name not in weights:
            raise ValueError(f"Layer {name!r} of MobileNetV2 (alpha={alpha}) is missing from the weights.")
        kernel, bias = weights[name]
        kernel = np.asarray(kernel, np.float32)
        bias = np.asarray(bias, np.float32)
        want = _expected_shape(spec)
        if kernel.shape != want or bias.shape != (spec["out_ch"],):
            raise ValueError(f"Layer {name!r}: expected kernel {want} and bias ({spec['out_ch']},) for "
                             f"alpha={alpha}; got kernel {kernel.shape} and bias {bias.shape}.")
        if spec["block"] is not None and (name.endswith("_expand")
                                          or (spec["block"] == 0 and name.endswith("_depthwise"))):
            block_in = x  # the block's input, added back by a residual project
        if name == "Logits":
            axes = g.add_const("pool/axes", np.asarray([1, 2], np.int32))
            pooled = g.add_tensor("pool", [1, 1, 1, spec["in_ch"]])
            g.add_op("MEAN", [x, axes], [pooled], keep_dims=True)
            x = pooled
        kt = g.add_const(name + "/kernel", kernel)
        bt = g.add_const(name + "/bias", bias)
        oh = -(-g.shape(x)[1] // spec["stride"])
        ow = -(-g.shape(x)[2] // spec["stride"])
        y = g.add_tensor(name, [1, oh, ow, spec["out_ch"]])
        opts = dict(padding="SAME", stride_h=spec["stride"], stride_w=spec["stride"],
                    fused_activation_function="RELU6" if spec["relu6"] else "NONE")
        if spec["kind"] == "depthwise":
            opts["depth_multiplier"] = 1
        g.add_op("DEPTHWISE_CONV_2D" if spec["kind"] == "depthwise" else "CONV_2D", [x, kt, bt], [y], **opts)
        x = y
        if spec["residual"]:
            z = g.add_tensor(f"block_{spec['block']}_add", g.shape(x))
            g.add_op("ADD", [block_in, x], [z], fused_activation_function="NONE")
            x = z
    if include_top:
        shp = g.add_const("logits/shape", np.asarray([-1, classes], np.int32))
        y = g.add_tensor("logits", [1, classes])
        g.add_op("RESHAPE", [x, shp], [y], new_shape=[-1, classes])
        z = g.add_tensor("probabilities", [1, classes])
        g.add_op("SOFTMAX", [y], [z], beta=1.0)
        x = z
    else:
        axes = g.add_const("pool/axes", np.asarray([1, 2], np.int32))
        pooled = g.add_tensor("pool", [1, 1, 1, g.shape(x)[3]])
        g.add_op("MEAN", [x, axes], [pooled], keep_dims=True)
        x = pooled
    g.outputs = [x]
    return to_tflite_bytes(g, description)
