"""``Sequential`` (Keras' ``models/sequential.py``): the layer stack, build,
compile, weights, summary and save. Training and inference (fit / evaluate /
predict) come from the ``Trainer`` mixin (``trainer.py``); the save format and
``load_model`` are in ``saving.py``.
"""
import warnings

import numpy as np

from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from ..layers.base import Layer
from ..layers.core import _new_seed
from . import saving
from .data_adapters import _is_dataset, _looks_unbatched, iter_dataset
from .trainer import Trainer


class Sequential(Trainer):
    """A linear stack of layers, Keras' ``keras.Sequential``.

    Args:
      layers (list of Layer | None): the layers, input first.
      name (str | None): model name.

    Attributes: ``layers``, ``optimizer``, ``loss``, ``metrics`` (after compile),
    ``history`` (after fit), ``last_fit_path`` ("feature_cache" | "per_batch"),
    ``stop_training`` (callbacks set it).
    """

    def __init__(self, layers=None, name=None):
        self.name = name or "sequential"
        self._layers = []
        self._build_shape = None
        for l in layers or []:
            self.add(l)
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self._metric_ids = []
        self.stop_training = False
        self.history = None
        self.last_fit_path = None
        self._rng = np.random.default_rng(_new_seed())  # layers.set_random_seed makes it reproducible

    # -- structure -----------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Appends `layer` (a Layer instance); ValueError otherwise."""
        if not isinstance(layer, Layer):
            raise ValueError(f"Sequential only accepts Layer instances. Received: {layer!r}")
        self._layers.append(layer)
        self._build_shape = None
        self._warn_rescaling_before_base()
        shape = self._fixed_input_shape()
        if shape is not None:
            self.build(shape)

    def _fixed_input_shape(self):
        """The input shape the layers fix, or None: the input_shape of the first layer that was
        built at construction (MobileNetV2, any built layer), reached through shape-preserving
        layers only (augmentation, Rescaling, Dropout). Keras builds a Sequential at construction
        when its first layer fixes the input shape; this also looks through the augmentation
        layers that usually come first, so ``summary()`` shows shapes and counts before ``fit``."""
        for l in self._layers:
            if l.built and getattr(l, "input_shape", None) is not None:
                return (None,) + tuple(l.input_shape[1:])
            if not l.preserves_shape:
                return None
        return None

    def _warn_rescaling_before_base(self):
        """Warns once per base when a Rescaling layer (possibly through augmentation layers) feeds
        a MobileNetV2 base with something other than [0, 255] -> [-1, 1] (``Rescaling(1/127.5,
        offset=-1)``, the TF tutorial's, is right and passes silently; ``Rescaling(1/255)`` is not)."""
        import warnings

        from ..applications.mobilenet_v2 import MobileNetV2Model
        from ..layers.core import Rescaling

        for i, l in enumerate(self._layers):
            if not isinstance(l, Rescaling):
                continue
            j = i + 1
            while j < len(self._layers) and self._layers[j].is_random:
                j += 1
            base = self._layers[j] if j < len(self._layers) else None
            if not isinstance(base, MobileNetV2Model) or getattr(base, "_scale_warned", False):
                continue
            lo, hi = l.offset, 255.0 * l.scale + l.offset
            if abs(lo + 1.0) <= 0.02 and abs(hi - 1.0) <= 0.02:
                continue
            base._scale_warned = True
            warnings.warn(f"Rescaling layer {l.name!r} (scale={l.scale:g}, offset={l.offset:g}) maps [0, 255] to "
                          f"[{lo:g}, {hi:g}] before {base.name!r}, which expects [-1, 1]. MobileNetV2 scales uint8 "
                          "images itself: remove the Rescaling layer, or use Rescaling(1/127.5, offset=-1) "
                          "(what `mobilenet_v2.preprocess_input` does).", UserWarning, stacklevel=3)

    def build(self, input_shape):
        """Builds every layer for `input_shape` (tuple, batch first, batch may be None)."""
        if not self._layers:
            raise ValueError("The Sequential model has no layers; add some first.")
        shape = (None,) + tuple(input_shape[1:])
        for l in self._layers:
            if not l.built:
                l.build(shape)
            shape = tuple(l.compute_output_shape(shape))
        self._build_shape = (None,) + tuple(input_shape[1:])

    @property
    def built(self):
        return self._build_shape is not None

    def _output_shapes(self):
        shape, out = self._build_shape, []
        for l in self._layers:
            shape = tuple(l.compute_output_shape(shape))
            out.append(shape)
        return out


    # -- compile ---------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Configures training (Keras' compile).

        Args:
          optimizer (str | Optimizer): "adam", "sgd", "rmsprop", "adamw" or an instance.
          loss (str | Loss): "sparse_categorical_crossentropy", "categorical_crossentropy",
            "binary_crossentropy" or an instance. Required.
          metrics (list | None): "accuracy" (resolved by the loss, Keras), metric names or instances.
        Raises ValueError for unknown identifiers or a missing loss.
        """
        if loss is None:
            raise ValueError("`loss` is required, e.g. loss='sparse_categorical_crossentropy'.")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        self._metric_ids = list(metrics)
        self.metrics = [metrics_module.get(m, self.loss) for m in metrics]
        # What was trainable when compiled (Keras' _compiled_trainable_state): fit / evaluate
        # warn when it has changed since, as Keras does.
        self._compiled_trainable_state = self._trainable_state()

    def _flatten_layers(self):
        """Every layer, nested ones (the base's Keras layers) included, model order."""
        return [m for l in self._layers for m in l._flatten_layers()]

    def _trainable_state(self):
        return {id(l): (l, bool(l.trainable)) for l in self._flatten_layers()}

    def _warn_if_trainable_state_changed(self):
        """UserWarning naming the layers whose ``trainable`` changed since compile()
        (Keras 3's ``Trainer._warn_if_trainable_state_changed``, its message); warns once per
        change. Keras 3.15 has this check but never reaches it (the call sits after the
        ``raise`` in ``_assert_compile_called``); tf.keras 2 warned "Discrepancy between
        trainable weights and collected trainable weights, did you set `model.trainable`
        without calling `model.compile` after ?". Either way fit still uses the current
        ``trainable`` flags here (our fit rebuilds its training plan on every call)."""
        old = getattr(self, "_compiled_trainable_state", None)
        if old is None:
            return
        now = self._trainable_state()
        changed = [l.name for k, (l, t) in now.items() if k not in old or old[k][1] != t]
        if changed:
            shown = changed if len(changed) <= 10 else changed[:10] + [f"... ({len(changed)} in all)"]
            warnings.warn("A layer's `trainable` state has changed since the model was compiled. Please "
                          "recompile your model (e.g. `model.compile(...)`) before calling `fit()` or "
                          f"`evaluate()` so the change takes effect. Changed layers: {shown}",
                          UserWarning, stacklevel=3)
            self._compiled_trainable_state = now

    # -- data plumbing -----------------------------------------------------------
    def _check_input_shape(self, x, name):
        """ValueError naming `name` when array `x` does not fit the built input shape."""
        if self.built and tuple(x.shape[1:]) != tuple(self._build_shape[1:]):
            want = tuple(self._build_shape[1:])
            hint = ""
            if _looks_unbatched(x, want):
                hint = f" This is one sample without the batch axis: pass {name}[None] (or np.expand_dims({name}, 0))."
            elif x.ndim == 4 and len(want) == 3 and x.shape[-1] == want[-1]:
                hint = (f" Resize the images to {want[:2]}: tt.data.load_img(path, target_size={want[:2]}) or "
                        f"tt.data.resize({name}, {want[:2]}).")
            raise ValueError(f"`{name}` must have shape (N,) + {want} to match the "
                             f"model's input {self._build_shape}. Received: {name}.shape={x.shape}.{hint}")

    def _ensure_built(self, x_or_ds):
        if self.built:
            if not _is_dataset(x_or_ds):
                self._check_input_shape(np.asarray(x_or_ds), "x")
            return
        if _is_dataset(x_or_ds):
            # Peek in file order: building must not consume an epoch of the dataset's shuffle state.
            for images, _ in iter_dataset(x_or_ds, file_order=True):
                self.build((None,) + tuple(np.asarray(images).shape[1:]))
                return
            raise ValueError("The dataset is empty.")
        x = np.asarray(x_or_ds)
        images = any(getattr(l, "expects_images", False) for l in self._layers)
        if images and _looks_unbatched(x, None):
            raise ValueError(f"The model takes batches of images (N, H, W, C); `x` looks like one image without "
                             f"the batch axis: pass x[None] (or np.expand_dims(x, 0)). Received: x.shape={x.shape}")
        try:
            self.build((None,) + tuple(x.shape[1:]))
        except (ValueError, IndexError, TypeError) as e:
            self._build_shape = None
            raise ValueError(f"The model cannot take `x` of shape {x.shape} (batch first): {e}") from None


    def __call__(self, x, training=False):
        """Forward pass on a NumPy batch (layers' own call)."""
        x = np.asarray(x)
        self._ensure_built(x)
        for l in self._layers:
            x = l(x, training=training)
        return x

    # -- weights -------------------------------------------------------------------------
    def get_weights(self):
        """All layers' weights (float32 copies), layer order then Keras order within a layer."""
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
        """Sets weights from a list like get_weights(); ValueError on a count or shape mismatch
        (nothing is changed then)."""
        weights = list(weights)
        counts = [len(l.get_weights()) for l in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(f"`weights` must be a list of {sum(counts)} arrays (like get_weights()). "
                             f"Received: {len(weights)}")
        i = 0
        pending = []
        for l, c in zip(self._layers, counts):
            cur = l.get_weights()
            for j in range(c):
                if np.shape(weights[i + j]) != cur[j].shape:
                    raise ValueError(f"`weights`[{i + j}] (layer {l.name!r}) must have shape {cur[j].shape}. "
                                     f"Received: {np.shape(weights[i + j])}")
            pending.append((l, weights[i:i + c]))
            i += c
        for l, w in pending:
            if w:
                l.set_weights(w)

    def count_params(self):
        return int(sum(l.count_params() for l in self._layers))

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn=None):
        """Prints a Keras-like table: layer (type), output shape, params; then total,
        trainable and non-trainable parameter counts. A model whose layers fix the input shape
        (a MobileNetV2 base first, possibly after augmentation layers) is built at construction;
        otherwise call fit / build first for shapes (unbuilt shapes print as '?')."""
        print_fn = print_fn or print
        shapes = self._output_shapes() if self.built else ["?"] * len(self._layers)
        rows = [(f"{l.name} ({type(l).__name__})", str(s), f"{l.count_params():,}") for l, s in zip(self._layers, shapes)]
        w = [max([len(r[i]) for r in rows] + [len(h)]) + 2 for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = "=" * sum(w)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * sum(w))
        print_fn("Layer (type)".ljust(w[0]) + "Output Shape".ljust(w[1]) + "Param #".rjust(w[2]))
        print_fn(line)
        for r in rows:
            print_fn(r[0].ljust(w[0]) + r[1].ljust(w[1]) + r[2].rjust(w[2]))
        print_fn(line)
        total = self.count_params()
        # Keras counts trainable_weights: a partly frozen base counts only its trainable layers'
        # (folded) kernels and biases; see applications/mobilenet_v2_layers.py for how folded
        # counts differ from Keras' (batch norm's 4 vectors vs 1 folded bias).
        trainable = sum(l._trainable_param_count() for l in self._layers)
        print_fn(f" Total params: {total:,}")
        print_fn(f" Trainable params: {trainable:,}")
        print_fn(f" Non-trainable params: {total - trainable:,}")
        print_fn("_" * sum(w))

    # -- save --------------------------------------------------------------------------------
    def save_weights(self, filepath):
        """Writes the weights (not the architecture) to `filepath` (Keras' ``save_weights``):
        ``.h5`` names as HDF5 (h5py), others as ``.npz``; the fixed pretrained base is not
        written. Format and errors: ``models/saving.py`` ``save_weights``."""
        saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Loads weights written by `save_weights` or ``ModelCheckpoint(save_weights_only=True)``
        into this model (same layers, built). Raises FileNotFoundError, ValueError naming the
        file and layer on a mismatch (nothing is changed then)."""
        saving.load_weights(self, filepath)

    def save(self, filepath):
        """Saves architecture, weights and compile config to a zip (format in
        ``models/saving.py``), atomically. The base is saved by reference (path + SHA-256).
        Raises ValueError when the model is not built."""
        saving.save_model(self, filepath)

    # -- export ------------------------------------------------------------------------------
    def export(self, filepath, format="litert", verbose=True, input_dtype="uint8", labels=None, quantize=None,
               representative_dataset=None):
        """Exports the inference graph for deployment (Keras 3's ``model.export``).

        Random layers and Dropout are left out (inference), the base, pooling, Dense
        layers and their activations are written with the model's current weights.

        Args:
          filepath (str | PathLike): the file to write.
          format: "litert" or "tflite" (a .tflite flatbuffer that runs in LiteRT /
            TFLite interpreters) or "onnx" (opset 13).
          verbose (bool): print the path and size written.
          input_dtype: "uint8" (default): the file takes RGB pixels uint8
            (N, H, W, 3) in [0, 255] and preprocesses them itself
            (``x / 127.5 - 1``); "float32": float32 (N, H, W, 3) already scaled to
            [-1, 1]. The batch dimension is dynamic.
          labels: class names stored in the file (list of str, one per output);
            default ``self.class_names`` when set. ``tflite-transfer classify
            model.tflite images...`` prints them.
          quantize: None (float32) or "int8" (litert only): post-training
            full-integer quantization like TensorFlow's converter (per-channel int8
            weights, activation ranges calibrated on `representative_dataset`).
          representative_dataset: with quantize="int8", an iterable of uint8 image
            batches (N, H, W, 3) or (images, labels) pairs (e.g. ~100 training images).

        Returns:
          int: bytes written.

        Raises:
          ValueError: unknown format, unbuilt model, int8 without a dataset, bad labels.
          NotImplementedError: a layer the exporter cannot write (named).
        """
        from ..export import export_model

        return export_model(self, filepath, format=format, input_dtype=input_dtype, labels=labels,
                            quantize=quantize, representative_dataset=representative_dataset, verbose=verbose)
