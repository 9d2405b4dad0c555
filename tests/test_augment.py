"""Augmentation layers and their C kernels against NumPy references.

The geometric reference is TF's ImageProjectiveTransformV3 (what Keras' RandomRotation/Zoom/
Translation call), written here in NumPy: coordinates in float32 like TF, interpolation in
float64. The transform matrices of the references are built here from their definitions
(``_def_rotation`` / ``_def_zoom`` / ``_def_translation``: shifts, rotations and scalings composed as
3x3 matrices, following Keras' documented behaviour), never with the package's own
``rotation_transforms`` / ``zoom_transforms`` / ``translation_transforms``, which are tested against
them and against hand-computed images (a quarter turn is ``np.rot90``, ...). Tolerances: float32 outputs 1e-3 absolute on [0, 255] values; uint8 outputs within 1 level
(rounding of float32 vs float64 sums at .5).
"""
import math

import numpy as np
import pytest

from tflite_transfer import data
from tflite_transfer._native import _core
from tflite_transfer.layers.preprocessing import (RandomBrightness, RandomContrast, RandomCrop, RandomFlip,
                                                  RandomRotation, RandomTranslation, RandomZoom)
from tflite_transfer.layers import preprocessing as _pre  # only to test its matrices against the definitions

F32_TOL = 1e-3
FILL = {"reflect": 0, "wrap": 1, "constant": 2, "nearest": 3}


def _map(v, n, mode):
    """TF's MapCoordinate functors, elementwise on float32 arrays."""
    v = v.astype(np.float32).copy()
    n32 = np.float32(n)
    if mode == "constant":
        return v
    if mode == "reflect" and n > 1:
        sz2 = np.float32(2 * n)
        lo, hi = v < 0, v > n32 - 1
        w = v[lo]
        big = w < -sz2
        w[big] = sz2 * np.trunc(-w[big] / sz2).astype(np.float32) + w[big]
        v[lo] = np.where(w < -n32, w + sz2, -w - 1)
        w = v[hi]
        w = w - sz2 * np.trunc(w / sz2).astype(np.float32)
        v[hi] = np.where(w >= n32, sz2 - w - 1, w)
    elif mode == "wrap" and n > 1:
        sz = np.float32(n - 1)  # TF divides by len - 1 here (sic), and so do we
        lo, hi = v < 0, v > n32 - 1
        v[lo] += n32 * (np.trunc(-v[lo] / sz) + 1)
        v[hi] -= n32 * np.trunc(v[hi] / sz)
    elif n <= 1:
        v[:] = 0
    return np.clip(v, 0, n32 - 1)


