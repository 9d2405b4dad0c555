"""Sequential API on small synthetic problems, with stand-ins for the engine's
frozen base (a fixed projection with ``predict(pooling=...)``), for an
augmentation layer (``is_random``) and for the folder dataset."""
import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import layers as L
from tflite_transfer.layers.base import Layer
from tflite_transfer.models import _split_arrays, load_model


class FrozenBase(Layer):
    """Stand-in for MobileNetV2(include_top=False): (N, 4, 4, 3) -> relu(x W) (N, 4, 4, 8).

    Weights come from a .npy file (`weights`) so that save() stores it by reference.
    Counts the samples it processes.
    """

    def __init__(self, weights, name=None, trainable=False):
        super().__init__(name=name, trainable=trainable)
        self.weights_path = str(weights)
        self.w = np.load(self.weights_path).astype(np.float32)
        self.seen = 0

    def compute_output_shape(self, s):
        return (s[0], s[1], s[2], self.w.shape[1])

    def call(self, x, training=False):
        self.seen += len(x)
        x = np.asarray(x, np.float32) / 127.5 - 1 if np.asarray(x).dtype == np.uint8 else np.asarray(x, np.float32)
        return np.maximum(x @ self.w, 0)

    def predict(self, x, batch_size=32, verbose=0, pooling=None):
        y = self.call(x)
        return {"avg": y.mean((1, 2)), "max": y.max((1, 2)), None: y}[pooling]

    def get_weights(self):
        return [self.w.copy()]

    def set_weights(self, weights):
        self.w[...] = weights[0]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "weights": self.weights_path}


class Noise(Layer):
    """Stand-in augmentation: adds +-1 noise in training (uint8 kept)."""

    is_random = True
    rng = np.random.default_rng(0)

    def call(self, x, training=False):
        if not training:
            return x
        noise = self.rng.integers(-1, 2, x.shape)
        return np.clip(x.astype(np.int16) + noise, 0, 255).astype(np.uint8)


class FakeDataset:
    """Stand-in for ImageDataset: (images uint8, labels int32) batches, reshuffled per epoch."""

    def __init__(self, x, y, batch_size=8, shuffle=True):
        self.x, self.y, self.bs, self.shuffle = x, y, batch_size, shuffle
        self.class_names = [str(i) for i in range(int(y.max()) + 1)]
        self.num_images = len(x)

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __iter__(self):
        idx = np.random.default_rng().permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for s in range(0, len(idx), self.bs):
            b = idx[s:s + self.bs]
            yield self.x[b], self.y[b].astype(np.int32)


