"""Image augmentation layers with Keras' names and semantics, computed by batched C kernels.

``RandomFlip``, ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``, ``RandomCrop``,
``RandomBrightness``, ``RandomContrast`` (``keras.layers``). Each is active only when called with
``training=True``; otherwise it returns its input unchanged (``RandomCrop`` center-crops and
resizes, as Keras does at inference).

Inputs are NHWC batches (N, H, W, C), or single images (H, W, C), of dtype uint8 or float32; the
dtype is preserved: uint8 results are rounded (half up) and saturated to [0, 255]; float32 results
are not clipped, except by RandomBrightness/RandomContrast, which clip to `value_range` as Keras.
Other real dtypes are computed as float32.

Randomness: each layer owns a ``numpy.random.Generator`` seeded with its `seed` (None: a seed drawn
from the package generator, which ``tt.utils.set_random_seed`` seeds; OS entropy otherwise) and draws the parameters of every image of a batch from it in Python; the generator's
state advances call by call, so successive batches and epochs get new draws while a run is
reproducible from its seeds. The C kernels (``csrc/image/augment.c``) are deterministic and run one
image per thread of the shared pool, so results do not depend on the thread count. Unlike Keras
2/3, RandomCrop and RandomContrast draw per image (Keras draws one crop offset per batch).

Geometric layers follow TF's ``ImageProjectiveTransformV3`` (what Keras uses): output pixel (x, y)
samples the input at the transformed integer-centred coordinate, mapped by `fill_mode`:
"reflect" (d c b a | a b c d | d c b a), "wrap" (a b c d | a b c d), "nearest" (a a | a b c d | d d)
or "constant" (`fill_value` outside), read by "bilinear" or "nearest" (round half away from zero)
interpolation. TF's wrap divides by ``len - 1`` when counting periods, so shifts of nearly a whole
image or more wrap slightly differently from an exact modulo; we keep TF's rule for parity.
"""
import math
import numbers

import numpy as np

from .. import data as _data
from .._native import _core
from .base import Layer
from .core import _new_seed

__all__ = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomCrop", "RandomBrightness",
           "RandomContrast"]

_FILL_MODES = {"reflect": 0, "wrap": 1, "constant": 2, "nearest": 3}
_INTERP = {"bilinear": 0, "nearest": 1}


def _is_number(v):
    """A finite real number (NaN or inf factors would only fail later, inside the draw)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _pair(factor, name):
    """Keras' factor convention: a number f -> (-f, f); a tuple/list -> (lower, upper)."""
    if _is_number(factor):
        if factor < 0:
            raise ValueError(f"`{name}` must be a non-negative number or a (lower, upper) tuple. Received: {name}={factor!r}")
        return -float(factor), float(factor)
    if isinstance(factor, (tuple, list)) and len(factor) == 2 and all(_is_number(v) for v in factor):
        lo, hi = float(factor[0]), float(factor[1])
        if lo > hi:
            raise ValueError(f"`{name}` lower bound must not exceed upper bound. Received: {name}={factor!r}")
        return lo, hi
    raise ValueError(f"`{name}` must be a number or a tuple of 2 numbers (lower, upper). Received: {name}={factor!r}")


def _choice(value, options, name):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"`{name}` must be one of {sorted(options)}. Received: {name}={value!r}")
    return options[value]


