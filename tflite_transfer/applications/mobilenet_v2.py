"""MobileNetV2, ImageNet-pretrained, run by the C engine from a standard .tflite file.

Follows ``keras.applications.MobileNetV2`` / ``keras.applications.mobilenet_v2``
(Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018) with these differences, all forced by the pretrained ``.tflite`` files:

* Weights are the dequantized float32 weights of a quantized TFLite model (batch
  norm folded into the convolutions), run in float32 (no ``weights=None`` random
  init). ``model.layers`` lists Keras' layers as views on the folded ops (see
  ``mobilenet_v2_layers``); ``fit`` fine-tunes the trainable ones through the
  engine's backward pass (``models/finetune.py``).
* The classifier has **1001 outputs**: index 0 is "background", indices 1..1000
  are the ImageNet-1k classes in the usual order (Keras' index ``i`` is our
  ``i + 1``). ``decode_predictions`` knows this.
* Class ids returned by ``decode_predictions`` are the output index as a string
  (``"653"``), not WordNet ids, because the label file the models ship with has
  no WordNet ids; class names are the label file's lines ("military uniform").

Pretrained weights (``weights=``):

====================  ==========================================  ===========================
key                   file                                        what it is
====================  ==========================================  ===========================
``"imagenet"``        ``DEFAULT_IMAGENET_MODEL``                  the default below
``"imagenet_ptq"``    ``tf2_mobilenet_v2_1.0_224_ptq.tflite``     TF2 Keras MobileNetV2,
                                                                  post-training int8 (per
                                                                  channel) quantized
``"imagenet_quant"``  ``mobilenet_v2_1.0_224_quant.tflite``       TF-slim MobileNetV2,
                                                                  quantization-aware trained
                                                                  (uint8, per tensor)
``"imagenet_float"``  104 ``.npy`` files (``float_weights.py``)   TensorFlow's float
                                                                  MobileNetV2 1.0/224 (the
                                                                  ptq file's source), no
                                                                  classifier
====================  ==========================================  ===========================

A Keras ``.h5`` weights file (``keras_h5.py``) builds the network for any
``alpha`` and input size from the architecture (``architecture.py``).

Both are public Coral test data (Apache 2.0) at
``https://github.com/google-coral/test_data/raw/master/<file>``. They are found
(or downloaded with a progress bar and verified by SHA-256) under
``$TFLITE_TRANSFER_HOME/models`` (default ``~/.cache/tflite_transfer/models``).
The default is the ptq model, chosen by measured tf_flowers accuracy (the
README's flowers job, validation_split=0.2, seed=123): with augmentation it gave
0.905 against 0.891 for the quant model; without augmentation the two tie (mean
of 8 head seeds on cached features: 0.889 ptq, 0.890 quant). It is also the
architecture of ``keras.applications.MobileNetV2`` that Keras users know.
A 5-fold cross-validation repeated 3 times on all 2936 shared flower photos
(``benchmarks/weights_cv.py``) ties the three weight sets (ptq 0.8897, quant
0.8896, float 0.8906; fold spread ~0.01; float vs ptq paired p = 0.39), so the
default stays the ptq file, which has a classifier (the float weights have none).
"""
import os
import warnings

import numpy as np

from .. import _native
from ..layers.base import Layer

__all__ = ["MobileNetV2", "MobileNetV2Model", "preprocess_input", "decode_predictions",
           "DEFAULT_IMAGENET_MODEL", "WEIGHTS_REGISTRY", "LABELS_REGISTRY", "WEIGHTS_ALIASES",
           "weights_path", "labels_path"]

from ._dtypes import _INT8, DTYPES, _engine_precision  # noqa: F401  (mv.DTYPES stays public)
from .mobilenet_v2_layers import same_weights

# Re-exported: the registry and utilities are mobilenet_v2's public names too (Keras' layout).
from .imagenet_utils import (  # noqa: F401
    _CORAL, LABELS_REGISTRY, WEIGHTS_REGISTRY, DEFAULT_IMAGENET_MODEL, WEIGHTS_ALIASES,
    _POOLED_CHANNELS, FLOAT_WEIGHTS_KEY, _FLOAT_MODEL_FILE, float_weights_path, _registry_key,
    weights_path, labels_path, preprocess_input, _read_labels, decode_predictions,
)

