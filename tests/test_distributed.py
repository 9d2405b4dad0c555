"""tflite_transfer.distributed on a real Dask LocalCluster (2 worker processes, 1 thread each,
with nannies) over 72 shared flower photos + 1 undecodable file.

Reference: the single-process path — the same base / Sequential's own `predict` on the images
the folder dataset decodes (on_error="skip" drops the bad file there). Tolerance: max|dist − ref|
<= 1e-6 · max|ref| (both run the same engine on the same pixels; batch composition differs).
"""
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

import conftest

distributed = pytest.importorskip("distributed")  # the [distributed] extra; CI installs it

import tflite_transfer as tt  # noqa: E402
from tflite_transfer import cli, layers  # noqa: E402
from tflite_transfer import distributed as ttd  # noqa: E402

PER_CLASS = 36  # 2 classes -> 72 photos
TOL = 1e-6


def _close(a, b):
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b))) <= TOL * float(np.max(np.abs(b)))


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Two class folders of links to shared photos, plus one undecodable .jpg in the second."""
    root = tmp_path_factory.mktemp("dist_photos")
    for cls in ("daisy", "tulips"):
        src = conftest.FLOWERS / cls
        os.makedirs(root / cls)
        for f in sorted(os.listdir(src))[:PER_CLASS]:
            os.symlink(src / f, root / cls / f)
    (root / "tulips" / "0000_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


@pytest.fixture(scope="module")
def base():
    b = tt.applications.MobileNetV2(include_top=False, pooling="avg", weights="imagenet")
    b.trainable = False
    return b


@pytest.fixture(scope="module")
def clean(photo_dir):
    """The single-process dataset (bad file dropped), shuffled with a seed so file order != sorted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = tt.data.image_dataset_from_directory(photo_dir, image_size=(224, 224), shuffle=True, seed=5,
                                                  on_error="skip", verbose=False)
    x, y = ds.as_numpy()
    return ds, x, y


@pytest.fixture(scope="module")
def reference(base, clean):
    return base.predict(clean[1], batch_size=32)


def _dataset(photo_dir):
    return tt.data.image_dataset_from_directory(photo_dir, image_size=(224, 224), shuffle=True, seed=5,
                                                verbose=False)


def test_features_equal_single_process_in_file_order_and_skip_reported(client, photo_dir, base, clean, reference):
    ds = _dataset(photo_dir)  # on_error="raise" dataset: the cluster does the skipping
    assert len(ds.file_paths) == 2 * PER_CLASS + 1
    with pytest.warns(UserWarning, match="Skipped 1 undecodable"):
        res = ttd.predict(base, ds, client=client, partition_size=8, on_error="skip", verbose=0)
    bad = str(photo_dir / "tulips" / "0000_broken.jpg")
    assert [p for p, _ in res.skipped] == [bad] and res.skipped[0][1]
    assert res.file_paths == clean[0].file_paths == [p for p in ds.file_paths if p != bad]
    assert res.file_paths != sorted(res.file_paths)  # the dataset's shuffled order was kept
    np.testing.assert_array_equal(res.labels, clean[2])
    assert res.class_names == ["daisy", "tulips"]
    assert res.predictions.shape == (2 * PER_CLASS, 1280) and res.predictions.dtype == np.float32
    assert _close(res.predictions, reference)


def test_on_error_raise_names_the_file(client, photo_dir, base):
    with pytest.raises(tt.ImageDecodeError, match="0000_broken.jpg"):
        ttd.predict(base, _dataset(photo_dir), client=client, partition_size=16, verbose=0)


