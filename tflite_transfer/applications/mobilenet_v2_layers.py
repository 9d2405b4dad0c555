"""Keras' MobileNetV2 layers (``base.layers``) as views on the ops of a .tflite graph.

``keras.applications.MobileNetV2(include_top=False)`` has 154 layers: ``input_layer``,
``Conv1``, ``bn_Conv1``, ``Conv1_relu``, ``expanded_conv_depthwise``, ...,
``block_16_project_BN``, ``Conv_1``, ``Conv_1_bn``, ``out_relu`` (Keras 3.15,
``keras/src/applications/mobilenet_v2.py``). A .tflite MobileNetV2 folds each
Conv2D / DepthwiseConv2D + BatchNormalization (+ ReLU(6.)) into one CONV_2D /
DEPTHWISE_CONV_2D op with a bias and a fused RELU6, and each ZeroPadding2D into
the op's SAME padding. This module lists Keras' layers, in Keras' order with
Keras' names, and says which op each belongs to, so that the tutorial's
``for layer in base.layers[:fine_tune_at]: layer.trainable = False`` selects the
same blocks as in Keras (``fine_tune_at = 100`` freezes everything up to
``block_11_expand_relu``).

**What a layer owns, and what ``trainable`` means** (batch norm is folded):

======================  =================================  ===============================
Keras layer             weights here                       ``trainable`` governs
======================  =================================  ===============================
Conv2D / Depthwise      the op's folded kernel             the kernel
BatchNormalization      the op's folded bias (one vector)  the bias
ReLU, ZeroPadding2D,    none                               nothing (kept, as in Keras)
Add, InputLayer
Dense ``predictions``   the classifier's kernel and bias   both
======================  =================================  ===============================

Training a folded kernel ``W * gamma / sqrt(var + eps)`` and bias
``beta - mean * gamma / sqrt(var + eps)`` is exactly what Keras does when it
fine-tunes with batch norm in inference mode (``training=False``, moving
statistics fixed), the setting Keras recommends for fine-tuning
(https://keras.io/guides/transfer_learning/): the BN layer is then the affine
map ``x * s + b`` and the gradient w.r.t. its ``beta`` is the gradient w.r.t.
the folded bias. Keras also trains ``gamma``; folded, ``gamma`` is a per-channel
scale of the kernel, which the folded kernel already represents (one scalar per
output channel more or less, not a different function class). Parameter counts
therefore differ from Keras': Keras' BatchNormalization has 4 vectors (gamma,
beta trainable; moving mean / variance not), ours 1 (the folded bias, trainable).
For MobileNetV2 1.0/224 without the top: Keras 2,257,984 total (2,223,872
trainable, 34,112 non-trainable); folded 2,206,816.

The mapping is found from the graph's structure (dataflow from the input, op
types, strides, kernel sizes, fused activations), not from op index constants,
so that the TF2 Keras model (ptq, with a leading QUANTIZE op) and the TF-slim
model (quant, residual ADD inputs in the other order) both map; a graph that is
not MobileNetV2 raises ValueError naming the file and the first mismatch.
"""
import functools
import weakref

import numpy as np

from ..layers.base import Layer

__all__ = ["MobileNetV2Layer", "InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU",
           "ZeroPadding2D", "Add", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dense", "build_layers",
           "keras_layer_names", "keras_layer_classes", "KERAS_BLOCKS", "NUM_LAYERS_NO_TOP", "KERAS_PARAMS_NO_TOP"]

#: (filters, stride, expansion) of Keras' 17 inverted residual blocks (block_id 0..16),
#: as ``keras.applications.MobileNetV2`` builds them.
KERAS_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
                (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6),
                (160, 1, 6), (320, 1, 6))

#: len(keras.applications.MobileNetV2(include_top=False).layers) (Keras 3.15).
NUM_LAYERS_NO_TOP = 154
#: Keras' own count for MobileNetV2 1.0 without the top: (total, trainable, non-trainable).
KERAS_PARAMS_NO_TOP = (2257984, 2223872, 34112)

_PASS_THROUGH = ("RESHAPE", "QUANTIZE", "DEQUANTIZE")



def same_weights(given, mine):
    """True if `given` (arrays, any sequence) equals `mine` (list of arrays) in count, shapes and values.

    The base's weights live in its engine, so ``set_weights`` accepts only what it already holds."""
    given = list(given)
    return len(given) == len(mine) and all(np.shape(a) == b.shape and np.array_equal(a, b)
                                           for a, b in zip(given, mine))