def ref_transform(x, transforms, mode="reflect", interp="bilinear", fill=0.0):
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    out = np.empty_like(x)
    yo, xo = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        t = np.asarray(transforms[i], np.float32)
        k = t[6] * xo + t[7] * yo + np.float32(1)
        ix = (t[0] * xo + t[1] * yo + t[2]) / k
        iy = (t[3] * xo + t[4] * yo + t[5]) / k
        mx, my = _map(ix, w, mode), _map(iy, h, mode)

        def read(yy, xx):
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            v = x[i][np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            return np.where(ok[..., None], v, fill)

        if interp == "nearest":  # std::round: halves away from zero
            rnd = lambda v: (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(int)  # noqa: E731
            out[i] = read(rnd(my), rnd(mx))
        else:
            y0, x0 = np.floor(my), np.floor(mx)
            fy, fx = (my - y0)[..., None].astype(np.float64), (mx - x0)[..., None].astype(np.float64)
            y0, x0 = y0.astype(int), x0.astype(int)
            top = (1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1)
            bot = (1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)
            out[i] = (1 - fy) * top + fy * bot
    return out


def _to_u8(v):
    return np.clip(np.floor(np.asarray(v, np.float64) + 0.5), 0, 255).astype(np.uint8)


def _check(y, ref, dtype):
    assert y.dtype == dtype and y.shape == ref.shape
    if dtype == np.uint8:
        assert np.abs(y.astype(int) - _to_u8(ref).astype(int)).max() <= 1
    else:
        np.testing.assert_allclose(y, ref, rtol=0, atol=F32_TOL)


# ----------------------------------------------------------------- transform matrices from definitions
# TF's convention (tf.raw_ops.ImageProjectiveTransformV3, keras.ops.image.affine_transform): a
# transform [a0, a1, a2, b0, b1, b2, c0, c1] maps each OUTPUT pixel (x, y) to the INPUT point it
# samples, x' = (a0 x + a1 y + a2) / k, y' = (b0 x + b1 y + b2) / k, k = c0 x + c1 y + 1; x runs
# right and y down, pixel centres at integers, so the image centre is ((W - 1) / 2, (H - 1) / 2).


def _shift(tx, ty):
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _scale(sx, sy):
    return np.diag([sx, sy, 1.0])


def _turn(a):
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _tf8(m):
    m = np.asarray(m, np.float64) / m[2, 2]
    return np.array([m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2], m[2, 0], m[2, 1]])


def _def_rotation(angles, h, w):
    """Keras RandomRotation: rotate about the image centre, positive angles counter-clockwise. The
    output pixel at offset v from the centre samples the input at R(angle) v (y down: the input below
    the centre shows up on its right, a counter-clockwise turn of the content)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return np.stack([_tf8(_shift(cx, cy) @ _turn(a) @ _shift(-cx, -cy)) for a in np.atleast_1d(angles)])


def _def_zoom(hz, wz, h, w):
    """Keras RandomZoom with zoom factors (1 + factor): the output pixel at offset v from the centre
    samples the input at (wz v_x, hz v_y); zoom > 1 shows more of the image (zoom out)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return np.stack([_tf8(_shift(cx, cy) @ _scale(a, b) @ _shift(-cx, -cy))
                     for b, a in zip(np.atleast_1d(hz), np.atleast_1d(wz))])


def _def_translation(dy, dx):
    """Keras RandomTranslation: the content moves dy pixels down and dx right, so the output pixel p
    samples the input at p - (dx, dy)."""
    return np.stack([_tf8(_shift(-a, -b)) for b, a in zip(np.atleast_1d(dy), np.atleast_1d(dx))])


def test_definition_matrices_on_hand_computed_points():
    # Quarter turn of a 5 x 7 (h x w) image, centre (3, 2): output (x, y) = (4, 2), one right of the
    # centre, samples the point one below the centre, (3, 3).
    t = _def_rotation([math.pi / 2], 5, 7)[0]
    np.testing.assert_allclose([t[0] * 4 + t[1] * 2 + t[2], t[3] * 4 + t[4] * 2 + t[5]], [3, 3], atol=1e-12)
    # Zoom out 2x horizontally on width 5 (centre 2): output x = 0, 3 sample x = -2, 4.
    t = _def_zoom([1.0], [2.0], 1, 5)[0]
    np.testing.assert_allclose([t[0] * 0 + t[2], t[0] * 3 + t[2]], [-2, 4], atol=1e-12)
    # Shift by (dy, dx) = (1, 2): output (2, 1) samples (0, 0).
    t = _def_translation([1.0], [2.0])[0]
    np.testing.assert_allclose([t[0] * 2 + t[1] * 1 + t[2], t[3] * 2 + t[4] * 1 + t[5]], [0, 0], atol=1e-12)


@pytest.mark.parametrize("h, w", [(11, 14), (224, 224), (1, 5), (37, 2)])
def test_package_matrices_equal_the_definitions(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    ang = np.concatenate([[0.0, math.pi / 2, -math.pi, 3.0], rng.uniform(-7, 7, 6)])
    np.testing.assert_allclose(_pre.rotation_transforms(ang, h, w), _def_rotation(ang, h, w), rtol=0, atol=1e-9)
    hz, wz = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    np.testing.assert_allclose(_pre.zoom_transforms(hz, wz, h, w), _def_zoom(hz, wz, h, w), rtol=0, atol=1e-9)
    dy, dx = rng.uniform(-h, h, 10), rng.uniform(-w, w, 10)
    np.testing.assert_allclose(_pre.translation_transforms(dy, dx), _def_translation(dy, dx), rtol=0, atol=1e-12)


_SQ = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1) * 10  # every pixel distinct, no symmetry
_ROW = _SQ[:, 2:3]  # one row: 100, 110, 120, 130, 140
# Layers with fixed factors (lower == upper) and results written down by hand, no reference code.
# The tolerance: 0 for nearest; 1e-3 for bilinear (cos(pi / 2) is 6e-17, not 0, in float32 coordinates).


def _run_layer(layer, img, dtype):
    return np.asarray(layer(img.astype(dtype), training=True), np.float64)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor, expected", [
    (0.25, np.rot90(_SQ, 1, axes=(1, 2))),    # a quarter turn counter-clockwise is np.rot90
    (-0.25, np.rot90(_SQ, -1, axes=(1, 2))),  # clockwise
    (0.5, _SQ[:, ::-1, ::-1]),                 # a half turn flips both axes
])
def test_rotation_layer_on_hand_computed_images(dtype, interpolation, factor, expected):
    y = _run_layer(RandomRotation((factor, factor), interpolation=interpolation), _SQ, dtype)
    np.testing.assert_allclose(y, expected, rtol=0, atol=0 if interpolation == "nearest" else 1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("interpolation, factor, expected", [
    # zoom out 2x (factor +1): input columns -2, 0, 2, 4, 6; constant fill 7 outside
    ("nearest", 1.0, [7, 100, 120, 140, 7]), ("bilinear", 1.0, [7, 100, 120, 140, 7]),
    # zoom in 2x (factor -0.5): input columns 1, 1.5, 2, 2.5, 3; nearest rounds halves away from zero
    ("nearest", -0.5, [110, 120, 120, 130, 130]), ("bilinear", -0.5, [110, 115, 120, 125, 130]),
])
def test_zoom_layer_on_a_hand_computed_row(dtype, interpolation, factor, expected):
    layer = RandomZoom((0.0, 0.0), (factor, factor), fill_mode="constant", fill_value=7.0, interpolation=interpolation)
    np.testing.assert_allclose(_run_layer(layer, _ROW, dtype).ravel(), expected, rtol=0,
                               atol=0 if interpolation == "nearest" else 1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_translation_layer_on_a_hand_computed_row(dtype, interpolation):
    # width_factor 0.4 of 5 pixels: the content moves 2 pixels right; constant fill 7 on the left.
    layer = RandomTranslation((0.0, 0.0), (0.4, 0.4), fill_mode="constant", fill_value=7.0, interpolation=interpolation)
    np.testing.assert_allclose(_run_layer(layer, _ROW, dtype).ravel(), [7, 7, 100, 110, 120], rtol=0,
                               atol=0 if interpolation == "nearest" else 1e-3)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 11, 14, 3), dtype=np.uint8)


