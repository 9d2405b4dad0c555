"""callbacks.TensorBoard: the event files of a 2-epoch fit, read back with the tensorboard
package's own reader (EventAccumulator), hold History's numbers; no TensorFlow involved."""
import numpy as np
import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

import tflite_transfer as tt  # noqa: E402
from tflite_transfer import callbacks as C  # noqa: E402
from tflite_transfer import layers as L  # noqa: E402


def _data(n=64):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (np.eye(3)[y] * 2 + rng.normal(size=(n, 3))).astype(np.float32)
    return x, y


def _scalars(run_dir):
    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.TENSORS: 0, ea.IMAGES: 0})
    acc.Reload()
    out = {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
           for tag in acc.Tags()["tensors"]}
    return out, acc


def _fit(tmp_path, **kw):
    L.set_random_seed(0)
    x, y = _data()
    m = tt.Sequential([L.Dense(3, activation="softmax", seed=0)])
    m.compile(tt.optimizers.Adam(tt.optimizers.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)),
              "sparse_categorical_crossentropy", ["accuracy"])
    tb = C.TensorBoard(tmp_path / "logs", **kw)
    h = m.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=2, batch_size=16, verbose=0, callbacks=[tb])
    return m, h, (x[48:], y[48:])


def test_event_files_match_history(tmp_path):
    m, h, _ = _fit(tmp_path)
    train, _ = _scalars(tmp_path / "logs" / "train")
    val, _ = _scalars(tmp_path / "logs" / "validation")
    assert sorted(train) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(val) == ["epoch_accuracy", "epoch_loss"]
    for k in ("loss", "accuracy"):
        assert [s for s, _ in train["epoch_" + k]] == [0, 1]
        # float32 tensors: History's float64 values rounded to float32.
        np.testing.assert_allclose([v for _, v in train["epoch_" + k]], h.history[k], rtol=1e-6, atol=0)
        np.testing.assert_allclose([v for _, v in val["epoch_" + k]], h.history["val_" + k], rtol=1e-6, atol=0)
    # learning rate at the end of each epoch: 3 steps per epoch, 0.05 * 0.5 ** (iterations / 2)
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [0.05 * 0.5 ** 1.5, 0.05 * 0.5 ** 3],
                               rtol=1e-6)


def test_scalar_metadata_is_the_scalars_plugin(tmp_path):
    _fit(tmp_path)
    _, acc = _scalars(tmp_path / "logs" / "train")
    assert acc.SummaryMetadata("epoch_loss").plugin_data.plugin_name == "scalars"


def test_confusion_matrix_image_at_train_end(tmp_path):
    import io

    from PIL import Image

    x, y = _data()
    _fit(tmp_path, confusion_matrix_data=(x[48:], y[48:]), class_names=["a", "b", "c"])
    _, acc = _scalars(tmp_path / "logs" / "validation")
    assert acc.Tags()["images"] == ["confusion_matrix"]
    (img,) = acc.Images("confusion_matrix")
    assert img.step == 1  # the last epoch
    assert img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    pil = Image.open(io.BytesIO(img.encoded_image_string))
    assert (pil.width, pil.height) == (img.width, img.height)


def test_bad_update_freq():
    with pytest.raises(ValueError, match="update_freq"):
        C.TensorBoard("logs", update_freq="batch")


def test_writing_does_not_import_tensorflow(tmp_path):
    """Even with TensorFlow installed, the callback writes without importing it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, tflite_transfer as tt\n"
            "m = tt.Sequential([tt.layers.Dense(2, activation='softmax')])\n"
            "m.compile('sgd', 'sparse_categorical_crossentropy', ['accuracy'])\n"
            f"m.fit(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]), epochs=1, verbose=0, "
            f"callbacks=[tt.callbacks.TensorBoard({str(tmp_path / 'logs')!r})])\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path.parent),
                   env={**__import__("os").environ,
                        "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parent.parent)})
    assert len(list((tmp_path / "logs" / "train").iterdir())) == 1
