"""evaluation.report: predictions, labels and paths line up with the dataset's file order; the
report and matrix are scikit-learn's on those."""
import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix

import tflite_transfer as tt
from tflite_transfer import evaluation


class _ByPixel:
    """Predicts from the image itself (class = mean of pixel [0, 0] > 127), so a misaligned
    image/label order would show as wrong predictions."""

    def predict(self, x, batch_size=32, verbose=0):
        p = (np.asarray(x)[:, 0, 0, 0] > 127).astype(np.float32)
        return np.stack([1 - 0.9 * p - 0.05, 0.9 * p + 0.05], axis=1)


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    # class "dark": 4 dark images and 1 bright (a mistake); class "light": 5 bright, 1 dark.
    spec = {"dark": [20, 30, 40, 200, 50], "light": [220, 230, 10, 240, 250, 210]}
    for cls, vals in spec.items():
        (tmp_path / cls).mkdir()
        for i, v in enumerate(vals):
            Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(tmp_path / cls / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("shuffle", [False, True])
def test_report_on_folder_dataset(folder, shuffle):
    ds = tt.data.image_dataset_from_directory(str(folder), image_size=(8, 8), batch_size=4, shuffle=shuffle,
                                             seed=5)
    list(ds)  # advance the epoch: a shuffling dataset would now yield another order
    rep = evaluation.report(_ByPixel(), ds)
    assert rep.file_paths == ds.file_paths
    np.testing.assert_array_equal(rep.y_true, ds.labels)
    expected_pred = np.array([int("dark" in p and p.endswith("3.png") or "light" in p and not p.endswith("2.png"))
                              for p in ds.file_paths])
    np.testing.assert_array_equal(rep.y_pred, expected_pred)
    assert sorted(rep.misclassified_paths) == sorted([str(folder / "dark" / "3.png"), str(folder / "light" / "2.png")])
    assert rep.class_names == ["dark", "light"]
    np.testing.assert_array_equal(rep.confusion_matrix, [[4, 1], [1, 5]])
    assert rep.classification_report == classification_report(rep.y_true, rep.y_pred, target_names=["dark", "light"],
                                                              digits=4, zero_division=0)
    assert rep.classification_report_dict["light"]["recall"] == pytest.approx(5 / 6, abs=1e-12)
    assert rep.accuracy == pytest.approx(9 / 11, abs=1e-12)
    np.testing.assert_allclose(rep.confidence, 0.95, atol=1e-6)


def test_report_on_arrays_one_hot_and_binary():
    x = np.zeros((4, 2, 2, 3), np.uint8)
    x[[1, 3], 0, 0, 0] = 255
    rep = evaluation.report(_ByPixel(), x, np.eye(2)[[0, 1, 1, 1]], class_names=["a", "b"])
    np.testing.assert_array_equal(rep.y_true, [0, 1, 1, 1])
    np.testing.assert_array_equal(rep.misclassified, [2])
    np.testing.assert_array_equal(rep.confusion_matrix, confusion_matrix([0, 1, 1, 1], [0, 1, 0, 1]))
    assert rep.file_paths is None and rep.misclassified_paths is None

    class Sigmoid:
        def predict(self, x, batch_size=32, verbose=0):
            return np.array([[0.2], [0.7]], np.float32)

    rep = evaluation.report(Sigmoid(), np.zeros((2, 1, 1, 3)), np.array([[0.0], [0.0]]))
    np.testing.assert_array_equal(rep.y_pred, [0, 1])
    np.testing.assert_allclose(rep.probabilities, [[0.8, 0.2], [0.3, 0.7]], atol=1e-6)


def test_report_argument_errors(folder):
    ds = tt.data.image_dataset_from_directory(str(folder), image_size=(8, 8), batch_size=4)
    with pytest.raises(ValueError, match="`y` must be None"):
        evaluation.report(_ByPixel(), ds, np.zeros(11))
    with pytest.raises(ValueError, match="`y` is required"):
        evaluation.report(_ByPixel(), np.zeros((2, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        evaluation.report(_ByPixel(), np.zeros((2, 2, 2, 3)), np.array([0, 2]))
    with pytest.raises(ValueError, match="class_names"):
        evaluation.report(_ByPixel(), np.zeros((2, 2, 2, 3)), np.array([0, 1]), class_names=["a", "b", "c"])


def test_report_with_real_model_matches_predict(folder):
    """A real tt.Sequential: the report's probabilities are predict's on the same images."""
    from tflite_transfer import layers as L

    L.set_random_seed(0)
    m = tt.Sequential([L.Rescaling(1 / 255.0), L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax", seed=0)])
    m.compile(tt.optimizers.SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    ds = tt.data.image_dataset_from_directory(str(folder), image_size=(8, 8), batch_size=4, shuffle=False)
    x, y = ds.as_numpy()
    rep = evaluation.report(m, ds)
    np.testing.assert_allclose(rep.probabilities, m.predict(x, verbose=0), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(rep.y_true, y)