class MobileNetV2Layer(Layer):
    """One of Keras' MobileNetV2 layers, a view on the .tflite op it was folded into.

    Not callable on its own (the engine runs the whole graph); it carries the
    Keras name, ``trainable`` and the weights it owns (see the module docstring).

    Attributes:
      name (str): Keras' layer name ("block_11_expand_BN").
      trainable (bool): settable; see the module docstring for its meaning per class.
      op_index (int | None): index (in ``model.ops``) of the .tflite op this layer is
        part of; None for the input layer and for poolings done outside the graph.
      op_type (str | None): that op's type ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", ...).
      kernel_tensor, bias_tensor (int | None): tensor indices of the weights this
        layer owns (None when it owns none).
    """

    def __init__(self, name, owner, op=None, kernel_tensor=None, bias_tensor=None):
        super().__init__(name=name, trainable=True)
        self._owner = weakref.ref(owner)
        self.op_index = None if op is None else int(op["index"])
        self.op_type = None if op is None else op["type"]
        self.kernel_tensor = kernel_tensor
        self.bias_tensor = bias_tensor
        self.built = True

    def _tensors(self):
        return [t for t in (self.kernel_tensor, self.bias_tensor) if t is not None]

    def _keras_layout(self, tensor_index, a):
        return a

    def get_weights(self):
        """Float32 copies of the weights this layer owns, in Keras' layout (see subclasses)."""
        owner = self._owner()
        if owner is None:
            raise RuntimeError(f"Layer {self.name!r}: its model no longer exists.")
        return [self._keras_layout(t, np.array(owner.model.get_tensor(t), dtype=np.float32)) for t in self._tensors()]

    def set_weights(self, weights):
        """Not supported yet: the base's weights live in the engine (ValueError if they differ)."""
        if not same_weights(weights, self.get_weights()):
            raise ValueError(f"The weights of layer {self.name!r} live in the .tflite engine and cannot be set "
                             "from Python.")

    def count_params(self):
        """Number of scalar weights this layer owns (folded: see the module docstring)."""
        owner = self._owner()
        tensors = owner.model.tensors
        return int(sum(int(np.prod(tensors[t]["shape"])) for t in self._tensors()))

    def call(self, x, training=False):
        raise NotImplementedError(f"Layer {self.name!r} is part of a .tflite graph and runs only with its model; "
                                  "call the model instead.")

    def __call__(self, x, training=False):
        return self.call(x, training=training)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r} trainable={self.trainable} op_index={self.op_index} "
                f"op_type={self.op_type}>")


class InputLayer(MobileNetV2Layer):
    """Keras' ``input_layer``: no op, no weights."""


class Conv2D(MobileNetV2Layer):
    """A convolution; owns the op's folded kernel, Keras layout (KH, KW, I, O)
    (.tflite: (O, KH, KW, I))."""

    def _keras_layout(self, t, a):
        return np.ascontiguousarray(a.transpose(1, 2, 3, 0))


class DepthwiseConv2D(Conv2D):
    """A depthwise convolution; owns the folded kernel, Keras layout (KH, KW, C, 1)
    (.tflite: (1, KH, KW, C))."""


class BatchNormalization(MobileNetV2Layer):
    """Batch norm folded into the preceding convolution; owns that op's bias (C,).

    Keras' BN has [gamma, beta, moving_mean, moving_variance]; folded, it is the
    identity plus this bias (gamma 1, beta = bias, mean 0, variance 1 - epsilon)."""


class ReLU(MobileNetV2Layer):
    """ReLU(6.) fused into the op (RELU6); no weights."""


class ZeroPadding2D(MobileNetV2Layer):
    """Keras' explicit padding before a stride-2 depthwise convolution; here the
    op's SAME padding (identical for every input size, see correct_pad); no weights."""


class Add(MobileNetV2Layer):
    """The residual ADD op; no weights."""


class GlobalAveragePooling2D(MobileNetV2Layer):
    """The global average pooling (include_top=True or pooling="avg"); no weights."""


class GlobalMaxPooling2D(MobileNetV2Layer):
    """pooling="max" (computed outside the graph); no weights."""


class Dense(MobileNetV2Layer):
    """Keras' ``predictions``: the .tflite classifier (a 1x1 CONV_2D); owns kernel
    (Keras layout (1280, classes); .tflite (classes, 1, 1, 1280)) and bias (classes,)."""

    def _keras_layout(self, t, a):
        if t == self.kernel_tensor:
            return np.ascontiguousarray(a.reshape(a.shape[0], -1).T)
        return a


