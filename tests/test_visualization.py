"""visualization: each figure renders to PNG with the Agg canvas and shows what it should
(axes labels, number of images, the matrix values held by the image, bar heights)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import confusion_matrix as sk_cm  # noqa: E402
from sklearn.metrics import precision_score, recall_score  # noqa: E402

import tflite_transfer as tt  # noqa: E402
from tflite_transfer import evaluation, visualization as V  # noqa: E402
from tflite_transfer import layers as L  # noqa: E402
from tflite_transfer.callbacks import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _png(fig, tmp_path, name="f.png"):
    p = tmp_path / name
    fig.savefig(p)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return p


def _history(values, start=0):
    h = History()
    h.epoch = list(range(start, start + len(values["loss"])))
    h.history = values
    return h


def test_history_panels_labels_and_values(tmp_path):
    h = _history({"loss": [1.0, 0.5, 0.25], "accuracy": [0.5, 0.7, 0.9],
                  "val_loss": [1.1, 0.6, 0.4], "val_accuracy": [0.4, 0.6, 0.8]})
    fig = V.plot_history(h)
    _png(fig, tmp_path)
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "accuracy"]
    assert all(a.get_xlabel() == "epoch" for a in fig.axes)
    lines = {ln.get_label(): ln for ln in fig.axes[1].get_lines()}
    np.testing.assert_array_equal(lines["validation accuracy"].get_ydata(), [0.4, 0.6, 0.8])
    np.testing.assert_array_equal(lines["training accuracy"].get_xdata(), [1, 2, 3])  # 1-based epochs
    assert "start of fine-tuning" not in lines


def test_history_with_fine_tuning_marker(tmp_path):
    h1 = _history({"loss": [1.0, 0.5], "val_loss": [1.0, 0.7]})
    h2 = _history({"loss": [0.3, 0.2], "val_loss": [0.5, 0.45]}, start=2)  # fit(initial_epoch=2)
    fig = V.plot_history(h1, fine_tune_history=h2)
    _png(fig, tmp_path)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["training loss"].get_ydata(), [1.0, 0.5, 0.3, 0.2])
    np.testing.assert_array_equal(lines["training loss"].get_xdata(), [1, 2, 3, 4])
    # The marker sits between the last frozen epoch (2) and the first fine-tuning epoch (3).
    np.testing.assert_array_equal(lines["start of fine-tuning"].get_xdata(), [2.5, 2.5])


def test_history_fine_tuning_as_the_tutorial():
    """initial_epoch=history.epoch[-1]: fit numbers the first fine-tuning epoch as the last frozen one."""
    h1 = _history({"loss": [1.0, 0.5]})
    h2 = _history({"loss": [0.4, 0.3]}, start=1)
    fig = V.plot_history(h1, fine_tune_history=h2)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["training loss"].get_xdata(), [1, 2, 2, 3])
    np.testing.assert_array_equal(lines["start of fine-tuning"].get_xdata(), [2, 2])


def test_history_fine_tuning_restarting_at_zero_continues():
    h1 = _history({"loss": [1.0, 0.5]})
    h2 = _history({"loss": [0.4]})
    lines = {ln.get_label(): ln for ln in V.plot_history(h1, fine_tune_history=h2).axes[0].get_lines()}
    np.testing.assert_array_equal(lines["training loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["start of fine-tuning"].get_xdata(), [2.5, 2.5])


def test_history_unknown_metric_raises():
    with pytest.raises(ValueError, match="auc"):
        V.plot_history({"loss": [1.0]}, metrics=["auc"])


def test_history_uses_given_axes():
    fig, ax = plt.subplots(1, 2)
    out = V.plot_history({"loss": [1.0, 0.5], "accuracy": [0.1, 0.2]}, ax=ax)
    assert out is fig and ax[1].get_ylabel() == "accuracy"
    with pytest.raises(ValueError, match="at least 2 Axes"):
        V.plot_history({"loss": [1.0, 0.5], "accuracy": [0.1, 0.2]}, ax=ax[0])


def test_confusion_matrix_counts_and_normalized(tmp_path):
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    names = ["a", "b", "c"]
    fig = V.plot_confusion_matrix(y_true, y_pred, class_names=names, normalize="both")
    _png(fig, tmp_path)
    expected = sk_cm(y_true, y_pred)
    counts = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(counts, expected)
    normed = fig.axes[1].images[0].get_array()
    np.testing.assert_allclose(normed, expected / expected.sum(axis=1, keepdims=True), rtol=0, atol=1e-12)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Predicted label" and ax.get_ylabel() == "True label"
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    # The values are written in the cells, as in the seed's plot_confusion_matrix.
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(str(v) for v in expected.ravel())


def test_confusion_matrix_bad_normalize():
    with pytest.raises(ValueError, match="normalize"):
        V.plot_confusion_matrix([0], [0], normalize="all")


def test_precision_recall_bars(tmp_path):
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    fig = V.plot_precision_recall(y_true, y_pred, class_names=["a", "b", "c"])
    _png(fig, tmp_path)
    ax = fig.axes[0]
    heights = np.array([p.get_height() for p in ax.patches])
    assert len(heights) == 6
    np.testing.assert_allclose(heights[:3], precision_score(y_true, y_pred, average=None), atol=1e-12)
    np.testing.assert_allclose(heights[3:], recall_score(y_true, y_pred, average=None), atol=1e-12)
    assert ax.get_ylabel() == "score"


def test_images_grid_count_and_titles(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    fig = V.plot_images(x, np.array([0, 1, 0, 1, 1]), class_names=["cat", "dog"], max_images=4, ncols=2)
    _png(fig, tmp_path)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 4
    assert [a.get_title() for a in shown] == ["cat", "dog", "cat", "dog"]
    np.testing.assert_array_equal(shown[2].images[0].get_array(), x[2])


def test_misclassified_grid_from_arrays(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, size=(3, 6, 6, 3), dtype=np.uint8)
    fig = V.plot_misclassified(images=x, y_true=[0, 1, 1], y_pred=[1, 0, 0], confidence=[0.9, 0.55, 0.6],
                               class_names=["cat", "dog"])
    _png(fig, tmp_path)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 3
    assert shown[0].get_title() == "true: cat\npred: dog (0.90)"
    np.testing.assert_array_equal(shown[1].images[0].get_array(), x[1])


def test_misclassified_grid_from_report_files(tmp_path):
    """A report over a folder dataset: the grid loads exactly the misclassified files."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls in ("a", "b"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)).save(
                tmp_path / "ds" / cls / f"{i}.png")
    ds = tt.data.image_dataset_from_directory(str(tmp_path / "ds"), image_size=(10, 10), batch_size=4,
                                             shuffle=False)

    class Constant:  # predicts class "a" for everything: the 3 "b" images are the mistakes
        def predict(self, x, batch_size=32, verbose=0):
            return np.tile(np.array([[0.8, 0.2]], np.float32), (len(x), 1))

    rep = evaluation.report(Constant(), ds)
    fig = V.plot_misclassified(rep, image_size=(10, 10))
    _png(fig, tmp_path)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 3
    assert all(a.get_title() == "true: b\npred: a (0.80)" for a in shown)
    np.testing.assert_array_equal(shown[0].images[0].get_array(),
                                  tt.data.load_img(rep.misclassified_paths[0], target_size=(10, 10)))


def test_augmented_samples_grid(tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 255  # left half white: a horizontal flip moves it right
    fig = V.plot_augmented_samples(L.RandomFlip("horizontal", seed=3), img, num_samples=6)
    _png(fig, tmp_path)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 6 and shown[0].get_title() == "original"
    arrays = [np.asarray(a.images[0].get_array()) for a in shown]
    np.testing.assert_array_equal(arrays[0], img)
    flipped = img[:, ::-1]
    assert all(np.array_equal(a, img) or np.array_equal(a, flipped) for a in arrays[1:])
    assert any(np.array_equal(a, flipped) for a in arrays[1:])  # 5 draws of p=0.5, seed 3


def test_save_evaluation_figures(tmp_path):
    rep_y = np.array([0, 1, 1, 0])

    class Model:
        def predict(self, x, batch_size=32, verbose=0):
            return np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)[: len(x)]

    rep = evaluation.report(Model(), np.zeros((4, 2, 2, 3), np.uint8), rep_y)
    out = V.save_evaluation_figures(tmp_path / "figs", history={"loss": [1.0, 0.5]}, report=rep)
    assert sorted(out) == ["confusion_matrix", "precision_recall", "training_curves"]
    for p in out.values():
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