def test_whole_sequential_on_a_list_of_paths(client, clean):
    tt.layers.core.set_random_seed(3)
    model = tt.Sequential([tt.applications.MobileNetV2(include_top=False, weights="imagenet"),
                           layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax", seed=4)])
    model.build((None, 224, 224, 3))
    ds, x, _ = clean
    ref = model.predict(x, batch_size=32, verbose=0)
    res = ttd.predict(model, list(ds.file_paths), client=client, partition_size=20, verbose=0)
    assert res.skipped == [] and res.labels is None and res.file_paths == ds.file_paths
    assert res.predictions.shape == (len(x), 2)
    assert _close(res.predictions, ref)


def test_shards_on_disk_and_fit_on_them_equal_a_single_machine_fit(client, photo_dir, base, tmp_path):
    # Single machine: the whole model on the folder dataset (feature-cache path).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = tt.data.image_dataset_from_directory(photo_dir, image_size=(224, 224), shuffle=False,
                                                  on_error="skip", batch_size=16, verbose=False)
    head_a = layers.Dense(2, activation="softmax", seed=11)
    tt.layers.core.set_random_seed(21)
    full = tt.Sequential([base, head_a])
    full.compile(optimizer=tt.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist_a = full.fit(ds, epochs=3, verbose=0)
    assert full.last_fit_path == "feature_cache"

    # Cluster: features to .npy shards, a head alone trained on them on the client.
    out = tmp_path / "feats"
    src = tt.data.image_dataset_from_directory(photo_dir, image_size=(224, 224), shuffle=False, verbose=False)
    with pytest.warns(UserWarning):
        res = ttd.predict(base, src, client=client, partition_size=16, on_error="skip", output=out, verbose=0)
    assert res.predictions is None and len(res.shards) == 5 and all(os.path.exists(s) for s in res.shards)
    feats = ttd.load_features(out)
    assert feats.file_paths == res.file_paths == ds.file_paths and feats.skipped == res.skipped
    np.testing.assert_array_equal(feats.labels, ds.labels)
    head_b = layers.Dense(2, activation="softmax", seed=11)
    tt.layers.core.set_random_seed(21)
    head = tt.Sequential([head_b])
    head.compile(optimizer=tt.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist_b = head.fit(res, batch_size=16, epochs=3, verbose=0)  # the shards; y = their labels
    assert head.last_fit_path == "feature_cache"
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(hist_b.history[k], hist_a.history[k], rtol=1e-6, atol=1e-7)
    for wa, wb in zip(head_a.get_weights(), head_b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-6, atol=1e-7)


def test_features_command(client, photo_dir, tmp_path, capsys, reference, clean):
    out = tmp_path / "cli_feats"
    rc = cli.main(["features", str(photo_dir), "--scheduler", client.scheduler.address, "--output", str(out),
                   "--partition-size", "24", "--verbose", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Wrote 72 feature rows in 4 shard(s)" in text and "skipped 1 file(s)" in text and "0000_broken" in text
    feats = ttd.load_features(out)
    # The command lists the folder unshuffled; compare row by row through the file paths.
    row = {p: i for i, p in enumerate(clean[0].file_paths)}
    idx = [row[p] for p in feats.file_paths]
    assert _close(np.asarray(feats), reference[idx])
    np.testing.assert_array_equal(feats.labels, clean[2][idx])


def test_bad_arguments(client, base, tmp_path):
    with pytest.raises(ValueError, match="partition_size"):
        ttd.predict(base, [str(tmp_path)], client=client, partition_size=0)
    with pytest.raises(ValueError, match="on_error"):
        ttd.predict(base, [str(tmp_path)], client=client, on_error="ignore")
    with pytest.raises(ValueError, match="Sequential or a MobileNetV2"):
        ttd.predict(object(), [str(tmp_path)], client=client)
    with pytest.raises(FileNotFoundError, match="missing"):
        ttd.predict(base, tmp_path / "missing", client=client)
    with pytest.raises(FileNotFoundError, match="index.json"):
        ttd.load_features(tmp_path)


def test_a_worker_killed_mid_run_is_restarted_and_the_result_is_the_same(client, base, clean, reference):
    """SIGKILL one worker process while it holds tasks of the run; its nanny restarts it, the
    scheduler reruns the lost tasks, and the run completes with the same features."""
    ds = clean[0]
    pids = client.run(os.getpid)
    box = {}

    def run():
        try:
            box["res"] = ttd.predict(base, list(ds.file_paths), client=client, partition_size=4, verbose=0)
        except BaseException as e:  # reported below
            box["err"] = e

    th = threading.Thread(target=run)
    th.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and th.is_alive():
        for addr, keys in client.processing().items():
            if any(str(k).startswith("tt-predict") for k in keys):
                victim = addr
                break
        else:
            time.sleep(0.005)
    assert victim is not None, "the run finished before a worker could be killed"
    os.kill(pids[victim], signal.SIGKILL)
    killed_mid_run = th.is_alive()
    th.join(180)
    assert not th.is_alive() and "err" not in box, box.get("err")
    assert killed_mid_run
    client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in client.run(os.getpid).values()  # a new process replaced it
    res = box["res"]
    assert res.file_paths == ds.file_paths and res.skipped == []
    assert _close(res.predictions, reference)


def test_fit_and_evaluate_take_distributed_features_and_need_labels():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)).astype(np.float32), rng.integers(0, 3, 40).astype(np.int32)
    paths = [f"f{i}.jpg" for i in range(40)]

    def model():
        tt.layers.core.set_random_seed(1)
        m = tt.Sequential([layers.Dense(3, activation="softmax", seed=2)])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    a, b = model(), model()
    ha = a.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    hb = b.fit(ttd.DistributedPrediction(x, paths, [], y), batch_size=8, epochs=2, verbose=0,
               validation_data=ttd.DistributedPrediction(x, paths, [], y))
    assert ha.history == hb.history
    assert a.evaluate(x, y, verbose=0) == b.evaluate(ttd.DistributedPrediction(x, paths, [], y), verbose=0)
    with pytest.raises(ValueError, match="no labels"):
        b.fit(ttd.DistributedPrediction(x, paths, []), epochs=1, verbose=0)
