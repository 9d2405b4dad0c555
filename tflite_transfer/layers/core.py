"""Core Keras layers: Dense, Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D,
Flatten, Rescaling, and the L2 kernel regularizer.

Arrays are NumPy, batch-first, float32 out. Dense runs its inner product in C
(oneDNN, ``tflite_transfer._core.DensePlan``); inside ``Sequential.fit`` the
head (Dense / Dropout) is trained by the C trainer (see ``models/head.py``).
"""
import math
import threading

import numpy as np

from .. import _core
from .base import Layer

_ACTIVATIONS = (None, "linear", "relu", "softmax", "sigmoid")
_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seeds every random draw of the package, ``keras.utils.set_random_seed``'s contract.

    Seeds Python's ``random``, NumPy's global generator (``np.random.seed``: e.g. the seed
    ``image_dataset_from_directory(seed=None)`` draws, as in Keras) and the package generator
    from which every random object created afterwards without its own `seed` takes one: weight
    initializers (Dense), Dropout masks, the augmentation layers (RandomFlip, RandomRotation, ...)
    and fit's shuffling. Two runs of the same script after ``set_random_seed(s)`` give the same
    history and weights. Also available as ``tflite_transfer.utils.set_random_seed``.

    Args:
      seed (int): in [0, 2**32). Raises ValueError otherwise.
    """
    import random

    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an int in [0, 2**32). Received: seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    _rng = np.random.default_rng(int(seed))


def _new_seed():
    return int(_rng.integers(0, 2**63 - 1))


class L2:
    """Keras' ``regularizers.L2(l2=0.01)``: adds ``l2 * sum(kernel ** 2)`` to the loss.

    Args:
      l2 (float >= 0): the factor. Raises ValueError if negative or not finite.
    """

    def __init__(self, l2=0.01):
        l2 = float(l2)
        if not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"`l2` must be a finite float >= 0. Received: l2={l2}")
        self.l2 = l2

    def __call__(self, w):
        return self.l2 * float(np.sum(np.square(np.asarray(w, np.float64))))

    def get_config(self):
        return {"l2": self.l2}

    def __repr__(self):
        return f"L2(l2={self.l2})"


def _get_regularizer(r):
    if r is None or isinstance(r, L2):
        return r
    if isinstance(r, str) and r.lower() == "l2":
        return L2()
    if isinstance(r, dict) and set(r) == {"l2"}:
        return L2(**r)
    raise ValueError(f"`kernel_regularizer` must be None, 'l2' or an L2 instance. Received: {r!r}")


class _PlanCache:
    """A few DensePlans keyed by batch size (oneDNN primitives have fixed shapes)."""

    def __init__(self, limit=4):
        self.limit = limit
        self.plans = {}
        # Layers are shared between threads (predict from several threads); each
        # DensePlan serializes its own runs in C, this lock guards the dict.
        self._lock = threading.Lock()

    def get(self, batch, n_in, n_out):
        key = (batch, n_in, n_out)
        with self._lock:
            p = self.plans.get(key)
            if p is None:
                if len(self.plans) >= self.limit:
                    self.plans.pop(next(iter(self.plans)))
                p = self.plans[key] = _core.DensePlan(batch, n_in, n_out)
            return p


def _apply_activation(name, z):
    """Applies `name` to float32 C-contiguous z in place (C kernels); returns z."""
    if name == "relu":
        _core.relu_forward(z, z)
    elif name == "softmax":
        _core.softmax_forward(z, z)
    elif name == "sigmoid":
        _core.sigmoid_forward(z, z)
    return z


class Dense(Layer):
    """Densely connected layer, Keras' ``layers.Dense``: ``activation(x @ kernel + bias)``.

    Args:
      units (int >= 1): output features.
      activation (None | "linear" | "relu" | "softmax" | "sigmoid").
      use_bias (bool): whether to add a bias (a zero bias when False).
      kernel_regularizer (None | "l2" | L2): L2 penalty on the kernel.
      seed (int | None): seed of the Glorot-uniform kernel initializer (bias: zeros).
      name, trainable: see Layer.

    Input: float (N, in_features); output float32 (N, units). The inner product
    runs in oneDNN. Weights: ``[kernel (in, units), bias (units,)]`` float32.

    Raises:
      ValueError: bad units / activation / regularizer, or input whose last
        dimension differs from the built one.
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_regularizer=None, seed=None,
                 name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"`units` must be an integer >= 1. Received: units={units!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {_ACTIVATIONS}. Received: activation={activation!r}")
        self.units = int(units)
        self.activation = None if activation == "linear" else activation
        self.use_bias = bool(use_bias)
        self.kernel_regularizer = _get_regularizer(kernel_regularizer)
        self.seed = seed
        self.kernel = None
        self.bias = None
        self._plans = _PlanCache()

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"Dense {self.name!r} expects inputs (N, features). Received: input_shape={input_shape}")
        n_in = int(input_shape[-1])
        rng = np.random.default_rng(self.seed) if self.seed is not None else np.random.default_rng(_new_seed())
        limit = math.sqrt(6.0 / (n_in + self.units))  # Glorot uniform, Keras' default
        self.kernel = np.ascontiguousarray(rng.uniform(-limit, limit, (n_in, self.units)).astype(np.float32))
        self.bias = np.zeros(self.units, np.float32)
        super().build(input_shape)

    @property
    def weights(self):
        return [self.kernel, self.bias] if self.built else []

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x, training=False):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.kernel.shape[0]:
            raise ValueError(f"Dense {self.name!r} expects x of shape (N, {self.kernel.shape[0]}). "
                             f"Received: x.shape={x.shape}")
        y = np.empty((x.shape[0], self.units), np.float32)
        if x.shape[0] == 0:
            return y
        self._plans.get(x.shape[0], x.shape[1], self.units).forward(x, self.kernel, self.bias, y)
        return _apply_activation(self.activation, y)

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        if not self.built:
            raise ValueError(f"Layer {self.name!r} is not built yet; call the model on data or build() first.")
        if len(weights) != 2:
            raise ValueError(f"Layer {self.name!r} expects 2 weight arrays [kernel, bias]. Received: {len(weights)}")
        for cur, new, what in zip(self.weights, weights, ("kernel", "bias")):
            new = np.asarray(new)
            if new.shape != cur.shape:
                raise ValueError(f"Layer {self.name!r}: {what} must have shape {cur.shape}. Received: {new.shape}")
            if not np.all(np.isfinite(new)):
                raise ValueError(f"Layer {self.name!r}: {what} contains NaN or Inf.")
            cur[...] = new  # in place: optimizer slots stay attached
        if not self.use_bias:
            self.bias[...] = 0

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                   kernel_regularizer=self.kernel_regularizer.get_config() if self.kernel_regularizer else None,
                   seed=self.seed)
        return cfg