# ------------------------------------------------------------------------------------- structure
def keras_layer_names(include_top=False, pooling=None):
    """Keras' MobileNetV2 layer names in Keras' order (list of str), built from KERAS_BLOCKS
    as keras.applications.MobileNetV2 builds them (154 names without the top)."""
    return [spec[0] for spec in _layer_specs(include_top, pooling)]


def keras_layer_classes(include_top=False, pooling=None):
    """Keras' class name of each layer of keras_layer_names(), same order ("Conv2D",
    "BatchNormalization", ...); e.g. to map ``fine_tune_at`` onto another framework's
    conv / batch-norm modules, which come in the same order."""
    return [spec[1].__name__ for spec in _layer_specs(include_top, pooling)]


def _conv_unit(conv, bn, relu, pad=None, depthwise=False, stride=1, kernel=1, act="RELU6"):
    return dict(kind="conv", conv=conv, bn=bn, relu=relu, pad=pad, depthwise=depthwise, stride=stride,
                kernel=kernel, act=act)


@functools.lru_cache(maxsize=None)
def _units():
    """(Built once: callers key their maps by the units' ids.) Keras' architecture as a list of units, each one .tflite op: conv units (conv [+ pad] + BN
    [+ ReLU]) and add units; blocks are bracketed by ("block_in",) / ("block_out", add name)."""
    units = [_conv_unit("Conv1", "bn_Conv1", "Conv1_relu", stride=2, kernel=3)]
    in_ch = 32
    for block_id, (filters, stride, expansion) in enumerate(KERAS_BLOCKS):
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        block = []
        if block_id:
            block.append(_conv_unit(prefix + "expand", prefix + "expand_BN", prefix + "expand_relu"))
        block.append(_conv_unit(prefix + "depthwise", prefix + "depthwise_BN", prefix + "depthwise_relu",
                                pad=prefix + "pad" if stride == 2 else None, depthwise=True, stride=stride,
                                kernel=3))
        block.append(_conv_unit(prefix + "project", prefix + "project_BN", None, act="NONE"))
        skip = in_ch == filters and stride == 1
        units.append(dict(kind="block", units=block, add=prefix + "add" if skip else None))
        in_ch = filters
    units.append(_conv_unit("Conv_1", "Conv_1_bn", "out_relu"))
    return units


def _layer_specs(include_top, pooling):
    """[(name, class, role)]: role = ("conv"|"bn"|"relu"|"pad", unit) | ("add", block) | (...)."""
    specs = [("input_layer", InputLayer, ("input", None))]

    def conv_specs(u):
        out = []
        if u["pad"]:
            out.append((u["pad"], ZeroPadding2D, ("pad", u)))
        out.append((u["conv"], DepthwiseConv2D if u["depthwise"] else Conv2D, ("conv", u)))
        out.append((u["bn"], BatchNormalization, ("bn", u)))
        if u["relu"]:
            out.append((u["relu"], ReLU, ("relu", u)))
        return out

    for u in _units():
        if u["kind"] == "conv":
            specs += conv_specs(u)
        else:
            for v in u["units"]:
                specs += conv_specs(v)
            if u["add"]:
                specs.append((u["add"], Add, ("add", u)))
    if include_top:
        specs += [("global_average_pooling2d", GlobalAveragePooling2D, ("pool", None)),
                  ("predictions", Dense, ("dense", None))]
    elif pooling == "avg":
        specs.append(("global_average_pooling2d", GlobalAveragePooling2D, ("pool", None)))
    elif pooling == "max":
        specs.append(("global_max_pooling2d", GlobalMaxPooling2D, ("maxpool", None)))
    return specs


