"""Bad input found by trying the package as a new user (after issue 9): each gives a Python
exception that names the argument or file, before any work is lost."""
import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import flowers, layers


@pytest.fixture(scope="module")
def model():
    base = tt.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet")
    m = tt.Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m


@pytest.mark.parametrize("x", ["hello", b"bytes", {"a": 1}], ids=["str", "bytes", "dict"])
def test_predict_on_a_non_array_names_x(model, x):
    # A str is iterable and sized, so it used to be taken for a dataset: "len() of unsized object".
    with pytest.raises(ValueError, match=rf"`x` must be a NumPy array or an ImageDataset. Received: {type(x).__name__}"):
        model.predict(x, verbose=0)


def test_trainable_is_stored_as_a_bool_as_in_keras(model):
    layer = model.layers[0].layers[10]
    layer.trainable = "yes"
    assert layer.trainable is True
    layer.trainable = 0
    assert layer.trainable is False
    dense = model.layers[-1]
    dense.trainable = None
    assert dense.trainable is False
    dense.trainable = True


def test_load_weights_on_a_non_weights_file_says_so_without_numpy_pickle_advice(model, tmp_path):
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    before = [w.copy() for w in model.layers[-1].get_weights()]
    with pytest.raises(ValueError, match="random.npz is not a weights file written by save_weights") as e:
        model.load_weights(bad)
    assert "allow_pickle" not in str(e.value)
    for a, b in zip(model.layers[-1].get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_flowers_job_checks_its_output_folder_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # directory does not exist: the output check must come first (before any data or training).
    with pytest.raises(OSError, match="a_file/out.*cannot be written.*--output"):
        flowers.run(directory=str(tmp_path / "no_such_photos"), output=str(blocker / "out"), print_fn=lambda *a: None)