class _RandomImageLayer(Layer):
    """Shared plumbing: seeding, input checks, dtype handling, identity outside training."""

    is_random = True
    preserves_shape = True
    expects_images = True

    def __init__(self, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"`seed` must be a non-negative int or None. Received: seed={seed!r}")
        self.seed = None if seed is None else int(seed)
        # No seed: one from the package generator, so tt.utils.set_random_seed covers this layer.
        self._rng = np.random.default_rng(self.seed if self.seed is not None else _new_seed())

    def _batch(self, x):
        """(contiguous 4D uint8/float32 batch, was_3d)."""
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Layer {self.name!r} expects images (H, W, C) or a batch (N, H, W, C). Received: shape={x.shape}"
            )
        if min(x.shape[-3:]) < 1:
            raise ValueError(f"Layer {self.name!r} got empty images. Received: shape={x.shape}")
        if x.dtype != np.uint8 and x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
                raise ValueError(f"Layer {self.name!r} expects uint8 or float32 images. Received: dtype={x.dtype}")
            x = x.astype(np.float32)
        was3 = x.ndim == 3
        return np.ascontiguousarray(x[None] if was3 else x), was3

    def __call__(self, x, training=False):
        x = np.asarray(x)
        if not self.built and x.ndim >= 3:
            self.build((None,) + tuple(x.shape[-3:]))  # a single (H, W, C) image builds like a batch
        return self.call(x, training=training)

    def call(self, x, training=False):
        if not training:
            return self._inference(x)
        b, was3 = self._batch(x)
        y = self._augment(b)
        return y[0] if was3 else y

    def _inference(self, x):
        return x

    def get_config(self):
        cfg = super().get_config()
        cfg["seed"] = self.seed
        return cfg