class _Graph:
    """Dataflow view of a _core.Model: consumers per tensor, pass-through ops skipped."""

    def __init__(self, core, where):
        self.core = core
        self.where = where
        self.consumers = {}
        for op in core.ops:
            for t in op["inputs"]:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(op)

    def real_consumers(self, t):
        """Non-pass-through ops reading `t` (through RESHAPE / (DE)QUANTIZE chains), with the
        tensor each actually reads."""
        out, stack, seen = [], [t], set()
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            for op in self.consumers.get(u, []):
                if op["type"] in _PASS_THROUGH:
                    stack.append(op["outputs"][0])
                else:
                    out.append((op, u))
        return out

    def fail(self, msg):
        raise ValueError(f"{self.where}: this .tflite graph does not have Keras' MobileNetV2 structure, so its "
                         f"layers cannot be listed: {msg}")

    def match_conv(self, t, u):
        """The op that computes unit `u` from tensor `t`; checks type, stride, kernel, activation."""
        want = "DEPTHWISE_CONV_2D" if u["depthwise"] else "CONV_2D"
        cands = [(op, x) for op, x in self.real_consumers(t) if op["type"] == want and op["inputs"][0] == x]
        if len(cands) != 1:
            self.fail(f"expected one {want} for Keras layer {u['conv']!r} reading tensor {t}, found "
                      f"{[op['type'] + '#' + str(op['index']) for op, _ in self.real_consumers(t)]}")
        op = cands[0][0]
        o = op["options"]
        kshape = self.core.tensors[op["inputs"][1]]["shape"]
        if (o.get("stride_h"), o.get("stride_w")) != (u["stride"], u["stride"]) or \
                tuple(kshape[1:3]) != (u["kernel"], u["kernel"]) or o.get("activation") != u["act"] or \
                o.get("padding") != "SAME":
            self.fail(f"op {op['index']} ({op['type']}, stride {o.get('stride_h')}, kernel {tuple(kshape[1:3])}, "
                      f"activation {o.get('activation')}, padding {o.get('padding')}) does not match Keras layer "
                      f"{u['conv']!r} (stride {u['stride']}, kernel {u['kernel']}x{u['kernel']}, activation "
                      f"{u['act']}, SAME)")
        if len(op["inputs"]) < 3 or op["inputs"][2] < 0:
            self.fail(f"op {op['index']} (Keras layer {u['conv']!r}) has no bias (folded batch norm expected)")
        return op

    def match_add(self, a, b, name):
        for op, _ in self.real_consumers(a):
            if op["type"] == "ADD" and set(self._canon(i) for i in op["inputs"]) == {self._canon(a), self._canon(b)}:
                return op
        self.fail(f"no ADD of tensors {a} and {b} for Keras layer {name!r}")

    def _canon(self, t):
        producer = getattr(self, "_producer", None)
        if producer is None:
            producer = self._producer = {op["outputs"][0]: op for op in self.core.ops}
        while t in producer and producer[t]["type"] in _PASS_THROUGH:
            t = producer[t]["inputs"][0]
        return t


def build_layers(owner):
    """Keras' layers of MobileNetV2 for `owner` (a MobileNetV2Model), in Keras' order.

    Returns:
      list of MobileNetV2Layer (154 for include_top=False, pooling=None; 155 with
      pooling; 156 with the top).

    Raises:
      ValueError: the graph does not have MobileNetV2's structure (names the file and
        the first op or tensor that does not match).
    """
    core = owner.model
    g = _Graph(core, owner.weights_path)
    # The map from units to ops, by dataflow from the input.
    unit_op = {}
    t = g._canon(core.inputs[0])
    for u in _units():
        if u["kind"] == "conv":
            op = g.match_conv(t, u)
            unit_op[id(u)] = op
            t = op["outputs"][0]
            continue
        t_in = t
        for v in u["units"]:
            op = g.match_conv(t, v)
            unit_op[id(v)] = op
            t = op["outputs"][0]
        if u["add"]:
            op = g.match_add(t_in, t, u["add"])
            unit_op[id(u)] = op
            t = op["outputs"][0]
    if g._canon(t) != g._canon(owner.feature_map_tensor):
        g.fail(f"the output of Keras layer 'out_relu' (tensor {t}) is not the feature map that feeds the "
               f"pooling (tensor {owner.feature_map_tensor})")
    producer = {op["outputs"][0]: op for op in core.ops}
    pool_op = producer.get(owner.feature_tensor)
    logits_op = producer.get(owner.logits_tensor)
    layers = []
    for name, cls, (role, u) in _layer_specs(owner.include_top, owner.pooling):
        if role == "input":
            layers.append(cls(name, owner))
        elif role == "conv":
            op = unit_op[id(u)]
            layers.append(cls(name, owner, op, kernel_tensor=op["inputs"][1]))
        elif role == "bn":
            op = unit_op[id(u)]
            layers.append(cls(name, owner, op, bias_tensor=op["inputs"][2]))
        elif role in ("relu", "pad", "add"):
            layers.append(cls(name, owner, unit_op[id(u)]))
        elif role == "pool":
            native = owner.include_top or owner._hw == owner._native_hw()
            layers.append(cls(name, owner, pool_op if native else None))
        elif role == "maxpool":
            layers.append(cls(name, owner))
        else:  # dense: the classifier conv
            layers.append(cls(name, owner, logits_op, kernel_tensor=logits_op["inputs"][1],
                              bias_tensor=logits_op["inputs"][2]))
    return layers