_PASS_THROUGH = ("RESHAPE", "QUANTIZE", "DEQUANTIZE")


def _find_features(core):
    """Graph analysis: returns (feature_map, pooled, logits) tensor indices.

    pooled = the output of the global MEAN / AVERAGE_POOL_2D whose result feeds
    (possibly through RESHAPE / QUANTIZE / DEQUANTIZE) the classifier, a CONV_2D
    or FULLY_CONNECTED; feature_map = that pool's input; logits = the
    classifier's output (None for a graph whose last op, a graph output, is the
    global MEAN: a base without classifier). Raises ValueError if the graph has
    no such structure.
    """
    ops = core.ops
    consumers = {}
    for op in ops:
        for t in op["inputs"]:
            consumers.setdefault(t, []).append(op)
    for op in reversed(ops):
        if op["type"] not in ("MEAN", "AVERAGE_POOL_2D"):
            continue
        frontier, seen = [op["outputs"][0]], set()
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            for c in consumers.get(t, []):
                if c["type"] in ("CONV_2D", "FULLY_CONNECTED") and c["inputs"][0] == t:
                    return op["inputs"][0], op["outputs"][0], c["outputs"][0]
                if c["type"] in _PASS_THROUGH:
                    frontier.append(c["outputs"][0])
    last = ops[-1] if ops else None
    if last is not None and last["type"] == "MEAN" and last["outputs"][0] in core.outputs:
        # A base without a classifier (assembled float weights, Keras .h5 files without the top).
        return last["inputs"][0], last["outputs"][0], None
    raise ValueError("Cannot find the pooled feature vector: no global MEAN / AVERAGE_POOL_2D op feeds a "
                     "CONV_2D or FULLY_CONNECTED classifier in this model.")


_UNSET = object()