def _as(batch, dtype):
    return batch.astype(dtype)


# --------------------------------------------------------------------------- kernels, fixed params


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_flip_kernel(batch, dtype):
    x = _as(batch, dtype)
    flags = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)
    y = _core.flip(data._default_pool(), x, flags)
    ref = np.stack([x[0][:, ::-1], x[1][::-1], x[2][::-1, ::-1]])
    np.testing.assert_array_equal(y, ref)
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
def test_rotation_kernel_all_fill_modes(batch, dtype, mode, interp):
    x = _as(batch, dtype)
    t = _def_rotation([0.3, -1.2, math.pi / 2], 11, 14)
    y = _core.affine(data._default_pool(), x, t.astype(np.float32), 11, 14, 0 if interp == "bilinear" else 1,
                     FILL[mode], 7.0)
    _check(y, ref_transform(x, t, mode, interp, 7.0), dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant", "nearest"])
def test_zoom_and_translation_kernels(batch, dtype, mode):
    x = _as(batch, dtype)
    for t in (_def_zoom([0.5, 1.7, 1.0], [0.8, 2.5, 1.3], 11, 14),
              _def_translation([3.4, -20.0, 0.0], [-5.5, 2.0, 30.0])):
        y = _core.affine(data._default_pool(), x, t.astype(np.float32), 11, 14, 0, FILL[mode], 0.0)
        _check(y, ref_transform(x, t, mode, "bilinear"), dtype)


def test_reflect_and_wrap_semantics_on_a_row():
    # Keras docs: reflect (d c b a | a b c d | d c b a), wrap (a b c d | a b c d | a b c d),
    # nearest (a a a a | a b c d | d d d d), constant (k k k k | a b c d | k k k k)
    row = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 4, 1)
    # content moves right by 2: the two left output pixels show what lies left of the edge
    shift = _def_translation([0.0], [2.0])
    expect = {"reflect": [2, 1, 1, 2], "wrap": [3, 4, 1, 2], "nearest": [1, 1, 1, 2], "constant": [9, 9, 1, 2]}
    for mode, want in expect.items():
        y = _core.affine(None, row, shift.astype(np.float32), 1, 4, 1, FILL[mode], 9.0)
        np.testing.assert_array_equal(y.ravel(), want, err_msg=mode)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_crop_brightness_contrast_kernels(batch, dtype):
    x = _as(batch, dtype)
    pool = data._default_pool()
    offs = np.array([[0, 0], [3, 5], [6, 9]], np.int32)
    y = _core.crop(pool, x, offs, 5, 5)
    np.testing.assert_array_equal(y, np.stack([x[i, o[0]:o[0] + 5, o[1]:o[1] + 5] for i, o in enumerate(offs)]))
    d = np.array([-40.3, 0.0, 100.6], np.float32)
    y = _core.brightness(pool, x, d, 0.0, 255.0)
    _check(y, np.clip(x.astype(np.float64) + d[:, None, None, None], 0, 255), dtype)
    f = np.array([0.2, 1.0, 1.9], np.float32)
    xf = x.astype(np.float64)
    mean = xf.mean(axis=(1, 2), keepdims=True)
    y = _core.contrast(pool, x, f, 0.0, 255.0)
    _check(y, np.clip((xf - mean) * f[:, None, None, None] + mean, 0, 255), dtype)


