"""resize() against NumPy float64 implementations of tf.image.resize's formulas (TF 2).

References written here from TF's rules; like TF, sample positions are computed in float32 (the
scale in/out is a float32), the weights and sums in float64:
  bilinear (antialias=False): ResizeBilinear with half_pixel_centers=True;
  bilinear (antialias=True):  ScaleAndTranslate, triangle kernel scaled by max(in/out, 1);
  nearest:                    ResizeNearestNeighbor with half_pixel_centers=True.
Tolerance: 1e-4 absolute on float32 outputs of values in [0, 255] (the issue's bound; float32
rounding gives ~3e-5), exact index choice for nearest.
"""
import numpy as np
import pytest

from tflite_transfer import data


def _bilinear_matrix(n_in, n_out):
    m = np.zeros((n_out, n_in))
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    for o in range(n_out):
        src = np.float64((f32(o) + f32(0.5)) * scale - f32(0.5))
        f = np.floor(src)
        lo = int(max(f, 0))
        hi = int(min(np.ceil(src), n_in - 1))
        lo = min(lo, n_in - 1)
        lerp = src - f
        m[o, lo] += 1 - lerp
        m[o, hi] += lerp
    return m


def _antialias_matrix(n_in, n_out):
    m = np.zeros((n_out, n_in))
    f32 = np.float32
    inv_scale = f32(1) / (f32(n_out) / f32(n_in))  # TF inverts the float32 scale out/in
    kscale = max(inv_scale, f32(1))
    for o in range(n_out):
        sample = (f32(o) + f32(0.5)) * inv_scale
        if sample < 0 or sample > n_in:
            continue
        s0 = int(np.clip(np.ceil(sample - kscale - f32(0.5)), 0, n_in - 1))
        s1 = int(np.clip(np.floor(sample + kscale - f32(0.5)), 0, n_in - 1)) + 1
        w = np.array([max(0.0, 1 - abs(float(f32(s) + f32(0.5) - sample) / float(kscale))) for s in range(s0, s1)])
        if w.sum() > 0:
            m[o, s0:s1] = w / w.sum()
    return m


def _nearest_matrix(n_in, n_out):
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        pos = (np.float32(o) + np.float32(0.5)) * (np.float32(n_in) / np.float32(n_out))
        m[o, min(int(np.floor(pos)), n_in - 1)] = 1
    return m


def _ref(x, size, kind):
    make = {"bilinear": _bilinear_matrix, "antialias": _antialias_matrix, "nearest": _nearest_matrix}[kind]
    x = np.asarray(x, np.float64)
    mh = make(x.shape[-3], size[0])
    mw = make(x.shape[-2], size[1])
    return np.einsum("oh,...hwc,pw->...opc", mh, x, mw, optimize=True)


def _keras_crop(x, size):
    h, w = x.shape[-3:-1]
    ch = min(h, int(float(w * size[0]) / size[1]))
    cw = min(w, int(float(h * size[1]) / size[0]))
    y0, x0 = int(float(h - ch) / 2), int(float(w - cw) / 2)
    return x[..., y0:y0 + ch, x0:x0 + cw, :]


SIZES = [((7, 9), (3, 4)), ((5, 6), (11, 13)), ((16, 16), (5, 7)), ((10, 3), (10, 3)), ((1, 1), (4, 3)),
         ((9, 20), (2, 1)), ((33, 17), (8, 30))]


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("in_size,out_size", SIZES)
@pytest.mark.parametrize("kind", ["bilinear", "antialias", "nearest"])
def test_matches_tf_formula_float32(rng, in_size, out_size, kind):
    x = (rng.random((2,) + in_size + (3,)) * 255).astype(np.float32)
    interp = "nearest" if kind == "nearest" else "bilinear"
    y = data.resize(x, out_size, interpolation=interp, antialias=(kind == "antialias"))
    assert y.dtype == np.float32 and y.shape == (2,) + out_size + (3,)
    np.testing.assert_allclose(y, _ref(x, out_size, kind), rtol=0, atol=1e-4)


@pytest.mark.parametrize("in_size,out_size", SIZES)
@pytest.mark.parametrize("kind", ["bilinear", "antialias", "nearest"])
def test_matches_tf_formula_uint8_batch(rng, in_size, out_size, kind):
    x = rng.integers(0, 256, (2,) + in_size + (3,), dtype=np.uint8)
    interp = "nearest" if kind == "nearest" else "bilinear"
    y = data.resize(x, out_size, interpolation=interp, antialias=(kind == "antialias"))
    np.testing.assert_allclose(y, _ref(x, out_size, kind), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["bilinear", "antialias", "nearest"])
