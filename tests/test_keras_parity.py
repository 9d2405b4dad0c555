"""Parity with TensorFlow/Keras itself (optional: runs only where TensorFlow is installed).

Each test runs the same computation through tflite_transfer and through Keras 3 / TF 2 (the
versions CI installs: tensorflow-cpu 2.21, Keras 3.15) and compares, with the tolerance stated
next to it and the difference measured when the test was written. Without TensorFlow the whole
module is skipped with the reason "TensorFlow/Keras not installed".
"""
import json
import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up banners are noise here

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow/Keras not installed")
keras = pytest.importorskip("keras", reason="TensorFlow/Keras not installed")

import tflite_transfer as tt  # noqa: E402
from tflite_transfer import data as ttdata  # noqa: E402
from tflite_transfer import losses as ttlosses  # noqa: E402
from tflite_transfer import metrics as ttmetrics  # noqa: E402
from tflite_transfer.applications import mobilenet_v2 as ttmnv2  # noqa: E402
from tflite_transfer.layers import preprocessing as ttpre  # noqa: E402

from conftest import FLOWERS, IMAGES  # noqa: E402


# ----------------------------------------------------------------------------------- helpers


class FixedDraws:
    """Stands in for a random layer's ``numpy.random.Generator`` so the layer applies chosen
    parameters: ``uniform`` and ``random`` return the next preset array (checked to lie in the
    requested range), in call order."""

    def __init__(self, *draws):
        self._draws = [np.asarray(d, np.float64) for d in draws]

    def _next(self, n):
        d = self._draws.pop(0)
        assert d.shape == (n,), f"preset draw has shape {d.shape}, layer asked for {n} values"
        return d

    def uniform(self, low, high, size):
        d = self._next(size)
        assert np.all((d >= low) & (d <= high)), f"preset {d} outside the layer's range [{low}, {high}]"
        return d

    def random(self, size):
        return self._next(size)


def _images(n=3, h=37, w=53, seed=0):
    """Random float32 batch (n, h, w, 3) in [0, 255] with odd sizes, so no symmetry hides a bug."""
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def small_flower_dir(tmp_path_factory):
    """A class-folder tree of 10 flower photos (2 per class, fixed pick) as symlinks into ../shared."""
    root = tmp_path_factory.mktemp("flowers10")
    pick = random.Random(0)
    for c in sorted(d for d in os.listdir(FLOWERS) if (FLOWERS / d).is_dir()):
        (root / c).mkdir()
        for f in pick.sample(sorted(os.listdir(FLOWERS / c)), 2):
            os.symlink(FLOWERS / c / f, root / c / f)
    return root


# ------------------------------------------------------------- 1. image_dataset_from_directory


@pytest.mark.parametrize("shuffle", [True, False])
def test_dataset_split_file_paths_class_names_and_labels_equal_keras(shuffle):
    kw = dict(validation_split=0.2, seed=123, subset="both", image_size=(180, 180), batch_size=32,
              shuffle=shuffle, verbose=False)
    k_train, k_val = keras.utils.image_dataset_from_directory(str(FLOWERS), **kw)
    o_train, o_val = ttdata.image_dataset_from_directory(FLOWERS, **kw)
    assert o_train.class_names == k_train.class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert o_train.file_paths == k_train.file_paths
    assert o_val.file_paths == k_val.file_paths
    assert (len(o_train.file_paths), len(o_val.file_paths)) == (2349, 587)  # 2936 - int(0.2 * 2936)
    # Keras shuffles paths and labels with the same seed, so its label of file i is the class of
    # file i's folder; ours must be the same array.
    for ds in (o_train, o_val):
        want = [ds.class_names.index(os.path.basename(os.path.dirname(p))) for p in ds.file_paths]
        np.testing.assert_array_equal(ds.labels, want)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop_to_aspect_ratio", [False, True])
