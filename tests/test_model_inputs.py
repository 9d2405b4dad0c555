"""Bad and unusual arrays given to MobileNetV2.predict / __call__: each bad one is
a ValueError naming `x` (Keras-style "Received: x.shape=..., x.dtype=..."),
raised before the engine runs and leaving the model usable; odd but valid ones
(non-contiguous, float64, float16, uint8) give the same result as the plain
float32 C-contiguous batch."""
import warnings

import numpy as np
import pytest

from tflite_transfer import applications
from tflite_transfer.applications import mobilenet_v2 as mv


@pytest.fixture(scope="module")
def model():
    return applications.MobileNetV2(include_top=False, pooling="avg")


@pytest.fixture(scope="module")
def images():
    """Two uint8 RGB images (2, 224, 224, 3)."""
    return np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def expected(model, images):
    return model.predict(mv.preprocess_input(images))


@pytest.mark.parametrize("x,match", [
    (np.zeros((224, 224, 3), np.float32), "batch"),          # a single image: Keras asks for the batch axis
    (np.zeros((224, 224, 3), np.uint8), "np.expand_dims"),
    (np.zeros((2, 3), np.float32), "4D"),
    (np.zeros((1, 1, 224, 224, 3), np.float32), "4D"),
    (np.zeros((1, 225, 224, 3), np.float32), r"\(N, 224, 224, 3\)"),
    (np.zeros((1, 224, 224, 4), np.float32), r"\(N, 224, 224, 3\)"),
    (np.zeros((1, 3, 224, 224), np.float32), r"\(N, 224, 224, 3\)"),   # channels-first
    (np.zeros((0, 224, 224, 3), np.float32), "empty"),
    (np.zeros((1, 224, 224, 3), np.int64), "uint8"),
    (np.zeros((1, 224, 224, 3), bool), "uint8"),
    (np.zeros((1, 224, 224, 3), np.complex64), "uint8"),
    (np.zeros((1, 224, 224, 3), object), "uint8"),
])
def test_bad_arrays_raise_value_error_naming_x(model, x, match):
    with pytest.raises(ValueError, match=match) as e:
        model.predict(x)
    msg = str(e.value)
    assert "`x`" in msg and f"x.shape={x.shape}" in msg and f"x.dtype={x.dtype}" in msg


@pytest.mark.parametrize("x", [None, "photo.jpg", {"x": 1}])
def test_not_an_array_says_its_type(model, x):
    # was: "must be uint8 RGB ... x.shape=(), x.dtype=object" (np.asarray of a non-array)
    with pytest.raises(ValueError, match=rf"`x` must be an array of images .*Received: x of type {type(x).__name__}"):
        model.predict(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(model, bad):
    x = np.zeros((2, 224, 224, 3), np.float32)
    x[1, 100, 7, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(x)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "8", True, None])
def test_bad_batch_size(model, images, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(images, batch_size=batch_size)


def test_bad_pooling_override(model, images):
    with pytest.raises(ValueError, match="pooling"):
        model.predict(images, pooling="sum")


def test_call_validates_too(model):
    with pytest.raises(ValueError, match="batch"):
        model(np.zeros((224, 224, 3), np.float32))


def test_errors_leave_the_model_usable(model, images, expected):
    for bad in (np.zeros((1, 5, 5, 3), np.float32), np.full((1, 224, 224, 3), np.nan, np.float32)):
        with pytest.raises(ValueError):
            model.predict(bad)
    np.testing.assert_array_equal(model.predict(mv.preprocess_input(images)), expected)


def test_uint8_is_preprocessed_inside(model, images, expected):
    np.testing.assert_array_equal(model.predict(images), expected)


@pytest.mark.parametrize("view", ["flipped", "strided", "fortran", "channel_slice"])
def test_non_contiguous_input(model, images, expected, view):
    """Views are copied to a C-contiguous float32 batch, giving the same features as a copy."""
    x = mv.preprocess_input(images)
    if view == "flipped":
        v = x[:, ::-1]
    elif view == "strided":
        big = np.zeros((4, 224, 224, 3), np.float32)
        big[::2] = x
        v = big[::2]
    elif view == "fortran":
        v = np.asfortranarray(x)
    else:
        big = np.zeros((2, 224, 224, 5), np.float32)
        big[..., 1:4] = x
        v = big[..., 1:4]
    assert not v.flags.c_contiguous
    out = model.predict(v)
    np.testing.assert_array_equal(out, model.predict(np.ascontiguousarray(v)))
    if view != "flipped":
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_dtypes(model, images, dtype):
    x = mv.preprocess_input(images)
    out = model.predict(x.astype(dtype))
    np.testing.assert_array_equal(out, model.predict(x.astype(dtype).astype(np.float32)))


def test_nested_list_of_floats(model, images, expected):
    np.testing.assert_array_equal(model.predict(mv.preprocess_input(images).tolist()), expected)


# -- the preprocess_input warning ------------------------------------------------------------
def test_unscaled_float_input_warns_about_preprocess_input(model, images):
    model._scale_warned = False  # the warning comes once per model; this fixture is shared
    with pytest.warns(UserWarning, match="preprocess_input"):
        model.predict(images.astype(np.float32))


def test_negative_out_of_range_float_warns(model):
    x = np.full((1, 224, 224, 3), -2.0, np.float32)
    model._scale_warned = False  # once per model; the fixture is shared
    with pytest.warns(UserWarning, match="preprocess_input"):
        model.predict(x)


def test_preprocessed_float_input_does_not_warn(model, images):
    x = mv.preprocess_input(images)
    x[0, 0, 0, 0] = 1.4  # slightly outside [-1, 1] (e.g. after augmentation) is tolerated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x)
        model.predict(images)  # uint8 is preprocessed inside: no warning


def test_one_model_shared_by_threads(model, images, expected):
    """Concurrent predict() calls on one model (the engine serializes runs, the GIL is
    released while it computes) give the same results as serial calls."""
    import threading

    x = mv.preprocess_input(images)
    got = [None] * 4

    def work(i):
        got[i] = model.predict(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, expected)


def test_weights_that_is_a_folder_says_so(tmp_path):
    import pytest

    from tflite_transfer import applications

    with pytest.raises(IsADirectoryError, match="is a folder"):
        applications.MobileNetV2(weights=str(tmp_path))
