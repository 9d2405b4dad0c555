"""One model shared by several Python threads gives the same results as one thread
(the C objects behind a layer serialize their own runs; the GIL is released in them)."""
import threading

import numpy as np

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
