"""Callbacks: EarlyStopping (restore_best_weights), ModelCheckpoint (atomic,
save_best_only, {epoch:02d}), ReduceLROnPlateau, CSVLogger, LambdaCallback."""
import csv
import os

import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import callbacks as C
from tflite_transfer import layers as L
from tflite_transfer.models import load_model


@pytest.fixture(autouse=True)
def _seeded():
    L.set_random_seed(0)


def _data(n=60):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = (np.eye(2)[y] * 3 + rng.normal(size=(n, 2))).astype(np.float32)
    return x, y


def _model(lr=0.05):
    m = tt.Sequential([L.Dense(2, activation="softmax", seed=0)])
    m.compile(tt.optimizers.SGD(lr), "sparse_categorical_crossentropy", ["accuracy"])
    return m


class _Scripted(C.Callback):
    """Overwrites logs[key] with a scripted sequence (runs before the callbacks under test)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    x, y = _data()
    m = _model()
    snapshots = []
    keep = C.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(m.get_weights()))
    es = C.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    script = _Scripted("val_loss", [1.0, 0.5, 0.7, 0.6, 0.4, 0.3])
    h = m.fit(x, y, epochs=6, validation_data=(x, y), callbacks=[script, keep, es], verbose=0)
    assert h.epoch == [0, 1, 2, 3]  # best at epoch 1, then 2 epochs without improvement
    assert es.stopped_epoch == 3 and es.best_epoch == 1
    for a, b in zip(m.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_mode_auto_maximizes_accuracy_and_start_from_epoch():
    x, y = _data()
    m = _model()
    es = C.EarlyStopping(monitor="val_accuracy", patience=0, start_from_epoch=2)
    script = _Scripted("val_accuracy", [0.1, 0.1, 0.5, 0.9, 0.8, 0.95])
    h = m.fit(x, y, epochs=6, validation_data=(x, y), callbacks=[script, es], verbose=0)
    assert es.mode == "max" and h.epoch == [0, 1, 2, 3, 4]


def test_model_checkpoint_save_best_only_is_atomic_and_formats_epoch(tmp_path):
    x, y = _data()
    m = _model()
    script = _Scripted("val_loss", [0.9, 0.5, 0.7, 0.4])
    ck = C.ModelCheckpoint(str(tmp_path / "m_{epoch:02d}.ttz"), monitor="val_loss", save_best_only=True)
    m.fit(x, y, epochs=4, validation_data=(x, y), callbacks=[script, ck], verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["m_01.ttz", "m_02.ttz", "m_04.ttz"]  # no .tmp leftovers
    np.testing.assert_array_equal(load_model(tmp_path / "m_04.ttz").predict(x, verbose=0), m.predict(x, verbose=0))


def test_model_checkpoint_weights_only_overwrites_one_file(tmp_path):
    x, y = _data()
    m = _model()
    path = tmp_path / "w.npz"
    m.fit(x, y, epochs=2, callbacks=[C.ModelCheckpoint(str(path), save_weights_only=True)], verbose=0)
    fresh = _model()
    fresh.build(m._build_shape)
    fresh.load_weights(path)  # the file is readable back (issue 9, item 11)
    for a, b in zip(fresh.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["w.npz"]


def test_reduce_lr_on_plateau_cuts_the_rate():
    x, y = _data()
    m = _model(lr=0.1)
    script = _Scripted("val_loss", [1.0, 1.0, 1.0, 1.0, 1.0])
    r = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.03)
    h = m.fit(x, y, epochs=5, validation_data=(x, y), callbacks=[script, r], verbose=0)
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])
    assert m.optimizer.learning_rate == pytest.approx(0.03)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = _data()
    m = _model()
    path = tmp_path / "log.csv"
    h = m.fit(x, y, epochs=3, validation_split=0.25, callbacks=[C.CSVLogger(str(path))], verbose=0)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows], h.history["val_loss"], rtol=1e-12)


def test_lambda_callback_and_batch_hooks():
    x, y = _data(n=40)
    m = _model()
    seen = []
    cb = C.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(("b", b)),
                          on_epoch_end=lambda e, logs: seen.append(("e", e)))
    m.fit(x, y, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    assert seen == [("b", 0), ("b", 1), ("b", 2), ("e", 0), ("b", 0), ("b", 1), ("b", 2), ("e", 1)]


def test_callback_errors_name_the_problem():
    x, y = _data()
    with pytest.raises(ValueError, match="monitor"):
        _model().fit(x, y, epochs=1, callbacks=[C.EarlyStopping(monitor="val_loss")], verbose=0)
    with pytest.raises(ValueError, match="callbacks"):
        _model().fit(x, y, epochs=1, callbacks=[object()], verbose=0)
    with pytest.raises(ValueError, match="mode"):
        C.EarlyStopping(mode="up")