def test_dataset_pixels_match_keras_within_jpeg_decoder_differences(small_flower_dir, interpolation,
                                                                    crop_to_aspect_ratio):
    # Ours decodes with stb_image, TF with libjpeg-turbo: their IDCTs and chroma upsampling differ
    # (measured on these photos, decode alone: max 14 levels, mean <= 1.3). After the resize to
    # 224x224 (Keras float32 vs our uint8), measured per image: mean |diff| <= 1.51, 99.9th
    # percentile <= 8, max 17 levels. Bounds: mean 2.0, 99.9th percentile 10, max 24.
    # The resize alone is tested exactly in the next test.
    kw = dict(image_size=(224, 224), shuffle=False, batch_size=16, verbose=False,
              interpolation=interpolation, crop_to_aspect_ratio=crop_to_aspect_ratio)
    k = keras.utils.image_dataset_from_directory(str(small_flower_dir), **kw)
    o = ttdata.image_dataset_from_directory(small_flower_dir, **kw)
    assert o.file_paths == k.file_paths
    kx, ky = next(iter(k))
    ox, oy = next(iter(o))
    np.testing.assert_array_equal(oy, ky.numpy())
    assert ox.dtype == np.uint8 and ox.shape == (10, 224, 224, 3)
    diff = np.abs(ox.astype(np.float64) - kx.numpy().astype(np.float64))
    assert diff.mean(axis=(1, 2, 3)).max() <= 2.0
    assert np.percentile(diff, 99.9) <= 10
    assert diff.max() <= 24


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("crop_to_aspect_ratio", [False, True])
def test_resize_of_tf_decoded_pixels_matches_keras_load_path(small_flower_dir, interpolation, crop_to_aspect_ratio):
    # Same decoded pixels (TF's) into both resizes: float32 results agree to 1e-3 (float32
    # rounding of the sampling positions; measured max 0.0 for bilinear/nearest), and our uint8
    # path (load_img's rounding) is within 0.5 + 1e-3 of Keras' float32 value.
    paths = sorted(str(p) for p in small_flower_dir.rglob("*.jpg"))[:6]
    for p in paths:
        img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
        if crop_to_aspect_ratio:
            ref = keras.preprocessing.image.smart_resize(img, (224, 224), interpolation=interpolation)
        else:
            ref = tf.image.resize(img, (224, 224), method=interpolation)
        ref = np.asarray(ref, np.float32)
        ours = ttdata.resize(img.numpy(), (224, 224), interpolation=interpolation,
                             crop_to_aspect_ratio=crop_to_aspect_ratio)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3, err_msg=p)
        ours_u8 = ttdata._core.resize(ttdata._default_pool(), img.numpy()[None], 224, 224,
                                      ttdata._INTERPOLATIONS[interpolation], False, crop_to_aspect_ratio, True)[0]
        assert np.abs(ours_u8.astype(np.float64) - ref).max() <= 0.5 + 1e-3, p


# ----------------------------------------------------------------------------------- 2. losses

def _loss_inputs(seed=0, n=64, c=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
    probs = tf.nn.softmax(logits).numpy()
    labels = rng.integers(0, c, n).astype(np.int32)
    return logits, probs, labels, np.eye(c, dtype=np.float32)[labels]


# Ours computes in float64, Keras in float32: per-sample losses agree to rtol 1e-5 (measured
# max relative difference 2.7e-6 categorical, 4e-7 sparse / binary), atol 1e-6 for losses near 0.
RTOL, ATOL = 1e-5, 1e-6


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_categorical_crossentropy_matches_keras(from_logits):
    logits, probs, labels, _ = _loss_inputs()
    pred = logits if from_logits else probs
    want = keras.losses.sparse_categorical_crossentropy(labels, pred, from_logits=from_logits).numpy()
    got = ttlosses.sparse_categorical_crossentropy(labels, pred, from_logits=from_logits)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_matches_keras(from_logits, label_smoothing):
    logits, probs, _, onehot = _loss_inputs(seed=1)
    pred = logits if from_logits else probs
    want = keras.losses.categorical_crossentropy(onehot, pred, from_logits=from_logits,
                                                 label_smoothing=label_smoothing).numpy()
    got = ttlosses.categorical_crossentropy(onehot, pred, from_logits=from_logits, label_smoothing=label_smoothing)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_matches_keras(from_logits, label_smoothing):
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(64, 3)).astype(np.float32)
    pred = logits if from_logits else tf.sigmoid(logits).numpy()
    target = rng.integers(0, 2, (64, 3)).astype(np.float32)
    want = keras.losses.binary_crossentropy(target, pred, from_logits=from_logits,
                                            label_smoothing=label_smoothing).numpy()
    got = ttlosses.binary_crossentropy(target, pred, from_logits=from_logits, label_smoothing=label_smoothing)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["SparseCategoricalCrossentropy", "CategoricalCrossentropy"])