class RandomFlip(_RandomImageLayer):
    """Randomly flips each image horizontally and/or vertically (``keras.layers.RandomFlip``).

    Args:
      mode (str): "horizontal" (left-right), "vertical" (up-down) or "horizontal_and_vertical"
        (each axis independently); each flip happens with probability 0.5 per image.
      seed (int | None): seed of the layer's generator.
    """

    def __init__(self, mode="horizontal_and_vertical", seed=None, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(
                "RandomFlip layer `mode` must be 'horizontal', 'vertical' or 'horizontal_and_vertical'. "
                f"Received: mode={mode!r}"
            )
        self.mode = mode

    def _augment(self, b):
        n = b.shape[0]
        flags = np.zeros((n, 2), np.uint8)
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            flags[:, 0] = self._rng.random(n) < 0.5
        if self.mode in ("vertical", "horizontal_and_vertical"):
            flags[:, 1] = self._rng.random(n) < 0.5
        return _core.flip(_data._default_pool(), b, flags)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _AffineLayer(_RandomImageLayer):
    def __init__(self, fill_mode, interpolation, seed, fill_value, name, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self._fill = _choice(fill_mode, _FILL_MODES, "fill_mode")
        self._interp = _choice(interpolation, _INTERP, "interpolation")
        if not _is_number(fill_value):
            raise ValueError(f"`fill_value` must be a number. Received: fill_value={fill_value!r}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def _warp(self, b, transforms):
        n, h, w, _ = b.shape
        return _core.affine(_data._default_pool(), b, np.asarray(transforms, np.float32).reshape(n, 8), h, w,
                            self._interp, self._fill, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


def rotation_transforms(angles, height, width):
    """Keras' ``get_rotation_matrix``: (N, 8) projective transforms rotating by `angles` (radians,
    counter-clockwise for positive values) about the image centre ((width-1)/2, (height-1)/2)."""
    a = np.asarray(angles, np.float64)
    c, s = np.cos(a), np.sin(a)
    x_off = ((width - 1) - (c * (width - 1) - s * (height - 1))) / 2.0
    y_off = ((height - 1) - (s * (width - 1) + c * (height - 1))) / 2.0
    z = np.zeros_like(a)
    return np.stack([c, -s, x_off, s, c, y_off, z, z], axis=1)


def zoom_transforms(height_zoom, width_zoom, height, width):
    """Keras' ``get_zoom_matrix``: sample the input at zoom * (x - centre) + centre per axis
    (zoom > 1 zooms out, < 1 zooms in)."""
    hz, wz = np.asarray(height_zoom, np.float64), np.asarray(width_zoom, np.float64)
    z = np.zeros_like(hz)
    return np.stack([wz, z, (width - 1) / 2.0 * (1 - wz), z, hz, (height - 1) / 2.0 * (1 - hz), z, z], axis=1)


def translation_transforms(dy, dx):
    """Keras' ``get_translation_matrix``: content moves by (dy, dx) pixels (down, right)."""
    dy, dx = np.asarray(dy, np.float64), np.asarray(dx, np.float64)
    z, o = np.zeros_like(dy), np.ones_like(dy)
    return np.stack([o, z, -dx, z, o, -dy, z, z], axis=1)


class RandomRotation(_AffineLayer):
    """Rotates each image by a random angle (``keras.layers.RandomRotation``).

    Args:
      factor: a float f (angles in [-f * 2pi, f * 2pi]) or a tuple (lower, upper) of fractions of a
        full turn; positive angles rotate counter-clockwise.
      fill_mode (str): "reflect", "wrap", "constant" or "nearest".
      interpolation (str): "bilinear" or "nearest".
      seed (int | None): seed of the layer's generator.
      fill_value (float): value outside the image for fill_mode="constant".
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, name=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, **kwargs)
        self.factor = factor
        self.lower, self.upper = _pair(factor, "factor")

    def _augment(self, b):
        n, h, w, _ = b.shape
        angles = self._rng.uniform(self.lower, self.upper, n) * 2.0 * math.pi
        return self._warp(b, rotation_transforms(angles, h, w))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_AffineLayer):
    """Zooms each image in or out by a random factor (``keras.layers.RandomZoom``).

    Args:
      height_factor: float f or (lower, upper); the vertical zoom is drawn from [1 + lower, 1 + upper]
        (a float f means [1 - f, 1 + f]); positive values zoom out, negative zoom in; values > -1.
      width_factor: the same for the horizontal axis; None keeps the aspect ratio (same zoom as height).
      fill_mode, interpolation, seed, fill_value: as RandomRotation.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_lower, self.height_upper = _pair(height_factor, "height_factor")
        if self.height_lower < -1.0 or self.height_upper < -1.0:
            raise ValueError(f"`height_factor` must have values larger than -1. Received: height_factor={height_factor!r}")
        self.width_lower = self.width_upper = None
        if width_factor is not None:
            self.width_lower, self.width_upper = _pair(width_factor, "width_factor")
            if self.width_lower < -1.0 or self.width_upper < -1.0:
                raise ValueError(f"`width_factor` must have values larger than -1. Received: width_factor={width_factor!r}")

    def _augment(self, b):
        n, h, w, _ = b.shape
        hz = self._rng.uniform(1.0 + self.height_lower, 1.0 + self.height_upper, n)
        if self.width_factor is None:
            wz = hz
        else:
            wz = self._rng.uniform(1.0 + self.width_lower, 1.0 + self.width_upper, n)
        return self._warp(b, zoom_transforms(hz, wz, h, w))

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(_AffineLayer):
    """Shifts each image by a random offset (``keras.layers.RandomTranslation``).

    Args:
      height_factor: float f or (lower, upper), fractions of the height in [-1, 1]; the vertical
        shift is drawn from [lower * H, upper * H] pixels (positive: down). A float f means [-f, f].
      width_factor: the same for the width (positive: right).
      fill_mode, interpolation, seed, fill_value: as RandomRotation.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_lower, self.height_upper = _pair(height_factor, "height_factor")
        self.width_lower, self.width_upper = _pair(width_factor, "width_factor")
        for nm, lo, hi, f in (("height_factor", self.height_lower, self.height_upper, height_factor),
                              ("width_factor", self.width_lower, self.width_upper, width_factor)):
            if abs(lo) > 1.0 or abs(hi) > 1.0:
                raise ValueError(f"`{nm}` must have values between [-1, 1]. Received: {nm}={f!r}")

    def _augment(self, b):
        n, h, w, _ = b.shape
        dy = self._rng.uniform(self.height_lower, self.height_upper, n) * h
        dx = self._rng.uniform(self.width_lower, self.width_upper, n) * w
        return self._warp(b, translation_transforms(dy, dx))

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomCrop(_RandomImageLayer):
    preserves_shape = False

    """Crops a random (height, width) window of each image (``keras.layers.RandomCrop``).

    In training, each image gets its own uniformly drawn offset; images smaller than the crop are
    resized instead (Keras' smart_resize: centre crop to the aspect ratio, bilinear resize). At
    inference (training=False) every image is smart-resized to (height, width), as Keras does.

    Args:
      height, width (int): output size (positive).
      seed (int | None): seed of the layer's generator.
    """

    def __init__(self, height, width, seed=None, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        for nm, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"RandomCrop `{nm}` must be a positive int. Received: {nm}={v!r}")
        self.height, self.width = int(height), int(width)

    def compute_output_shape(self, input_shape):
        s = tuple(input_shape)
        return s[:-3] + (self.height, self.width, s[-1])

    def _resize(self, b):
        return _core.resize(_data._default_pool(), b, self.height, self.width, 0, False, True, b.dtype == np.uint8)

    def _inference(self, x):
        b, was3 = self._batch(np.asarray(x))
        y = self._resize(b)
        return y[0] if was3 else y

    def _augment(self, b):
        n, h, w, _ = b.shape
        if h < self.height or w < self.width:
            return self._resize(b)
        offs = np.empty((n, 2), np.int32)
        offs[:, 0] = self._rng.integers(0, h - self.height + 1, n)
        offs[:, 1] = self._rng.integers(0, w - self.width + 1, n)
        return _core.crop(_data._default_pool(), b, offs, self.height, self.width)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


def _value_range(value_range):
    if (not isinstance(value_range, (tuple, list)) or len(value_range) != 2
            or not all(_is_number(v) for v in value_range) or not value_range[0] < value_range[1]):
        raise ValueError(f"`value_range` must be a tuple (low, high) with low < high. Received: value_range={value_range!r}")
    return float(value_range[0]), float(value_range[1])


class RandomBrightness(_RandomImageLayer):
    """Adds a random brightness offset to each image (``keras.layers.RandomBrightness``).

    Args:
      factor: float f or (lower, upper) in [-1, 1]; the offset added to every pixel and channel of an
        image is uniform in [lower, upper] * (value_range[1] - value_range[0]); a float f means [-f, f].
      value_range (tuple): (low, high) range of the pixel values; outputs are clipped to it.
      seed (int | None): seed of the layer's generator.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.factor = factor
        self.lower, self.upper = _pair(factor, "factor")
        if abs(self.lower) > 1.0 or abs(self.upper) > 1.0:
            raise ValueError(
                "The `factor` argument should be a number (or a list of two numbers) in the range [-1.0, 1.0]. "
                f"Received: factor={factor!r}"
            )
        self.value_range = _value_range(value_range)

    def _augment(self, b):
        lo, hi = self.value_range
        delta = self._rng.uniform(self.lower, self.upper, b.shape[0]) * (hi - lo)
        return _core.brightness(_data._default_pool(), b, delta.astype(np.float32), lo, hi)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": list(self.value_range)}


class RandomContrast(_RandomImageLayer):
    """Scales each image's contrast by a random factor (``keras.layers.RandomContrast``).

    Each channel of an image becomes ``(x - mean) * c + mean`` (mean over the image's pixels, per
    channel, as ``tf.image.adjust_contrast``) with c uniform in [1 - lower, 1 + upper], then is
    clipped to `value_range`.

    Args:
      factor: float f (lower = upper = f) or (lower, upper), each in [0, 1] for lower, >= 0 for upper.
      value_range (tuple): (low, high) clip range; default (0, 255).
      seed (int | None): seed of the layer's generator.
    """

    def __init__(self, factor, seed=None, value_range=(0, 255), name=None, **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.factor = factor
        if _is_number(factor):
            self.lower = self.upper = float(factor)
        elif isinstance(factor, (tuple, list)) and len(factor) == 2 and all(_is_number(v) for v in factor):
            self.lower, self.upper = float(factor[0]), float(factor[1])
        else:
            raise ValueError(f"`factor` must be a number or a tuple of 2 numbers. Received: factor={factor!r}")
        if self.lower < 0.0 or self.upper < 0.0 or self.lower > 1.0:
            raise ValueError(
                f"`factor` argument cannot have negative values or values greater than 1. Received: factor={factor!r}"
            )
        self.value_range = _value_range(value_range)

    def _augment(self, b):
        lo, hi = self.value_range
        c = self._rng.uniform(1.0 - self.lower, 1.0 + self.upper, b.shape[0])
        return _core.contrast(_data._default_pool(), b, c.astype(np.float32), lo, hi)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": list(self.value_range)}