class MobileNetV2Model(Layer):
    """A pretrained MobileNetV2 as a Keras-like model/layer; build it with `MobileNetV2`.

    Callable (``model(x)``), usable as the first layer of a ``Sequential``.

    Attributes:
      model (tflite_transfer._core.Model): the loaded graph (ops, tensors).
      weights_path (str): the .tflite file.
      input_shape (tuple): (None, H, W, 3).
      output_shape (tuple): (None, h, w, 1280) for include_top=False, pooling=None
        (h = ceil(H / 32)); (None, 1280) with pooling; (None, 1001) with the top.
      include_top (bool), pooling (None | "avg" | "max"), classes (int).
      trainable (bool): default True as in Keras; set False to freeze it in a
        Sequential. Setting it sets every layer in ``layers`` (Keras' 154 layers
        without the top); ``fine_tune_from(100)`` (or the tutorial's loop over
        ``layers[:100]``) freezes the bottom. Fine-tuning trains the folded
        kernels and biases (batch norm in inference mode; see
        ``mobilenet_v2_layers``); ``trainable_op_masks()`` and
        ``first_trainable_op()`` give the engine what trains.
      feature_map_tensor, feature_tensor, logits_tensor, probabilities_tensor (int):
        tensor indices of the last feature map (7x7x1280 at 224), the pooled
        1280-d features, the classifier output before softmax, the model output.
    """

    expects_images = True

    def __init__(self, model_path, input_shape=(224, 224, 3), include_top=True, pooling=None,
                 classes=1001, name=None, weights=None, trainable=True, classifier_activation="softmax",
                 dtype=None):
        self._layers = None
        super().__init__(name=name, trainable=trainable)
        self.dtype_policy, self._precision = _engine_precision(dtype)
        if self._precision in _INT8 and include_top:
            raise ValueError(f"dtype={self._precision!r} computes features only (the classifier and softmax run in float "
                             "elsewhere): use include_top=False with pooling='avg', 'max' or None. "
                             f"Received: include_top={include_top!r}")
        self.weights_path = os.fspath(model_path)
        self._weights_arg = weights if weights is not None else self.weights_path
        with open(self.weights_path, "rb") as f:
            data = f.read()
        self.model = _native._core.Model(data, name=self.weights_path)
        self.feature_map_tensor, self.feature_tensor, self.logits_tensor = _find_features(self.model)
        self.probabilities_tensor = self.model.outputs[0]
        self.include_top = bool(include_top)
        if self.include_top and self.logits_tensor is None:
            raise ValueError(f"{self.weights_path} has no classifier (e.g. the float ImageNet weights, whose logits "
                             "kernel is not published, or a Keras file saved without the top): use "
                             "include_top=False.")
        if classifier_activation not in ("softmax", None):
            raise ValueError("`classifier_activation` must be 'softmax' or None (logits) with the pretrained "
                             f"classifier. Received: classifier_activation={classifier_activation!r}")
        self.classifier_activation = classifier_activation
        # The output with the top: probabilities (softmax) or the classifier's logits (None, as Keras).
        self._top_tensor = self.probabilities_tensor if classifier_activation == "softmax" else self.logits_tensor
        n_out = int(self.model.tensors[self.probabilities_tensor]["shape"][-1])
        if self.include_top and classes != n_out:
            raise ValueError(f"With include_top=True and pretrained weights, `classes` must be {n_out} "
                             f"(the model's outputs; index 0 = background). Received: classes={classes!r}")
        self.pooling = pooling
        self.classes = int(classes)
        h, w, c = input_shape
        self._hw = (int(h), int(w))
        self.input_shape = (None, int(h), int(w), int(c))
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True
        self._input_quant = None
        if self._precision in _INT8:
            q = self.model.tensors[self.model.inputs[0]]["quantization"]
            if q and len(q["scale"]) == 1:
                self._input_quant = (float(q["scale"][0]), int(q["zero_point"][0]))
            try:  # fails now, not at the first predict, for a file outside the int8 scheme
                self.model.run(np.zeros((1,) + self.input_shape[1:], np.float32), self.feature_map_tensor,
                               precision=self._precision)
            except ValueError as e:
                raise ValueError(f"dtype={self._precision!r} cannot run {os.path.basename(self.weights_path)} on its own "
                                 f"quantization: {e}") from e

    # -- Keras' layers, trainable, fine-tuning masks -----------------------------
    @property
    def layers(self):
        """Keras' MobileNetV2 layers, in Keras' order with Keras' names (list of
        ``mobilenet_v2_layers.MobileNetV2Layer``; 154 for include_top=False), each a
        view on the .tflite op it was folded into. See
        ``tflite_transfer.applications.mobilenet_v2_layers`` for what ``trainable``
        means on a batch-norm, ReLU, padding or Add layer (batch norm is folded).

        Raises ValueError (naming the file) if the graph is not MobileNetV2's."""
        if self._layers is None:
            from .mobilenet_v2_layers import build_layers
            layers = build_layers(self)
            for l in layers:
                l.trainable = self._trainable
            self._layers = layers
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or at position `index` (Keras' get_layer); ValueError otherwise."""
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(layers) <= index < len(layers):
                raise ValueError(f"`index` must be an int in [0, {len(layers)}). Received: index={index!r}")
            return layers[int(index)]
        for l in layers:
            if l.name == name:
                return l
        raise ValueError(f"No such layer: {name!r}. Existing layers are: {[l.name for l in layers]}.")

    @property
    def trainable(self):
        """bool. Setting it sets every layer of ``layers`` too, as Keras does; with
        ``trainable = False`` nothing in the base trains, whatever its layers say."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        if self._layers is not None:
            for l in self._layers:
                l.trainable = self._trainable

    def fine_tune_from(self, fine_tune_at):
        """The tutorial's recipe: ``base.trainable = True`` then
        ``for layer in base.layers[:fine_tune_at]: layer.trainable = False``.

        Args:
          fine_tune_at (int): index in ``layers`` of the first trainable layer,
            0 <= fine_tune_at < len(layers) (0: the whole network; 100: from
            ``block_11_expand_relu``, i.e. block 11's depthwise on, as in Keras).

        Returns:
          self.

        Raises:
          ValueError: `fine_tune_at` is not an int in that range.
        """
        n = len(self.layers)
        if isinstance(fine_tune_at, bool) or not isinstance(fine_tune_at, (int, np.integer)) or \
                not 0 <= fine_tune_at < n:
            raise ValueError(f"`fine_tune_at` must be an int in [0, {n}) (an index into the {n} layers of "
                             f"{self.name!r}). Received: fine_tune_at={fine_tune_at!r}")
        self.trainable = True
        for l in self._layers[:int(fine_tune_at)]:
            l.trainable = False
        return self

    def trainable_op_masks(self):
        """What may train, per .tflite op: the interface of the C training plan.

        Returns:
          dict {op index (int): (kernel_trainable (bool), bias_trainable (bool))} with one
          entry for every op that has Keras weights (the 52 convolutions of the base, plus
          the classifier with include_top=True). The kernel is trainable when
          ``self.trainable`` and the op's Conv2D / DepthwiseConv2D layer is; the bias when
          ``self.trainable`` and its BatchNormalization layer is (both: the Dense layer).
        """
        masks = {}
        for l in self.layers:
            if l.op_index is None or (l.kernel_tensor is None and l.bias_tensor is None):
                continue
            k, b = masks.get(l.op_index, (False, False))
            on = self._trainable and l.trainable
            if l.kernel_tensor is not None:
                k = on
            if l.bias_tensor is not None:
                b = on
            masks[l.op_index] = (k, b)
        return masks

    def first_trainable_op(self):
        """The lowest .tflite op index with a trainable kernel or bias (int), or None when
        nothing in the base trains: the boundary below which the base runs forward only."""
        ops = [i for i, (k, b) in self.trainable_op_masks().items() if k or b]
        return min(ops) if ops else None

    @property
    def trainable_weights(self):
        """Float32 copies of the trainable weights, layer order (Keras layout; see ``layers``)."""
        if not self._trainable:
            return []
        return [w for l in self.layers if l.trainable for w in l.get_weights()]

    @property
    def non_trainable_weights(self):
        """Float32 copies of the weights that do not train, layer order (Keras layout)."""
        return [w for l in self.layers if not (self._trainable and l.trainable) for w in l.get_weights()]

    def _flatten_layers(self):
        try:
            return [self] + self.layers
        except ValueError:  # not MobileNetV2's structure: no Keras layers to list
            return [self]

    def _trainable_param_count(self):
        """Number of trainable scalar weights (folded; see ``layers``)."""
        if not self._trainable:
            return 0
        try:
            layers = self.layers
        except ValueError:  # not MobileNetV2's structure: all or nothing
            return self.count_params()
        return int(sum(l.count_params() for l in layers if l.trainable))

    # -- shapes ---------------------------------------------------------------
    def build(self, input_shape):
        """Checks `input_shape` ((None, H, W, 3)) against the shape the model was
        built for (it is built at construction); ValueError if they differ."""
        if tuple(input_shape)[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.name!r} was built for input_shape={self.input_shape}; pass "
                             f"input_shape={tuple(input_shape)[1:]} to MobileNetV2() instead. "
                             f"Received: input_shape={tuple(input_shape)}")
        self.built = True

    def compute_output_shape(self, input_shape):
        """Output shape (batch None) for `input_shape` (None, H, W, 3) (tuple)."""
        _, h, w, _ = input_shape
        if self.include_top:
            shp = self.model.output_shape(self._top_tensor, batch=1, height=h, width=w)
            return (None, int(shp[-1]))
        shp = self.model.output_shape(self.feature_map_tensor, batch=1, height=h, width=w)
        if self.pooling is None:
            return (None,) + tuple(shp[1:])
        return (None, shp[-1])

    # -- input checks ---------------------------------------------------------
    def _prepare(self, x):
        """Validates a batch; returns float32 C-contiguous (N, H, W, 3), preprocessed."""
        if x is None or isinstance(x, (str, bytes, dict)):  # np.asarray would make a 0-d object array of it
            hint = " (a path? load photos with `tt.data.load_img(path, target_size=...)`)" if isinstance(
                x, (str, bytes)) else ""
            raise ValueError(f"`x` must be an array of images (N, H, W, 3). Received: x of type {type(x).__name__}"
                             + hint)
        if not isinstance(x, (np.ndarray, list, tuple)) and hasattr(x, "__iter__"):
            raise ValueError("`x` must be an array of images; for an ImageDataset or a generator, put the base "
                             "in a Sequential (`tt.Sequential([base]).predict(ds)`) or pass `ds.as_numpy()[0]`. "
                             f"Received: x of type {type(x).__name__}")
        try:
            x = np.asarray(x)
        except ValueError as err:  # a ragged list: images of different sizes
            raise ValueError("`x` must be a batch of equally sized images (N, H, W, 3); resize them first "
                             f"(`tt.data.load_img(path, target_size=...)`). Received: a {type(x).__name__} "
                             f"NumPy cannot stack ({err})") from None
        want = self.input_shape[1:]
        if x.dtype == bool or not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise ValueError("`x` must be uint8 RGB in [0, 255] (preprocessed inside) or float already "
                             "scaled to [-1, 1] by `mobilenet_v2.preprocess_input`. "
                             f"Received: x.shape={x.shape}, x.dtype={x.dtype}")
        if x.ndim == 3 and x.shape == want:
            raise ValueError("`x` must be a batch of images (N, H, W, 3); this looks like a single image. "
                             "Add the batch axis: x[None] or np.expand_dims(x, 0). "
                             f"Received: x.shape={x.shape}, x.dtype={x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"`x` must be a 4D array (N, {want[0]}, {want[1]}, {want[2]}). "
                             f"Received: x.shape={x.shape}, x.dtype={x.dtype}")
        if x.shape[1:] != want:
            raise ValueError(f"`x` must have shape (N, {want[0]}, {want[1]}, {want[2]}) for this model "
                             f"(built with input_shape={want}). Received: x.shape={x.shape}, x.dtype={x.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"`x` is an empty batch. Received: x.shape={x.shape}, x.dtype={x.dtype}")
        if x.dtype == np.uint8:
            if self._input_quant is not None:
                # int8: the file's own input dequantization, scale * (q - zero_point), as TFLite does
                s, z = self._input_quant
                return np.ascontiguousarray((x.astype(np.float32) - np.float32(z)) * np.float32(s))
            return np.ascontiguousarray(preprocess_input(x), dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("`x` contains NaN or infinite values. "
                             f"Received: x.shape={x.shape}, x.dtype={x.dtype}")
        self._check_scale(x)
        return x

    def _check_scale(self, x):
        """Warns (once per model) when a float batch does not look like ``preprocess_input``'s
        output in [-1, 1]: raw [0, 255] values, [0, 1] values (``image / 255``, ``Rescaling(1/255)``),
        or values in [-1.008, -0.992] (``preprocess_input`` applied twice). Each costs accuracy
        silently otherwise (on grace_hopper.bmp the top-1 leaves "military uniform")."""
        if getattr(self, "_scale_warned", False):
            return
        lo, hi = float(x.min()), float(x.max())
        what = None
        if hi > 1.5 or lo < -1.5:
            what = "looks like raw pixels in [0, 255]"
        elif lo >= 0.0 and 0.0 < hi <= 1.0:
            what = "looks like images scaled to [0, 1] (image / 255 or Rescaling(1/255))"
        elif hi > lo and lo >= -1.0 - 1.5 / 127.5 and hi <= -1.0 + 1.5 / 127.5:
            what = "looks like `preprocess_input` applied twice"
        if what is None:
            return
        self._scale_warned = True
        warnings.warn(f"{self.name!r}: `x` is float with values in [{lo:g}, {hi:g}], which {what}, but "
                      "MobileNetV2 expects float inputs in [-1, 1]. Pass uint8 images (scaled inside), or "
                      "scale float RGB in [0, 255] once with "
                      "`tflite_transfer.applications.mobilenet_v2.preprocess_input`. (Warned once per model.)",
                      UserWarning, stacklevel=4)

    # -- compute ----------------------------------------------------------------
    def _forward(self, xb, pooling):
        """One engine run on a prepared batch (N, H, W, 3) float32."""
        run = self.model.run if self._precision == "float32" else \
            (lambda x, t: self.model.run(x, t, precision=self._precision))
        if self.include_top:
            y = run(xb, self._top_tensor)
            return y.reshape(y.shape[0], -1)  # logits come as (N, 1, 1, 1001) from a 1x1 conv
        if pooling is None:
            return run(xb, self.feature_map_tensor)
        if pooling == "avg" and self._hw == self._native_hw():
            # The model's own pooling op (MEAN / AVERAGE_POOL_2D) in the engine.
            y = run(xb, self.feature_tensor)
            return y.reshape(y.shape[0], -1)
        fmap = run(xb, self.feature_map_tensor)
        if pooling == "avg":
            # Other input sizes: a fixed-size AVERAGE_POOL_2D would not cover the map.
            return fmap.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
        return fmap.max(axis=(1, 2))

    def _native_hw(self):
        shp = self.model.tensors[self.model.inputs[0]]["shape"]
        return (int(shp[1]), int(shp[2]))

    def predict(self, x, batch_size=32, verbose=0, pooling=_UNSET):
        """Runs the model on `x` in batches of `batch_size`; returns float32 NumPy.

        Args:
          x: (N, H, W, 3) uint8 RGB (preprocessed inside: x / 127.5 - 1) or
            float (already preprocessed, in [-1, 1]; a UserWarning names
            `preprocess_input` when values go beyond +-1.5).
          batch_size (int >= 1): images per engine run; the last batch may be
            smaller (its engine is built once and cached too).
          verbose (int): 0 silent, 1 progress bar.
          pooling: None, "avg" or "max" to override the model's pooling for this
            call (features of a model built with pooling=None, for caching the
            pooled features of a frozen base); default: the model's own. Ignored
            when include_top=True.

        Returns:
          float32 ndarray: (N,) + output_shape[1:] (or (N, 1280) with a pooling override).

        Raises:
          ValueError: bad `x` (rank, shape, dtype, empty, NaN/inf) or `batch_size`.
        """
        pooling = self.pooling if pooling is _UNSET else pooling
        if pooling not in (None, "avg", "max"):
            raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}")
        x = self._prepare(x)
        n = x.shape[0]
        starts = range(0, n, int(batch_size))
        if verbose:
            from tqdm.auto import tqdm
            starts = tqdm(starts, unit="batch", desc=self.name)
        parts = [self._forward(x[s:s + batch_size], pooling) for s in starts]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def call(self, x, training=False):
        """Forward pass (Keras' ``call``); `training` has no effect (no dropout / batch norm left)."""
        return self.predict(x, batch_size=64)

    def __call__(self, x, training=False):
        return self.call(x, training=training)

    # -- weights ----------------------------------------------------------------
    def _needed_ops(self, output):
        """Ops the tensor `output` depends on, in op order."""
        producer = {op["outputs"][0]: op for op in self.model.ops}
        need, stack = set(), [output]
        while stack:
            t = stack.pop()
            op = producer.get(t)
            if op is None or op["index"] in need:
                continue
            need.add(op["index"])
            stack.extend(i for i in op["inputs"] if i >= 0)
        return [op for op in self.model.ops if op["index"] in need]

    def _output_dependency(self):
        return self._top_tensor if self.include_top else self.feature_map_tensor

    def get_weights(self):
        """Float32 copies of the weights and biases of the conv / depthwise / FC ops
        the output depends on, in op order (weights then bias for each op)."""
        out = []
        for op in self._needed_ops(self._output_dependency()):
            if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                for t in op["inputs"][1:]:
                    if t >= 0:
                        out.append(np.array(self.model.get_tensor(t), dtype=np.float32))
        return out

    def set_weights(self, weights):
        """Accepts only the model's own weights (the pretrained base is fixed).

        Raises ValueError if `weights` differ in count, shape or value."""
        if not same_weights(weights, self.get_weights()):
            raise ValueError(f"The weights of {self.name!r} come from {self.weights_path} and cannot be "
                             "changed (the .tflite base is fixed).")

    def count_params(self):
        """Number of scalar weights (float or quantized constants) the output depends on.

        Batch norm is folded into the convolutions in .tflite files, so this is
        smaller than Keras' count for the same architecture."""
        tensors = self.model.tensors
        seen, n = set(), 0
        for op in self._needed_ops(self._output_dependency()):
            for t in op["inputs"]:
                if t < 0 or t in seen:
                    continue
                info = tensors[t]
                if info["is_constant"] and (info["dtype"].startswith("float") or info["quantization"]):
                    seen.add(t)
                    n += int(np.prod(info["shape"]))
        return n

    def get_config(self):
        """Constructor arguments (JSON-serializable dict), Keras-style."""
        return {"name": self.name, "trainable": self.trainable, "input_shape": self.input_shape[1:],
                "include_top": self.include_top, "weights": self._weights_arg, "pooling": self.pooling,
                "classes": self.classes, "classifier_activation": self.classifier_activation,
                "dtype": self.dtype_policy}

    def inspect(self):
        """Summary of the graph: dict(model=the _core.Model, ops, tensors, inputs, outputs,
        feature_map_tensor, feature_tensor, logits_tensor, probabilities_tensor)."""
        m = self.model
        return dict(model=m, ops=m.ops, tensors=m.tensors, inputs=m.inputs, outputs=m.outputs,
                    feature_map_tensor=self.feature_map_tensor, feature_tensor=self.feature_tensor,
                    logits_tensor=self.logits_tensor, probabilities_tensor=self.probabilities_tensor)

    def __repr__(self):
        return (f"<MobileNetV2Model name={self.name!r} weights={os.path.basename(self.weights_path)!r} "
                f"include_top={self.include_top} pooling={self.pooling!r} output_shape={self.output_shape}>")


def _is_hdf5(path):
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _h5_model_path(path, alpha, include_top):
    """(path of the float .tflite built from Keras .h5 `path`, classes or None), cached by content."""
    from ..utils import atomic_write, cache_dir, sha256_of
    from . import architecture, keras_h5

    key = f"{sha256_of(path)[:16]}_{alpha:0.2f}_{'top' if include_top else 'notop'}"
    out = os.path.join(cache_dir(), "models", "keras_h5", f"mobilenet_v2_{key}.tflite")
    weights, classes = keras_h5.read_keras_h5(path, alpha=alpha, include_top=include_top)
    if not os.path.isfile(out):
        data = architecture.build_tflite(weights, alpha=alpha, include_top=include_top, classes=classes or 1000,
                                         description=f"MobileNetV2 {alpha} from {os.path.basename(path)}")
        with atomic_write(out) as f:
            f.write(data)
    return out, classes


def MobileNetV2(input_shape=None, include_top=True, weights="imagenet", pooling=None, classes=1001,
                name=None, alpha=1.0, input_tensor=None, classifier_activation="softmax", **kwargs):
    """Builds an ImageNet-pretrained MobileNetV2 (Keras' ``applications.MobileNetV2``).

    Args:
      input_shape (tuple | None): (H, W, 3); default (224, 224, 3). Other sizes
        (H, W >= 32, e.g. (160, 160, 3)) need include_top=False, as in Keras.
      include_top (bool): True: class probabilities (N, 1001), softmax, index 0 =
        "background". False: features (see `pooling`).
      weights: "imagenet" (DEFAULT_IMAGENET_MODEL), "imagenet_ptq",
        "imagenet_quant", "imagenet_float" (TensorFlow's float weights, no
        classifier: include_top=False only), the path (str / PathLike) of a
        MobileNetV2 .tflite, or the path of a Keras .h5 weights file
        (``keras.applications`` downloads or ``save_weights`` output, see
        ``keras_h5``): batch norm folded, the network built from the
        architecture for `alpha` and `input_shape` (include_top=True needs the
        file's classifier; any input size >= 32). None (Keras' random init) is
        not supported.
      pooling: with include_top=False: None -> (N, H/32, W/32, 1280) map
        (7x7 at 224), "avg" -> (N, 1280) global average, "max" -> (N, 1280)
        global max. Ignored when include_top=True (as in Keras).
      classes (int): must be the model's class count (1001) with include_top=True.
      name (str | None): default "mobilenetv2_1.00_<H>" as in Keras.
      alpha (float): Keras' width multiplier, 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4;
        other values than 1.0 need Keras .h5 weights of that width (the
        pretrained .tflite weights are 1.0).
      input_tensor: None only (there are no symbolic tensors here; pass `input_shape`).
      classifier_activation ("softmax" | None): with include_top=True, probabilities (default) or,
        with None, the classifier's logits (N, 1001), as Keras. Ignored when include_top=False.
      **kwargs: `trainable` (bool, default True); `dtype` (Keras' dtype-policy
        name): None or "float32" (default), "mixed_bfloat16" (convolutions in
        bfloat16 with float32 accumulation, outputs float32; needs AVX512_BF16 or
        AMX, else ValueError), "int8" (the file's own quantization on oneDNN
        int8 primitives; needs include_top=False and a quantized file, else
        ValueError: "imagenet_ptq" (int8 per-channel weights) runs as stored;
        "imagenet_quant" (uint8 per-tensor weights with zero points, which
        oneDNN's CPU convolutions cannot take) is converted once at build,
        exactly per output channel where it fits in int8, else requantized
        symmetric per channel; uint8 images are dequantized with the file's
        input scale and zero point), "int8_tflite" (as "int8", with TFLite's
        integer requantization, ADD and MEAN after oneDNN's exact int32
        accumulation: every int8 tensor of the ptq file, the pooled features
        included, equals LiteRT's reference kernels'; slower). Both int8 dtypes
        need a CPU with VNNI (AVX512_VNNI, AVX_VNNI or AMX), else ValueError.

    Returns:
      MobileNetV2Model.

    Raises:
      ValueError: weights=None, bad input_shape / pooling / classes, a model
        that cannot take the input size, a corrupt file (ModelFormatError), or a
        `dtype` this CPU lacks the instructions for (bf16, VNNI).
      FileNotFoundError: `weights` is a path that does not exist.
      OSError: "imagenet" weights not cached and the download failed (names the
        URL and the folder to place the file in).
    """
    trainable = kwargs.pop("trainable", True)
    dtype = kwargs.pop("dtype", None)
    _engine_precision(dtype)  # validate before loading anything
    if kwargs:
        raise TypeError(f"Unknown arguments: {sorted(kwargs)}")
    if input_tensor is not None:
        raise ValueError("`input_tensor` must be None: tflite_transfer has no symbolic tensors; pass "
                         f"`input_shape=(H, W, 3)` instead. Received: input_tensor={type(input_tensor).__name__}")
    if classifier_activation not in ("softmax", None):
        raise ValueError("`classifier_activation` must be 'softmax' or None (logits) with the pretrained classifier. "
                         f"Received: classifier_activation={classifier_activation!r}")
    if weights is None:
        raise ValueError("`weights=None` (random initialization) is not supported: tflite_transfer runs "
                         "pretrained .tflite models only. Use weights='imagenet' or the path of a .tflite file.")
    if input_shape is None:
        input_shape = (224, 224, 3)
    try:
        shape = tuple(int(s) for s in input_shape)
        ok = len(shape) == 3 and tuple(input_shape) == shape
    except (TypeError, ValueError):
        ok = False
    if not ok or shape[2] != 3 or shape[0] < 32 or shape[1] < 32:
        raise ValueError("`input_shape` must be (H, W, 3) with H, W >= 32 (RGB images, as Keras' MobileNetV2). "
                         f"Received: input_shape={input_shape!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    from .architecture import ALPHAS

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or float(alpha) not in ALPHAS:
        raise ValueError(f"`alpha` must be one of {ALPHAS}. Received: alpha={alpha!r}")
    alpha = float(alpha)
    h5 = isinstance(weights, (str, os.PathLike)) and _is_hdf5(os.fspath(weights))
    if alpha != 1.0 and not h5:
        raise ValueError("`alpha` must be 1.0 for the pretrained .tflite weights (MobileNetV2 1.0); other widths "
                         "need Keras .h5 weights of that width (weights='path/to/file.h5'). "
                         f"Received: alpha={alpha!r}, weights={weights!r}")
    if include_top and shape[:2] != (224, 224) and not h5:
        raise ValueError("With include_top=True the pretrained classifier needs input_shape=(224, 224, 3), "
                         f"as in Keras. Use include_top=False for other sizes. Received: input_shape={input_shape!r}")

    if h5:
        path, h5_classes = _h5_model_path(os.fspath(weights), alpha, include_top)
        if include_top and classes == 1001:
            classes = h5_classes  # the default: the file's classifier
    elif isinstance(weights, str) and _registry_key(weights) is not None:
        path = weights_path(weights)
    elif isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if os.path.isdir(path):
            raise IsADirectoryError(f"`weights` must be a .tflite file, but {path!r} is a folder.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`weights` file not found: {path!r}. Pass 'imagenet', 'imagenet_ptq', "
                                    "'imagenet_quant' or the path of an existing .tflite file.")
    else:
        raise ValueError("`weights` must be 'imagenet', 'imagenet_ptq', 'imagenet_quant' or the path of a "
                         f".tflite file. Received: weights={weights!r}")

    if name is None:
        name = f"mobilenetv2_{alpha:0.2f}_{shape[0]}"
    m = MobileNetV2Model(path, input_shape=shape, include_top=include_top, pooling=pooling, classes=classes,
                         name=name, weights=weights if isinstance(weights, str) else path, trainable=trainable,
                         classifier_activation=classifier_activation, dtype=dtype)
    return m
