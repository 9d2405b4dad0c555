"""One model shared by several Python threads gives the same results as one thread
(the C objects behind a layer serialize their own runs; the GIL is released in them)."""
import threading

import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import layers


def test_sequential_predict_from_many_threads_matches_one_thread():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    model = tt.Sequential([layers.Dense(16, activation="relu", seed=1), layers.Dense(4, activation="softmax", seed=2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    expected = {bs: model.predict(x, batch_size=bs, verbose=0) for bs in (5, 8, 16, 64)}
    results = []

    def work(seed):
        r = np.random.default_rng(seed)
        for _ in range(40):
            bs = int(r.choice(list(expected)))
            results.append((bs, model.predict(x, batch_size=bs, verbose=0)))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 240
    for bs, got in results:
        np.testing.assert_array_equal(got, expected[bs])


def test_dense_plan_created_in_one_thread_runs_in_others():
    """Issue 9 (found by reading): the head's oneDNN primitives use a user scratchpad, as the
    engine does, so a plan created on one thread runs on any other (oneDNN's library scratchpad
    ties a primitive to its creating thread in the default build). Reference: NumPy float64."""
    from tflite_transfer import _core
    rng = np.random.default_rng(5)
    n, d_in, d_out = 33, 200, 17
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    k = rng.normal(size=(d_in, d_out)).astype(np.float32)
    b = rng.normal(size=d_out).astype(np.float32)
    dy = rng.normal(size=(n, d_out)).astype(np.float32)
    ref_y = x.astype(np.float64) @ k + b
    ref_dk, ref_db, ref_dx = x.T.astype(np.float64) @ dy, dy.sum(0, dtype=np.float64), dy.astype(np.float64) @ k.T
    plan = _core.DensePlan(n, d_in, d_out)  # created here, run only on other threads
    errors, done = [], []

    def work():
        try:
            for _ in range(20):
                y = np.full((n, d_out), np.nan, np.float32)
                dk, db, dx = (np.full(s, np.nan, np.float32) for s in ((d_in, d_out), (d_out,), (n, d_in)))
                plan.forward(x, k, b, y)
                plan.backward(dy, x, k, dx, dk, db)
                for got, ref in ((y, ref_y), (dk, ref_dk), (db, ref_db), (dx, ref_dx)):
                    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
            done.append(1)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(done) == 4


def test_loader_close_from_two_threads_at_once():
    """Issue 9 (found by reading): close() detaches the path list before it releases the GIL,
    so a second close() from another thread cannot free it under the workers of the first
    (a heap-use-after-free that ./run.sh asan reports; without ASan it may pass silently)."""
    import pathlib

    from tflite_transfer import _core
    from conftest import FLOWERS
    files = [str(p) for p in sorted(pathlib.Path(FLOWERS).glob("*/*.jpg"))[:64]]
    for _ in range(3):
        loader = _core.Loader(files, 224, 224, 0, False, False, 10**8, 2)
        for s in range(0, len(files), 16):
            loader.submit(np.arange(s, s + 16, dtype=np.int64))
        barrier, errors = threading.Barrier(2), []

        def close():
            barrier.wait()
            try:
                loader.close()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=close) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with pytest.raises(ValueError, match="closed"):
            loader.submit(np.arange(2, dtype=np.int64))
