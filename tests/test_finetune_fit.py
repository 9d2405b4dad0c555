"""Sequential.fit with a trainable MobileNetV2 base (models/finetune.py): the two paths, the cut
cache in RAM and memory-mapped, one optimizer step equal to the gradients of the engine applied
by hand, frozen tensors untouched, save/load in a new process, errors.

Small inputs (96 x 96, a few images) keep it quick; the gradients themselves are checked against
Keras and float64 in test_finetune_grad.py and test_backward.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import layers as L
from tflite_transfer.models.finetune import BaseTuner

HW = (96, 96, 3)


def _data(n=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + HW, dtype=np.uint8), rng.integers(0, classes, n)


def _model(fine_tune_at, augment=False, opt=None):
    base = tt.applications.MobileNetV2(input_shape=HW, include_top=False, weights="imagenet")
    base.fine_tune_from(fine_tune_at)
    pre = [L.RandomFlip("horizontal", seed=1)] if augment else []
    m = tt.Sequential(pre + [base, L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    m.compile(opt or tt.optimizers.SGD(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    return m, base


def _trained_and_frozen(base):
    masks = base.trainable_op_masks()
    trained, frozen = [], []
    for op in base.model.ops:
        if op["index"] in masks:
            k, b = masks[op["index"]]
            (trained if k else frozen).append(op["inputs"][1])
            (trained if b else frozen).append(op["inputs"][2])
    return trained, frozen


def test_feature_cache_path_trains_only_the_top(capsys):
    x, y = _data()
    m, base = _model(140)
    trained, frozen = _trained_and_frozen(base)
    before = {t: base.model.get_tensor(t) for t in trained + frozen}
    h = m.fit(x, y, batch_size=4, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "path: feature_cache" in out and "fine-tuning" in out and "cut cached" in out
    assert m.last_fit_path == "feature_cache" and h.params["fine_tune"]["cut_memory_mapped"] is False
    assert np.isfinite(h.history["loss"][0])
    assert all(not np.array_equal(base.model.get_tensor(t), before[t]) for t in trained)
    assert all(np.array_equal(base.model.get_tensor(t), before[t]) for t in frozen)
    assert sorted(base._fine_tuned) == sorted(trained)


@pytest.mark.parametrize("wd", [None, 0.5])
def test_one_step_applies_the_engine_gradients(wd):
    # SGD(lr, weight_decay), one batch of all samples, no shuffle: w' = w (1 - lr wd) - lr dL/dw
    # (Keras' decoupled decay, then the update), with dL/dw from the engine and the head's
    # gradient from NumPy (float64).
    x, y = _data(6)
    lr = 0.1
    m, base = _model(140, opt=tt.optimizers.SGD(lr, weight_decay=wd))
    m.build((None,) + HW)
    dense = m.layers[-1]
    k0, b0 = dense.kernel.copy(), dense.bias.copy()
    tuner = BaseTuner(base)
    f = tuner.forward(base._prepare(x)).astype(np.float64)
    z = f @ k0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[y]) / len(x)
    grads, variables = tuner.backward((dz @ k0.T).astype(np.float32))
    decay = 1 - lr * (wd or 0)
    want = {t: tuner.values[t] * decay - lr * tuner.grads[t] for t in tuner.values if tuner.trainable[t]}
    m.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(dense.kernel, k0 * decay - lr * (f.T @ dz), rtol=0, atol=1e-6)
    for t, w in want.items():
        got = base.model.get_tensor(t).ravel()
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-6 * max(1.0, np.abs(w).max()))


def test_cut_cache_is_memory_mapped_over_the_budget(monkeypatch, capsys):
    x, y = _data()
    monkeypatch.setenv("TFLITE_TRANSFER_CACHE_MB", "0.01")
    m, base = _model(140)
    h = m.fit(x, y, batch_size=4, epochs=2, verbose=1)
    assert h.params["fine_tune"]["cut_memory_mapped"] is True
    assert "MiB in /" in capsys.readouterr().out  # the temporary folder
    assert len(h.history["loss"]) == 2 and all(np.isfinite(h.history["loss"]))


def test_cut_cache_on_disk_trains_like_in_ram(monkeypatch):
    x, y = _data()
    results, head = [], None
    for mb in ("1024", "0.01"):
        monkeypatch.setenv("TFLITE_TRANSFER_CACHE_MB", mb)
        m, base = _model(140)
        m.build((None,) + HW)
        if head is None:
            head = m.layers[-1].get_weights()
        m.layers[-1].set_weights(head)  # same initial head in both runs
        h = m.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        assert h.params["fine_tune"]["cut_memory_mapped"] is (mb == "0.01")
        results.append(m.predict(x, verbose=0))
    np.testing.assert_array_equal(results[0], results[1])


def test_augmentation_runs_per_batch(capsys):
    x, y = _data(8)
    m, base = _model(140, augment=True)
    h = m.fit(x, y, batch_size=4, epochs=1, verbose=1, validation_data=(x[:4], y[:4]))
    assert "path: per_batch" in capsys.readouterr().out
    assert m.last_fit_path == "per_batch" and "val_accuracy" in h.history


def test_saved_fine_tuned_model_predicts_identically_in_a_new_process(tmp_path):
    x, y = _data(8)
    m, base = _model(140)
    m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "ft.ttz"
    m.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", m.predict(x, verbose=0))
    code = ("import numpy as np, sys, tflite_transfer as tt; d = sys.argv[1]; "
            "m = tt.models.load_model(d + '/ft.ttz'); "
            "p = m.predict(np.load(d + '/x.npy'), verbose=0); "
            "print('same' if np.array_equal(p, np.load(d + '/p.npy')) else 'differ', len(m.layers[0]._fine_tuned))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(tt.__file__)) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out[0] == "same" and int(out[1]) == len(base._fine_tuned) > 0
    fresh = tt.applications.MobileNetV2(input_shape=HW, include_top=False, weights="imagenet")
    t = next(iter(base._fine_tuned))
    assert not np.array_equal(fresh.model.get_tensor(t), base._fine_tuned[t])  # it did store trained weights


def test_base_with_max_pooling_cannot_be_fine_tuned():
    x, y = _data(4)
    base = tt.applications.MobileNetV2(input_shape=HW, include_top=False, weights="imagenet")
    base.fine_tune_from(140)
    m = tt.Sequential([base, L.GlobalMaxPooling2D(), L.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        m.fit(x, y, verbose=0)


def test_base_with_every_layer_frozen_trains_the_head_only():
    x, y = _data(4)
    base = tt.applications.MobileNetV2(input_shape=HW, include_top=False, weights="imagenet")
    base.trainable = True
    for l in base.layers:
        l.trainable = False
    m = tt.Sequential([base, L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    h = m.fit(x, y, verbose=0)
    assert "fine_tune" not in h.params and m.last_fit_path == "feature_cache"


def test_second_fit_reuses_the_engines_and_continues_from_the_trained_weights():
    x, y = _data(8)
    m, base = _model(140)
    m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    tuner = base._tuner
    t = next(iter(base._fine_tuned))
    after_one = base.model.get_tensor(t).copy()
    np.testing.assert_array_equal(tuner.values[t], after_one.ravel())
    m.fit(x, y, batch_size=4, epochs=2, initial_epoch=1, verbose=0)
    assert base._tuner is tuner
    assert not np.array_equal(base.model.get_tensor(t), after_one)
    np.testing.assert_array_equal(tuner.values[t], base.model.get_tensor(t).ravel())
