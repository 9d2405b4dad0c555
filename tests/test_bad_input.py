"""Bad input found by trying the package as a new user (after issue 9): each gives a Python
exception that names the argument or file, before any work is lost."""
import numpy as np
import pytest

import conftest
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


def test_load_img_refuses_a_target_size_over_the_pixel_limit(tmp_path):
    from conftest import FLOWERS

    photo = sorted((FLOWERS / "daisy").iterdir())[0]
    # Before: NumPy's "Unable to allocate ... EiB" MemoryError, naming no argument.
    with pytest.raises(ValueError, match=r"`target_size` asks for 1000000000000000000 pixels.*"
                                         r"Received: target_size=\(1000000000, 1000000000\)"):
        tt.data.load_img(photo, target_size=(10**9, 10**9))
    h, w, _ = tt.data.load_img(photo).shape
    with pytest.raises(ValueError, match=f"asks for {h * (w + 1)} pixels, over the limit of {h * w}"):
        tt.data.load_img(photo, target_size=(h, w + 1), max_pixels=h * w)
    assert tt.data.load_img(photo, target_size=(h, w), max_pixels=h * w).shape == (h, w, 3)


@pytest.mark.parametrize("labels", [["a", None, "c"], "abc", [1, 2, 3]], ids=["None", "str", "ints"])
def test_export_labels_must_be_class_name_strings(model, tmp_path, labels):
    # Before: [1, None, 3] was written as "1", "None", "3", and "abc" as three one-letter names.
    with pytest.raises(ValueError, match=r"`labels` must be a list of 3 class names \(str\)"):
        model.export(tmp_path / "m.tflite", labels=labels, verbose=False)
    assert not (tmp_path / "m.tflite").exists()


def test_export_creates_a_missing_folder_as_save_does(model, tmp_path):
    path = tmp_path / "new" / "deeper" / "m.tflite"
    size = model.export(path, labels=["a", "b", "c"], verbose=False)
    assert path.stat().st_size == size > 0


def test_saved_files_get_the_mode_of_any_new_file(model, tmp_path):
    # Before: save / save_weights wrote through tempfile.mkstemp and kept its private 0o600,
    # while export and open() give 0o666 less the umask (0o644 with the usual 0o022).
    import os
    import stat

    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.ttz")
        model.save_weights(tmp_path / "w.npz")
        model.export(tmp_path / "m.tflite", labels=["a", "b", "c"], verbose=False)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"m.ttz": 0o644, "w.npz": 0o644, "m.tflite": 0o644}, {k: oct(v) for k, v in modes.items()}


def test_base_predict_on_a_dataset_or_ragged_list_says_what_to_do(model, tmp_path):
    # Before: "x.shape=(), x.dtype=object" for a dataset, NumPy's "inhomogeneous shape" for a ragged list.
    base = model.layers[0]
    ds = tt.data.image_dataset_from_directory(conftest.FLOWERS, image_size=(224, 224), verbose=False)
    with pytest.raises(ValueError, match=r"put the base in a Sequential.*Received: x of type ImageDataset"):
        base.predict(ds)
    ragged = [np.zeros((224, 224, 3), np.uint8), np.zeros((100, 100, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"equally sized images .* Received: a list NumPy cannot stack"):
        base.predict(ragged)


def test_sample_weight_is_a_clear_not_implemented_error(model):
    # Before: Python's "fit() got an unexpected keyword argument 'sample_weight'".
    x, y = np.zeros((2, 224, 224, 3), np.uint8), np.array([0, 1])
    for call in (model.fit, model.evaluate):
        with pytest.raises(NotImplementedError, match=r"`sample_weight` is not supported yet.*class_weight"):
            call(x, y, sample_weight=np.ones(2), verbose=0)