def test_kernels_do_not_depend_on_thread_count(batch):
    x = np.repeat(batch, 5, axis=0).astype(np.float32)
    t = _def_rotation(np.linspace(-2, 2, len(x)), 11, 14).astype(np.float32)
    ys = [_core.affine(p, x, t, 11, 14, 0, 0, 0.0) for p in (None, _core.ThreadPool(1), _core.ThreadPool(3))]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])


def test_kernel_argument_checks(batch):
    pool = data._default_pool()
    with pytest.raises(ValueError, match="transforms"):
        _core.affine(pool, batch, np.zeros(5, np.float32), 11, 14, 0, 0, 0.0)
    with pytest.raises(ValueError, match="offset"):
        _core.crop(pool, batch, np.array([[0, 0], [0, 0], [7, 0]], np.int32), 5, 5)
    with pytest.raises(ValueError, match="uint8 or float32"):
        _core.flip(pool, batch.astype(np.int16), np.zeros((3, 2), np.uint8))
    with pytest.raises(TypeError, match="pool"):
        _core.flip("nope", batch, np.zeros((3, 2), np.uint8))


# --------------------------------------------------------------------------- layers: draws and semantics


def _layer_output_matches(layer_cls, kwargs, expected_fn, x):
    """Layer output == NumPy reference fed with the same draws (replayed from the same seed)."""
    layer = layer_cls(seed=42, **kwargs)
    y = layer(x, training=True)
    rng = np.random.default_rng(42)
    return y, expected_fn(rng, x)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_rotation_layer_end_to_end(batch, dtype):
    x = _as(batch, dtype)

    def expect(rng, x):
        ang = rng.uniform(-0.2, 0.1, len(x)) * 2 * math.pi
        return ref_transform(x, _def_rotation(ang, 11, 14), "wrap", "bilinear")

    y, ref = _layer_output_matches(RandomRotation, {"factor": (-0.2, 0.1), "fill_mode": "wrap"}, expect, x)
    _check(y, ref, dtype)


