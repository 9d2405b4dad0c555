"""The Layer base class shared by every layer (Keras' ``keras.layers.Layer`` subset).

Arrays are NumPy, batch-first (NHWC for images). A layer maps a batch to a batch:
``y = layer(x, training=False)``. Layers with weights keep them as float32 NumPy
arrays in ``self.weights`` (a list, Keras order) and say which are trainable.
"""
import numpy as np


class Layer:
    """Base class of all layers.

    Attributes:
      name (str): unique-ish name, default from the class name.
      trainable (bool): whether `fit` updates this layer's weights.
      is_random (bool): class attribute; True for layers that change their output
        between calls in training (augmentation, Dropout). Sequential uses it to
        decide whether the features of a frozen base can be cached.
    """

    is_random = False
    #: True for layers whose output shape is their input shape (augmentation except RandomCrop,
    #: Rescaling, Dropout): Sequential looks through them for a layer that fixes the input shape.
    preserves_shape = False
    #: True for layers that take batches of images (N, H, W, C) (augmentation, 2D poolings, bases):
    #: Sequential then names a missing batch axis instead of failing inside a layer.
    expects_images = False
    _counters = {}

    def __init__(self, name=None, trainable=True):
        if name is None:
            base = _snake(type(self).__name__)
            n = Layer._counters.get(base, 0)
            Layer._counters[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
        self.name = name
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape = None

    @property
    def trainable(self):
        """bool: whether `fit` updates this layer's weights (set with any value; stored as
        ``bool(value)``, as Keras' ``Layer.trainable`` does, so ``"yes"`` cannot slip through)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    # -- shape & build ------------------------------------------------------
    def build(self, input_shape):
        """Creates weights for `input_shape` (tuple with None batch). Default: none."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        """Output shape (tuple, batch None) for `input_shape`. Default: unchanged."""
        return tuple(input_shape)

    # -- compute ------------------------------------------------------------
    def call(self, x, training=False):
        """Forward pass on a NumPy batch. Subclasses override."""
        return x

    def __call__(self, x, training=False):
        x = np.asarray(x)
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        return self.call(x, training=training)

    # -- weights --------------------------------------------------------------
    def get_weights(self):
        """List of float32 NumPy arrays (copies), Keras order."""
        return []

    def set_weights(self, weights):
        """Sets weights from a list like get_weights()'s; ValueError on a count/shape mismatch."""
        if list(weights):
            raise ValueError(f"Layer {self.name!r} has no weights. Received: {len(list(weights))} arrays.")

    def count_params(self):
        """Number of scalar weights (int)."""
        return int(sum(int(np.prod(w.shape)) for w in self.get_weights()))

    @property
    def trainable_weights(self):
        """The weights `fit` updates (float32 copies, Keras order): all of them when
        ``trainable``, else none. Layers with sub-layers (the MobileNetV2 base) override."""
        return self.get_weights() if self.trainable else []

    @property
    def non_trainable_weights(self):
        """The weights `fit` leaves alone (float32 copies, Keras order)."""
        return [] if self.trainable else self.get_weights()

    def _trainable_param_count(self):
        """Number of trainable scalar weights (int), for summary(); Keras counts
        ``trainable_weights``."""
        return self.count_params() if self.trainable else 0

    def _flatten_layers(self):
        """This layer and its sub-layers (Keras' ``_flatten_layers``), e.g. for the
        'trainable changed since compile' check."""
        return [self] + [l for sub in getattr(self, "_layers", None) or [] for l in sub._flatten_layers()]

    def get_config(self):
        """Constructor arguments as a JSON-serializable dict (for save / load_model)."""
        return {"name": self.name, "trainable": self.trainable}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