def test_uint8_input_single_image(rng, kind):
    x = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    interp = "nearest" if kind == "nearest" else "bilinear"
    y = data.resize(x, (12, 40), interpolation=interp, antialias=(kind == "antialias"))
    assert y.shape == (12, 40, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, _ref(x, (12, 40), kind), rtol=0, atol=1e-4)


def test_hand_computed_upsample_values():
    # 2 -> 4 columns: sample points -0.25, 0.25, 0.75, 1.25 -> clamp, lerp, lerp, clamp
    x = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)[..., None]
    y = data.resize(x, (2, 4))[..., 0]
    np.testing.assert_allclose(y, [[0, 0.25, 0.75, 1], [2, 2.25, 2.75, 3]], atol=1e-6)
    y = data.resize(x, (2, 4), interpolation="nearest")[..., 0]
    np.testing.assert_array_equal(y, [[0, 0, 1, 1], [2, 2, 3, 3]])
    # 4 -> 2 bilinear averages pairs; antialias triangle of width 2 spans 4 taps
    z = np.array([[0.0, 4.0, 8.0, 12.0]], np.float32)[..., None]
    np.testing.assert_allclose(data.resize(z, (1, 2))[0, :, 0], [2, 10], atol=1e-6)
    np.testing.assert_allclose(data.resize(z, (1, 2), antialias=True)[0, :, 0],
                               [(0.75 * 0 + 0.75 * 4 + 0.25 * 8) / 1.75, (0.25 * 4 + 0.75 * 8 + 0.75 * 12) / 1.75],
                               atol=1e-5)


def test_channels_other_than_three(rng):
    x = rng.random((1, 6, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(data.resize(x, (4, 9)), _ref(x, (4, 9), "bilinear"), atol=1e-5)


@pytest.mark.parametrize("in_size,out_size", [((10, 20), (5, 5)), ((20, 10), (6, 4)), ((7, 9), (7, 9)),
                                              ((15, 16), (3, 8))])
def test_crop_to_aspect_ratio_is_keras_smart_resize(rng, in_size, out_size):
    x = (rng.random(in_size + (3,)) * 255).astype(np.float32)
    y = data.resize(x, out_size, crop_to_aspect_ratio=True)
    np.testing.assert_allclose(y, _ref(_keras_crop(x, out_size), out_size, "bilinear"), atol=1e-4)
    np.testing.assert_array_equal(data.smart_resize(x, out_size), y)


def test_other_dtypes_are_converted(rng):
    x = rng.integers(0, 1000, (5, 5, 3)).astype(np.int64)
    np.testing.assert_allclose(data.resize(x, (3, 3)), _ref(x, (3, 3), "bilinear"), atol=1e-3)
    x64 = rng.random((4, 4, 3))
    np.testing.assert_allclose(data.resize(x64, (2, 2)), _ref(x64, (2, 2), "bilinear"), atol=1e-5)


def test_non_contiguous_input(rng):
    x = (rng.random((2, 10, 12, 3)) * 255).astype(np.float32)[:, ::2, ::-1]
    np.testing.assert_allclose(data.resize(x, (4, 4)), _ref(x, (4, 4), "bilinear"), atol=1e-4)


def test_bad_arguments():
    x = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="3D .* or 4D"):
        data.resize(np.zeros((4, 4)), (2, 2))
    with pytest.raises(ValueError, match="size"):
        data.resize(x, (0, 2))
    with pytest.raises(ValueError, match="size"):
        data.resize(x, 5)
    with pytest.raises(ValueError, match="interpolation"):
        data.resize(x, (2, 2), interpolation="area")
    with pytest.raises(ValueError, match="non-empty"):
        data.resize(np.zeros((0, 4, 3), np.uint8), (2, 2))
    with pytest.raises(ValueError, match="numeric"):
        data.resize(np.zeros((2, 2, 3), object), (2, 2))


def test_against_tensorflow_when_installed(rng):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow not installed: parity vs the NumPy formulas only")
    x = (rng.random((2, 13, 17, 3)) * 255).astype(np.float32)
    for size in ((5, 7), (30, 20)):
        for aa in (False, True):
            ref = tf.image.resize(x, size, method="bilinear", antialias=aa).numpy()
            np.testing.assert_allclose(data.resize(x, size, antialias=aa), ref, atol=1e-4)
        ref = tf.image.resize(x, size, method="nearest").numpy()
        np.testing.assert_array_equal(data.resize(x, size, interpolation="nearest"), ref)