def test_loss_objects_reduce_sample_weighted_sum_over_batch_size_as_keras(name):
    logits, probs, labels, onehot = _loss_inputs(seed=3)
    y = labels if name.startswith("Sparse") else onehot
    w = np.random.default_rng(3).uniform(0, 2, len(y)).astype(np.float32)
    w[:5] = 0.0
    want = float(getattr(keras.losses, name)()(y, probs, sample_weight=w))
    got = getattr(ttlosses, name)()(y, probs, sample_weight=w)
    assert got == pytest.approx(want, rel=RTOL)


# ---------------------------------------------------------------------------------- 3. metrics

def _streamed(metric, batches):
    for yt, yp, sw in batches:
        metric.update_state(yt, yp, sample_weight=sw)
    return float(metric.result())


def _metric_batches(seed=4, ties=False):
    """Three batches (y_true int, y_pred (n, 10), sample_weight or None); with ties, scores are
    rounded to 1 decimal so equal scores occur (Keras' in_top_k counts a tie as a hit)."""
    rng = np.random.default_rng(seed)
    out = []
    for n, weighted in ((32, False), (17, True), (9, True)):
        p = rng.dirichlet(np.ones(10), n).astype(np.float32)
        if ties:
            p = np.round(p * 4, 1).astype(np.float32)
        out.append((rng.integers(0, 10, n).astype(np.int32), p,
                    rng.uniform(0, 2, n).astype(np.float32) if weighted else None))
    return out


def test_accuracy_resolves_to_sparse_categorical_accuracy_and_matches_keras():
    batches = _metric_batches()
    ours = ttmetrics.get("accuracy", loss=ttlosses.get("sparse_categorical_crossentropy"))
    assert isinstance(ours, ttmetrics.SparseCategoricalAccuracy)
    want = _streamed(keras.metrics.SparseCategoricalAccuracy(), batches)
    assert _streamed(ours, batches) == pytest.approx(want, rel=1e-6)
    cat = [(np.eye(10, dtype=np.float32)[yt], yp, sw) for yt, yp, sw in batches]
    ours_cat = ttmetrics.get("accuracy", loss=ttlosses.get("categorical_crossentropy"))
    assert _streamed(ours_cat, cat) == pytest.approx(_streamed(keras.metrics.CategoricalAccuracy(), cat), rel=1e-6)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_sparse_top_k_categorical_accuracy_matches_keras(k, ties):
    batches = _metric_batches(seed=5 + k, ties=ties)
    want = _streamed(keras.metrics.SparseTopKCategoricalAccuracy(k=k), batches)
    assert _streamed(ttmetrics.SparseTopKCategoricalAccuracy(k=k), batches) == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------------ 4. Dense head training