def test_random_zoom_translation_flip_layers_end_to_end(batch):
    x = batch.astype(np.float32)

    def zoom(rng, x):
        hz = rng.uniform(0.7, 1.3, len(x))
        return ref_transform(x, _def_zoom(hz, hz, 11, 14), "reflect")

    y, ref = _layer_output_matches(RandomZoom, {"height_factor": 0.3}, zoom, x)
    _check(y, ref, np.float32)

    def zoom2(rng, x):
        hz = rng.uniform(0.5, 0.9, len(x))
        wz = rng.uniform(1.1, 1.2, len(x))
        return ref_transform(x, _def_zoom(hz, wz, 11, 14), "constant", "nearest", 3.0)

    y, ref = _layer_output_matches(RandomZoom, {"height_factor": (-0.5, -0.1), "width_factor": (0.1, 0.2),
                                                "fill_mode": "constant", "interpolation": "nearest",
                                                "fill_value": 3.0}, zoom2, x)
    _check(y, ref, np.float32)

    def trans(rng, x):
        dy = rng.uniform(-0.2, 0.2, len(x)) * 11
        dx = rng.uniform(-0.1, 0.3, len(x)) * 14
        return ref_transform(x, _def_translation(dy, dx), "nearest")

    y, ref = _layer_output_matches(RandomTranslation, {"height_factor": 0.2, "width_factor": (-0.1, 0.3),
                                                       "fill_mode": "nearest"}, trans, x)
    _check(y, ref, np.float32)

    def flip(rng, x):
        h = rng.random(len(x)) < 0.5
        v = rng.random(len(x)) < 0.5
        out = x.copy()
        out[h] = out[h][:, :, ::-1]
        out[v] = out[v][:, ::-1]
        return out

    y, ref = _layer_output_matches(RandomFlip, {"mode": "horizontal_and_vertical"}, flip, x)
    np.testing.assert_array_equal(y, ref)


def test_brightness_contrast_crop_layers_end_to_end(batch):
    x = batch.astype(np.float32)

    def bright(rng, x):
        d = rng.uniform(-0.3, 0.3, len(x)) * 255
        return np.clip(x + d[:, None, None, None], 0, 255)

    y, ref = _layer_output_matches(RandomBrightness, {"factor": 0.3}, bright, x)
    _check(y, ref, np.float32)

    def contrast(rng, x):
        f = rng.uniform(0.5, 1.5, len(x))
        m = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
        return np.clip((x - m) * f[:, None, None, None] + m, 0, 255)

    y, ref = _layer_output_matches(RandomContrast, {"factor": 0.5}, contrast, x)
    _check(y, ref, np.float32)

    def crop(rng, x):
        oy = rng.integers(0, 11 - 6 + 1, len(x))
        ox = rng.integers(0, 14 - 8 + 1, len(x))
        return np.stack([x[i, oy[i]:oy[i] + 6, ox[i]:ox[i] + 8] for i in range(len(x))])

    y, ref = _layer_output_matches(RandomCrop, {"height": 6, "width": 8}, crop, x)
    np.testing.assert_array_equal(y, ref)


ALL_LAYERS = [
    (RandomFlip, {}), (RandomRotation, {"factor": 0.2}), (RandomZoom, {"height_factor": 0.3}),
    (RandomTranslation, {"height_factor": 0.2, "width_factor": 0.2}), (RandomCrop, {"height": 8, "width": 8}),
    (RandomBrightness, {"factor": 0.4}), (RandomContrast, {"factor": 0.6}),
]


@pytest.mark.parametrize("cls,kw", ALL_LAYERS)
def test_seeded_layers_are_reproducible_and_differ_across_calls_and_images(cls, kw):
    rng = np.random.default_rng(5)
    one = rng.integers(0, 256, (1, 12, 15, 3), dtype=np.uint8)
    x = np.repeat(one, 16, axis=0)  # 16 copies of one image: per-image draws must differ
    a, b = cls(seed=7, **kw), cls(seed=7, **kw)
    a1, a2 = a(x, training=True), a(x, training=True)
    b1, b2 = b(x, training=True), b(x, training=True)
    np.testing.assert_array_equal(a1, b1)  # same seed, same draws
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # the generator advances call by call (epochs differ)
    assert len({a1[i].tobytes() for i in range(len(a1))}) > 1  # images of a batch get their own draws
    assert cls.is_random is True