def _blobs(n=240, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = 4.0 * np.eye(c, d)  # well apart: linearly separable with noise 0.5
    y = rng.integers(0, c, n)
    return (centers[y] + 0.5 * rng.normal(size=(n, d))).astype(np.float32), y


def _images(n=96, seed=0):
    """uint8 (n, 4, 4, 3) images whose class (0/1) is the mean brightness of channel 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 120, (n, 4, 4, 3))
    x[..., 0] += 120 * y[:, None, None]
    return x.astype(np.uint8), y


@pytest.fixture(autouse=True)
def _seeded():
    L.set_random_seed(0)


@pytest.fixture
def base_file(tmp_path):
    p = tmp_path / "base.npy"
    np.save(p, np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    return p


def _dense_model(c=3, seed=1):
    return tt.Sequential([L.Dense(c, activation="softmax", seed=seed)])


def test_linearly_separable_reaches_high_accuracy():
    x, y = _blobs()
    m = _dense_model()
    m.compile(optimizer=tt.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=20, batch_size=16, verbose=0)
    loss, acc = m.evaluate(x, y, verbose=0)
    assert acc >= 0.97 and loss < 0.2


def test_two_dense_relu_head_learns_a_nonlinear_problem():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    y = (np.linalg.norm(x, axis=1) > 0.6).astype(np.int64)  # a disk: not linearly separable
    m = tt.Sequential([L.Dense(32, activation="relu", seed=1), L.Dense(2, activation="softmax", seed=2)])
    m.compile(optimizer=tt.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=60, batch_size=32, verbose=0)
    assert m.evaluate(x, y, verbose=0)[1] >= 0.9


def test_fit_evaluate_predict_shapes_and_history():
    x, y = _blobs(n=90)
    m = _dense_model()
    m.compile("sgd", "sparse_categorical_crossentropy", ["accuracy", "sparse_top_k_categorical_accuracy"])
    h = m.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "sparse_top_k_categorical_accuracy", "val_loss", "val_accuracy",
                              "val_sparse_top_k_categorical_accuracy"}
    assert h.epoch == [0, 1, 2] and all(len(v) == 3 for v in h.history.values())
    assert h.params["feature_cache"] is True and h.params["epochs"] == 3 and h.params["steps"] == 3
    p = m.predict(x, verbose=0)
    assert p.shape == (90, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    r = m.evaluate(x, y, verbose=0, return_dict=True)
    assert set(r) == {"loss", "accuracy", "sparse_top_k_categorical_accuracy"}
    assert r["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))


def test_categorical_and_binary_losses_train():
    x, y = _blobs(n=120, c=2)
    m = tt.Sequential([L.Dense(2, activation="softmax", seed=0)])
    m.compile(tt.optimizers.Adam(0.05), tt.losses.CategoricalCrossentropy(label_smoothing=0.1), ["accuracy"])
    m.fit(x, np.eye(2, dtype=np.float32)[y], epochs=20, verbose=0)
    assert m.evaluate(x, np.eye(2)[y], verbose=0)[1] > 0.95
    b = tt.Sequential([L.Dense(1, activation="sigmoid", seed=0)])
    b.compile(tt.optimizers.Adam(0.05), "binary_crossentropy", ["accuracy"])
    b.fit(x, y, epochs=20, verbose=0)
    assert b.evaluate(x, y, verbose=0)[1] > 0.95


def test_summary_counts_trainable_and_frozen(base_file):
    base = FrozenBase(base_file)
    m = tt.Sequential([base, L.GlobalAveragePooling2D(), L.Dropout(0.2), L.Dense(2, activation="softmax")])
    m.build((None, 4, 4, 3))
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 8)" in text and "(None, 2)" in text
    assert " Total params: 42" in text  # 24 + 8*2 + 2
    assert " Trainable params: 18" in text and " Non-trainable params: 24" in text


def test_feature_cache_path_runs_the_base_once(base_file):
    x, y = _images()
    base = FrozenBase(base_file)
    m = tt.Sequential([base, L.GlobalAveragePooling2D(), L.Dropout(0.1), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    h = m.fit(x[:64], y[:64], validation_data=(x[64:], y[64:]), epochs=5, batch_size=16, verbose=0)
    assert m.last_fit_path == "feature_cache" and h.params["feature_cache"] is True
    assert base.seen == 96  # once per training and validation image, not per epoch
    assert h.history["val_accuracy"][-1] >= 0.9


def test_augmentation_runs_the_base_per_batch(base_file):
    x, y = _images()
    base = FrozenBase(base_file)
    m = tt.Sequential([Noise(), base, L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    h = m.fit(x[:64], y[:64], validation_data=(x[64:], y[64:]), epochs=5, batch_size=16, verbose=0)
    assert m.last_fit_path == "per_batch" and h.params["feature_cache"] is False
    assert base.seen == 5 * 64 + 32  # training every epoch, validation cached once
    assert h.history["val_accuracy"][-1] >= 0.9, h.history


def test_fit_on_a_dataset_with_dataset_validation(base_file):
    x, y = _images()
    m = tt.Sequential([FrozenBase(base_file), L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    h = m.fit(FakeDataset(x[:64], y[:64]), validation_data=FakeDataset(x[64:], y[64:], shuffle=False), epochs=6,
              verbose=0)
    assert h.params["steps"] == 8
    assert h.history["val_accuracy"][-1] >= 0.9
    assert m.predict(FakeDataset(x, y, shuffle=False), verbose=0).shape == (96, 2)


def test_trainable_base_is_not_supported_yet(base_file):
    x, y = _images()
    m = tt.Sequential([FrozenBase(base_file, trainable=True), L.GlobalAveragePooling2D(), L.Dense(2)])
    m.compile("adam", tt.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(NotImplementedError, match="trainable = False"):
        m.fit(x, y, verbose=0)


def test_save_load_round_trip_gives_identical_predictions(tmp_path, base_file):
    x, y = _images()
    m = tt.Sequential([FrozenBase(base_file), L.GlobalAveragePooling2D(), L.Dropout(0.2),
                       L.Dense(4, activation="relu", kernel_regularizer="l2"), L.Dense(2, activation="softmax")])
    m.compile(tt.optimizers.RMSprop(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "sub" / "model.ttz"
    m.save(path)
    with pytest.raises(ValueError, match="not part of tflite_transfer"):
        load_model(path)  # FrozenBase lives in this test module: it must be named
    back = load_model(path, custom_objects={"FrozenBase": FrozenBase})
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    assert isinstance(back.optimizer, tt.optimizers.RMSprop) and back.loss.name == "sparse_categorical_crossentropy"
    assert back.layers[0].weights_path == str(base_file) and not back.layers[0].trainable
    assert back.layers[3].kernel_regularizer.l2 == 0.01
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.ttz"]  # no temp file left
    back.fit(x, y, epochs=1, verbose=0)  # a loaded model trains
    np.save(base_file, np.zeros((3, 8), np.float32))  # the referenced base changes
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(path, custom_objects={"FrozenBase": FrozenBase})


def test_load_model_rejects_other_files(tmp_path):
    p = tmp_path / "x.ttz"
    p.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a tflite_transfer model"):
        load_model(p)


def test_set_weights_validates_and_round_trips():
    x, y = _blobs(n=30)
    m = _dense_model()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x, y, verbose=0)
    w = m.get_weights()
    assert [a.shape for a in w] == [(6, 3), (3,)]
    with pytest.raises(ValueError, match="2 arrays"):
        m.set_weights(w[:1])
    with pytest.raises(ValueError, match=r"shape \(6, 3\)"):
        m.set_weights([np.zeros((3, 6)), w[1]])
    np.testing.assert_array_equal(m.get_weights()[0], w[0])  # unchanged after the failures
    m.set_weights([np.zeros_like(w[0]), np.ones_like(w[1])])
    np.testing.assert_allclose(m.predict(x, verbose=0), 1 / 3, rtol=1e-6)


def test_validation_split_is_stratified_and_seeded():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.repeat([0, 1, 2, 3], 25)  # class-sorted: Keras' last-20% split would hold only class 3
    xt, yt, xv, yv = _split_arrays(x, y, 0.2, 0, y)
    assert len(xv) == 20 and np.bincount(yv).tolist() == [5, 5, 5, 5]
    assert not set(xt[:, 0]) & set(xv[:, 0])
    again = _split_arrays(x, y, 0.2, 0, y)
    np.testing.assert_array_equal(again[2], xv)


def test_verbose_modes(capsys):
    x, y = _blobs(n=40)
    m = _dense_model()
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    m.fit(x, y, epochs=3, verbose=2, validation_split=0.25)
    out = capsys.readouterr().out.splitlines()
    epoch_lines = [l for l in out if l.startswith("Epoch ")]
    assert len(epoch_lines) == 3 and "val_accuracy" in epoch_lines[-1]
    assert any("feature_cache" in l for l in out)
    m.fit(x, y, epochs=1, verbose=1)
    assert "1/1" in capsys.readouterr().out


def test_load_model_on_a_damaged_file_names_the_file(tmp_path):
    import json
    import zipfile

    import tflite_transfer as tt

    src = tmp_path / "m.ttz"
    m = tt.Sequential([tt.layers.Dense(3, activation="softmax", seed=0)])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(np.zeros((6, 4), np.float32), np.arange(6) % 3, verbose=0)
    m.save(src)
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    evil = json.loads(members["config.json"])
    evil["layers"][0]["module"], evil["layers"][0]["class_name"] = "os", "system"
    cases = {"list.ttz": b"[1, 2, 3]", "garbage.ttz": b"\x00garbage{" * 5, "evil.ttz": json.dumps(evil).encode(),
             "no_layers.ttz": json.dumps({k: v for k, v in config.items() if k != "layers"}).encode()}
    for name, cfg in cases.items():
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", cfg)
            z.writestr("weights.npz", members["weights.npz"])
        with pytest.raises(ValueError, match=str(path)):
            tt.models.load_model(path)