def _head_pair(hidden, l2):
    """(ours, Keras) Sequentials with the same architecture and the same random initial weights."""
    ours_reg = tt.layers.L2(l2) if l2 else None
    keras_reg = keras.regularizers.L2(l2) if l2 else None
    ours = tt.Sequential(([tt.layers.Dense(16, activation="relu", kernel_regularizer=ours_reg)] if hidden else [])
                         + [tt.layers.Dense(5, activation="softmax", kernel_regularizer=ours_reg)])
    theirs = keras.Sequential([keras.Input((20,))]
                              + ([keras.layers.Dense(16, activation="relu", kernel_regularizer=keras_reg)]
                                 if hidden else [])
                              + [keras.layers.Dense(5, activation="softmax", kernel_regularizer=keras_reg)])
    ours.build((None, 20))
    rng = np.random.default_rng(11)
    weights = [rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return ours, theirs


_OPTIMIZERS = {
    "sgd": (lambda: tt.optimizers.SGD(0.1), lambda: keras.optimizers.SGD(0.1)),
    "sgd_momentum": (lambda: tt.optimizers.SGD(0.1, momentum=0.9), lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
    "adam": (lambda: tt.optimizers.Adam(0.01), lambda: keras.optimizers.Adam(0.01)),
}


@pytest.mark.parametrize("hidden, optimizer, class_weight, l2", [
    (False, "sgd", None, None),
    (True, "sgd", None, None),
    (True, "sgd_momentum", None, None),
    (True, "adam", None, None),
    (False, "sgd", {0: 2.0, 1: 0.5, 3: 3.0}, None),
    (True, "adam", {0: 2.0, 1: 0.5, 3: 3.0}, None),
    (True, "sgd", None, 0.01),
    (False, "adam", None, 0.05),
])
def test_fit_dense_head_matches_keras_weights_and_history(hidden, optimizer, class_weight, l2):
    # 2 epochs x 4 batches of 16 on fixed float32 data, no shuffling, same initial weights.
    # Measured: SGD final weights within 1.2e-7; Adam within 7.8e-6, at a kernel element whose
    # gradient is ~1e-4 of the median (-2.7e-6: a ReLU unit active on few samples), where float32
    # summation-order noise is a large part of the gradient and Adam's g / sqrt(v) normalization
    # turns it into a step of O(lr) scale; elsewhere Adam agrees to 6e-7. History losses within
    # relative 7e-7, accuracies equal. Tolerances: weights atol 5e-6 (SGD) / 3e-3 * lr = 3e-5
    # (Adam), losses rtol 1e-5, predictions atol 1e-4.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = rng.integers(0, 5, 64).astype(np.int32)
    ours, theirs = _head_pair(hidden, l2)
    make_ours, make_keras = _OPTIMIZERS[optimizer]
    ours.compile(optimizer=make_ours(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs.compile(optimizer=make_keras(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h_ours = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, class_weight=class_weight)
    h_keras = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, class_weight=class_weight)
    atol = 3e-5 if optimizer == "adam" else 5e-6
    for got, want in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    np.testing.assert_allclose(h_ours.history["loss"], h_keras.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_ours.history["accuracy"], h_keras.history["accuracy"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------ 5. augmentation

def _keras_flip(x, mode, flips):
    layer = keras.layers.RandomFlip(mode)
    return layer.transform_images(x, {"flips": np.asarray(flips).reshape(-1, 1, 1, 1), "input_shape": x.shape},
                                  training=True).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_random_flip_with_chosen_flips_equals_keras(dtype):
    x = _images(n=4).astype(dtype)
    flips = np.array([True, False, True, False])
    draws = np.where(flips, 0.25, 0.75)  # ours flips when the draw < 0.5
    for mode in ("horizontal", "vertical"):
        layer = tt.layers.RandomFlip(mode)
        layer._rng = FixedDraws(draws)
        got = layer(x, training=True)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, _keras_flip(x.astype(np.float32), mode, flips))  # exact
    layer = tt.layers.RandomFlip("horizontal_and_vertical")
    layer._rng = FixedDraws(draws, draws[::-1])  # horizontal draws first, then vertical
    want = _keras_flip(_keras_flip(x.astype(np.float32), "horizontal", flips), "vertical", flips[::-1])
    np.testing.assert_array_equal(layer(x, training=True), want)


_FILL_MODES = ["reflect", "constant", "nearest", "wrap"]
_INTERPOLATIONS = ["bilinear", "nearest"]


@pytest.mark.parametrize("interpolation", _INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", _FILL_MODES)
def test_affine_kernel_equals_tf_image_projective_transform_v3(fill_mode, interpolation):
    # The same float32 transforms (rotations, zooms in/out, shifts beyond the image) into our C
    # kernel and into TF's op: float32 results agree to 1e-3 on the [0, 255] scale (measured:
    # bit-identical); uint8 results are TF's float value rounded (|diff| <= 0.5 + 1e-3).
    x = _images(n=3)
    n, h, w, _ = x.shape
    transforms = np.concatenate([
        ttpre.rotation_transforms([0.3, -1.1, np.pi], h, w),
        ttpre.zoom_transforms([0.7, 1.3, 1.0], [0.8, 1.25, 0.5], h, w),
        ttpre.translation_transforms([5.5, -12.25, 40.0], [-7.3, 20.0, -60.0]),
    ]).astype(np.float32)
    for t in np.split(transforms, 3):
        for imgs in (x, np.round(x).astype(np.uint8)):
            got = ttdata._core.affine(ttdata._default_pool(), imgs, t, h, w, ttpre._INTERP[interpolation],
                                      ttpre._FILL_MODES[fill_mode], 7.0)
            want = tf.raw_ops.ImageProjectiveTransformV3(
                images=imgs.astype(np.float32), transforms=t, output_shape=[h, w], fill_value=7.0,
                interpolation=interpolation.upper(), fill_mode=fill_mode.upper()).numpy()
            assert got.dtype == imgs.dtype
            tol = 1e-3 if imgs.dtype == np.float32 else 0.5 + 1e-3
            assert np.abs(got.astype(np.float64) - want).max() <= tol


# Keras layers with a degenerate factor range (lower == upper) apply exactly that transform, so
# ours and Keras' layers can be compared as wholes. Keras builds the matrix in float32, ours in
# float64 (then float32): measured max difference 1.9e-3 on the [0, 255] scale (bilinear), 0
# (nearest). Bound: 5e-3. Parameters avoid coordinates that land exactly on the image edge,
# where "wrap" is discontinuous (TF's rule) and a 1-ulp matrix difference flips a whole row
# (e.g. a 180-degree rotation or a zoom of exactly 1.2 on 37 rows: measured 238 levels).
@pytest.mark.parametrize("interpolation", _INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", _FILL_MODES)
@pytest.mark.parametrize("layer, args", [
    ("RandomRotation", dict(factor=(0.1, 0.1))),
    ("RandomRotation", dict(factor=(-0.23, -0.23))),
    ("RandomZoom", dict(height_factor=(0.15, 0.15), width_factor=(-0.3, -0.3))),
    ("RandomZoom", dict(height_factor=(-0.25, -0.25))),
    ("RandomTranslation", dict(height_factor=(0.1, 0.1), width_factor=(-0.2, -0.2))),
])
def test_geometric_layers_with_fixed_factor_match_keras_layers(layer, args, fill_mode, interpolation):
    x = _images(n=2)
    kw = dict(args, fill_mode=fill_mode, interpolation=interpolation, fill_value=7.0)
    got = getattr(tt.layers, layer)(**kw)(x, training=True)
    want = getattr(keras.layers, layer)(**kw)(x, training=True).numpy()
    assert np.abs(got - want).max() <= 5e-3


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_random_brightness_with_fixed_factor_matches_keras(dtype):
    # factor=(f, f) makes Keras' delta f * (high - low) deterministic; results clip to value_range.
    # Measured: float32 identical; uint8 0.5 (Keras' x + 25.5 is a half, ours rounds it up).
    x = _images(n=3).astype(dtype)
    for f in (0.1, -0.35):
        got = tt.layers.RandomBrightness((f, f))(x, training=True)
        want = keras.layers.RandomBrightness((f, f))(x.astype(np.float32), training=True).numpy()
        assert got.dtype == dtype
        tol = 1e-3 if dtype == np.float32 else 0.5 + 1e-3  # uint8: Keras' value rounded
        assert np.abs(got.astype(np.float64) - want).max() <= tol


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_random_contrast_with_chosen_factors_matches_keras_and_tf_adjust_contrast(dtype):
    # Keras cannot fix the contrast factor through `factor` (its range is [1 - lower, 1 + upper]),
    # so the factors are given to Keras' transform_images and drawn by ours from FixedDraws.
    x = _images(n=3).astype(dtype)
    factors = np.array([0.55, 1.0, 1.45])
    layer = tt.layers.RandomContrast(0.5)
    layer._rng = FixedDraws(factors)
    got = layer(x, training=True).astype(np.float64)
    xf = x.astype(np.float32)
    want = keras.layers.RandomContrast(0.5).transform_images(
        xf, {"contrast_factor": factors.reshape(-1, 1, 1, 1).astype(np.float32)}, training=True).numpy()
    adjusted = np.stack([tf.image.adjust_contrast(xf[i], float(factors[i])).numpy() for i in range(3)])
    # Measured: float32 3.1e-5 (order of the mean's float32 sum), uint8 0.4985 (rounding).
    tol = 2e-3 if dtype == np.float32 else 0.5 + 2e-3
    assert np.abs(got - want).max() <= tol
    assert np.abs(got - np.clip(adjusted, 0, 255)).max() <= tol


# ------------------------------------------------------------- 6. preprocess_input / decode_predictions

@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_mobilenet_v2_preprocess_input_equals_keras(dtype):
    x = np.random.default_rng(9).integers(0, 256, (2, 5, 7, 3)).astype(dtype)
    want = keras.applications.mobilenet_v2.preprocess_input(x.copy())  # Keras may modify floats in place
    got = ttmnv2.preprocess_input(x)
    want = np.asarray(want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # the same float operations: bit-identical


@pytest.fixture
def keras_class_index(monkeypatch):
    """Keras' decode_predictions downloads imagenet_class_index.json (no network in tests). Its
    module caches the parsed index in ``imagenet_utils.CLASS_INDEX``, so a stand-in index is put
    there: column i -> (a made-up wnid, our label line i + 1). This compares which columns are
    picked, their order, scores and the column -> label-line offset, not Keras' own class names
    (which spell names with underscores and carry WordNet ids)."""
    from keras.src.applications import imagenet_utils
    names = (IMAGES / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines()
    index = {str(i): [f"n{i:08d}", names[i + 1]] for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", json.loads(json.dumps(index)))
    return names


@pytest.mark.parametrize("top", [1, 5])
def test_decode_predictions_on_keras_1000_columns_matches_keras(keras_class_index, top):
    preds = np.random.default_rng(10).dirichlet(np.ones(1000), 4).astype(np.float32)  # no ties
    want = keras.applications.mobilenet_v2.decode_predictions(preds, top=top)
    got = ttmnv2.decode_predictions(preds, top=top)
    assert len(got) == len(want) == 4
    for g_row, w_row in zip(got, want, strict=True):
        assert len(g_row) == len(w_row) == top
        for (g_id, g_name, g_score), (w_wnid, w_name, w_score) in zip(g_row, w_row, strict=True):
            assert int(g_id) == int(w_wnid[1:]) + 1  # our ids index the 1001-line label file
            assert g_name == w_name
            assert g_score == pytest.approx(float(w_score), rel=1e-7)


# ------------------------------------------------------------------- 7. MobileNetV2 architecture

def _keras_mobilenet_v2_with_tflite_weights(core):
    """keras.applications.MobileNetV2 (include_top=False, 224x224) carrying a .tflite model's
    dequantized weights. The .tflite graphs fold batch norm into each convolution's kernel and
    bias, so every Keras BatchNormalization becomes ``x + bias``: gamma 1, beta = the TFLite bias,
    moving mean 0, moving variance 1 - epsilon. Convolutions are matched in execution order (the
    52 before the classifier); kernels go from TFLite [O, KH, KW, I] (depthwise [1, KH, KW, C]) to
    Keras [KH, KW, I, O] ([KH, KW, C, 1]); op type, stride and kernel shape are checked per pair."""
    model = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
    convs = [op for op in core.ops if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    k_layers = list(model.layers)
    k_convs = [l for l in k_layers if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert (len(convs), len(k_convs)) == (53, 52)  # ours also has the 1x1 classifier conv
    for op, layer in zip(convs, k_convs):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        assert op["type"] == ("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"), layer.name
        assert (op["options"]["stride_h"], op["options"]["stride_w"]) == tuple(layer.strides), layer.name
        kernel = core.get_tensor(op["inputs"][1]).transpose(1, 2, 3, 0)
        bias = core.get_tensor(op["inputs"][2])
        assert kernel.shape == tuple(layer.kernel.shape), layer.name
        layer.set_weights([kernel])
        bn = k_layers[k_layers.index(layer) + 1]
        assert isinstance(bn, keras.layers.BatchNormalization), bn.name
        bn.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1.0 - bn.epsilon)])
    return model


@pytest.mark.parametrize("weights", ["imagenet_ptq", "imagenet_quant"])
def test_mobilenet_v2_feature_maps_match_keras_mobilenet_v2_with_the_same_weights(weights):
    # Keras' own MobileNetV2 graph (padding, strides, ReLU6, linear bottlenecks, residual adds)
    # with our model's weights must give our 7x7x1280 feature maps. float32 through 52
    # convolutions, different summation orders (oneDNN vs Eigen): measured max |diff| 8.6e-5
    # (ptq) / 1.1e-4 (quant) with max |ref| = 6.0 (ReLU6), i.e. 1.4e-5 / 1.8e-5 relative.
    # Bound: 1e-4 * max |ref|; the pooled 1280-d features: 2e-5 * max |ref|.
    ours = ttmnv2.MobileNetV2(weights=weights, include_top=False, input_shape=(224, 224, 3))
    theirs = _keras_mobilenet_v2_with_tflite_weights(ours.model)
    photos = np.stack([ttdata.load_img(p, target_size=(224, 224)) for p in sorted(IMAGES.glob("*.bmp"))])
    got = ours.predict(photos)
    want = theirs(ttmnv2.preprocess_input(photos), training=False).numpy()
    assert got.shape == want.shape == (5, 7, 7, 1280)
    scale = np.abs(want).max()
    assert scale > 1.0  # real activations, not a dead network
    assert np.abs(got - want).max() <= 1e-4 * scale
    pooled = ours.predict(photos, pooling="avg")
    assert np.abs(pooled - want.mean(axis=(1, 2))).max() <= 2e-5 * scale