class Dropout(Layer):
    """Inverted dropout, Keras' ``layers.Dropout(rate, noise_shape=None, seed=None)``.

    In training each element is zeroed with probability `rate` and the rest are
    scaled by 1 / (1 - rate); at inference it is the identity. Runs in C with a
    counter-based generator (same seed, same mask).

    Args:
      rate (float in [0, 1)): drop probability. ValueError otherwise.
      seed (int | None): seed of the masks (None: from ``set_random_seed``'s generator).
    """

    is_random = True
    preserves_shape = True

    def __init__(self, rate, noise_shape=None, seed=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        rate = float(rate)
        if not (0.0 <= rate < 1.0):
            raise ValueError(f"`rate` must be in [0, 1). Received: rate={rate}")
        if noise_shape is not None:
            raise ValueError("Dropout: `noise_shape` is not supported; use None.")
        self.rate = rate
        self.seed = seed
        self._gen = np.random.default_rng(seed if seed is not None else _new_seed())

    def next_seed(self):
        """A fresh 63-bit seed for the next mask (int)."""
        return int(self._gen.integers(0, 2**63 - 1))

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty_like(x)
        mask = np.empty(x.shape, np.uint8)
        _core.dropout_forward(x, self.rate, self.next_seed(), y, mask)
        return y

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg


def _check_4d(layer, x):
    if x.ndim != 4:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} expects x of shape (N, H, W, C). "
                         f"Received: x.shape={x.shape}")


def _keras_name(base):
    """Keras-style unique default name ("global_average_pooling2d", "..._1"), sharing Layer's counters."""
    n = Layer._counters.get(base, 0)
    Layer._counters[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


class _GlobalPooling2D(Layer):
    """Shared parts of the global poolings (channels_last only)."""

    _default_name = None
    expects_images = True

    def __init__(self, data_format="channels_last", keepdims=False, name=None, trainable=True):
        super().__init__(name=name or _keras_name(self._default_name), trainable=trainable)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Only data_format='channels_last' is supported. Received: {data_format!r}")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, s):
        return (s[0], 1, 1, s[3]) if self.keepdims else (s[0], s[3])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(keepdims=self.keepdims)
        return cfg


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over H and W: (N, H, W, C) -> (N, C) float32 (keepdims: (N, 1, 1, C)). channels_last only."""

    _default_name = "global_average_pooling2d"

    def call(self, x, training=False):
        _check_4d(self, x)
        return np.mean(x, axis=(1, 2), dtype=np.float32, keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over H and W: (N, H, W, C) -> (N, C) float32 (keepdims: (N, 1, 1, C))."""

    _default_name = "global_max_pooling2d"

    def call(self, x, training=False):
        _check_4d(self, x)
        return np.max(x, axis=(1, 2), keepdims=self.keepdims).astype(np.float32, copy=False)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), dtype kept."""

    def compute_output_shape(self, s):
        if any(d is None for d in s[1:]):
            return (s[0], None)
        return (s[0], int(np.prod(s[1:])))

    def call(self, x, training=False):
        return np.reshape(x, (x.shape[0], -1))


class Rescaling(Layer):
    preserves_shape = True

    """``x * scale + offset`` as float32, Keras' ``layers.Rescaling`` (e.g. scale=1/127.5, offset=-1)."""

    def __init__(self, scale, offset=0.0, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, x, training=False):
        return np.asarray(x, np.float32) * np.float32(self.scale) + np.float32(self.offset)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(scale=self.scale, offset=self.offset)
        return cfg