@pytest.mark.parametrize("cls,kw", ALL_LAYERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dtype_preserved_and_identity_at_inference(cls, kw, dtype):
    x = np.random.default_rng(1).integers(0, 256, (4, 12, 15, 3)).astype(dtype)
    layer = cls(seed=1, **kw)
    y = layer(x, training=True)
    assert y.dtype == dtype
    if dtype == np.uint8:
        assert y.min() >= 0 and y.max() <= 255
    inf = layer(x)  # training=False
    if cls is RandomCrop:
        ref = data.resize(x, (8, 8), crop_to_aspect_ratio=True)
        assert inf.shape == (4, 8, 8, 3) and inf.dtype == dtype
        if dtype == np.float32:
            np.testing.assert_allclose(inf, ref, atol=1e-4)
        else:
            assert np.abs(inf.astype(int) - _to_u8(ref)).max() <= 1
    else:
        assert inf is x


def test_float_values_not_clipped_except_color_layers():
    x = np.random.default_rng(2).uniform(-3, 3, (4, 9, 9, 3)).astype(np.float32)
    y = RandomRotation(0.3, seed=0)(x, training=True)
    assert y.min() < 0  # geometric layers keep the float range
    y = RandomBrightness(0.5, value_range=(-1, 1), seed=0)(x, training=True)
    assert y.min() >= -1 and y.max() <= 1
    y = RandomContrast(0.5, value_range=(0, 1), seed=0)(x, training=True)
    assert y.min() >= 0 and y.max() <= 1


def test_single_image_input():
    x = np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    y = RandomFlip("horizontal", seed=0)(x, training=True)
    assert y.shape == x.shape
    assert np.array_equal(y, x) or np.array_equal(y, x[:, ::-1])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="mode"):
        RandomFlip("diagonal")
    with pytest.raises(ValueError, match="fill_mode"):
        RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="interpolation"):
        RandomZoom(0.1, interpolation="bicubic")
    with pytest.raises(ValueError, match="factor"):
        RandomRotation((0.3, 0.1))
    with pytest.raises(ValueError, match="larger than -1"):
        RandomZoom((-1.5, 0.2))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="factor"):
        RandomBrightness(1.2)
    with pytest.raises(ValueError, match="value_range"):
        RandomBrightness(0.2, value_range=(1, 0))
    with pytest.raises(ValueError, match="negative"):
        RandomContrast(-0.1)
    with pytest.raises(ValueError, match="height"):
        RandomCrop(0, 5)
    with pytest.raises(ValueError, match="seed"):
        RandomFlip(seed=-1)
    with pytest.raises(ValueError, match="batch"):
        RandomFlip(seed=0)(np.zeros((2, 3), np.uint8), training=True)


def test_absurd_transforms_give_fill_value_not_a_crash(batch):
    for t in ([np.nan] * 8, [1, 0, 1e30, 0, 1, 0, 0, 0], [1, 0, -1e20, 0, 1, 3e9, 0, 0]):
        tr = np.tile(np.float32(t), (len(batch), 1))
        for mode in ("reflect", "wrap", "constant", "nearest"):
            y = _core.affine(None, batch.astype(np.float32), tr, 11, 14, 0, FILL[mode], 5.0)
            assert np.all(y == 5.0), (t, mode)


from tflite_transfer import layers  # noqa: E402


@pytest.mark.parametrize("make", [
    lambda f: layers.RandomBrightness(f), lambda f: layers.RandomRotation(f), lambda f: layers.RandomContrast(f),
    lambda f: layers.RandomZoom(f), lambda f: layers.RandomTranslation(f, 0.1), lambda f: layers.RandomTranslation(0.1, (0, f)),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_factors_are_rejected_at_construction(make, bad):
    with pytest.raises(ValueError, match="factor"):
        make(bad)
