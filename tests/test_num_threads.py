"""tt.set_num_threads governs every engine, whichever Python thread runs it.

OpenMP's omp_set_num_threads only sets the calling thread's value; a new thread
starts from the default (all cores, or OMP_NUM_THREADS). The engine applies the
process-wide setting on the thread that runs it, and records the OpenMP thread
count it ran with (`Model.last_run_num_threads`, what oneDNN sizes its parallel
regions by).
"""
import threading

import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer.applications import mobilenet_v2 as mv


@pytest.fixture
def restore_threads():
    before = tt.get_num_threads()
    yield before
    tt.set_num_threads(before)


def _in_thread(fn):
    out = {}

    def work():
        out["value"] = fn()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out["value"]


def test_engine_run_from_another_thread_uses_the_setting(restore_threads):
    n = 1 if restore_threads > 1 else 2  # differs from the default either way
    tt.set_num_threads(n)
    m = mv.MobileNetV2(include_top=False, pooling="avg")
    x = np.zeros((1, 224, 224, 3), np.uint8)
    m.predict(x)
    assert m.model.last_run_num_threads == n
    assert _in_thread(lambda: (m.predict(x), m.model.last_run_num_threads)[1]) == n
    assert _in_thread(tt.get_num_threads) == n


def test_a_new_setting_reaches_engines_built_before_it(restore_threads):
    m = mv.MobileNetV2(include_top=False, pooling="avg")
    x = np.zeros((1, 224, 224, 3), np.uint8)
    tt.set_num_threads(2)
    y2 = m.predict(x)
    assert m.model.last_run_num_threads == 2
    tt.set_num_threads(1)
    y1 = _in_thread(lambda: m.predict(x))
    assert m.model.last_run_num_threads == 1
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)


def test_last_run_num_threads_before_any_run_is_zero():
    assert mv.MobileNetV2(include_top=False, pooling="avg").model.last_run_num_threads == 0


def _omp_env_seen(env_update, drop=("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    """What the libgomp that oneDNN runs on read at load, in a fresh interpreter that
    imports the package (OMP_DISPLAY_ENV: libgomp prints its settings when it starts)."""
    import os
    import re
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update, OMP_DISPLAY_ENV="VERBOSE")
    out = subprocess.run([sys.executable, "-c", "import tflite_transfer"], env=env, capture_output=True,
                         text=True, check=True).stderr
    policy = re.findall(r"OMP_WAIT_POLICY = '(\w+)'", out)
    spin = re.findall(r"GOMP_SPINCOUNT = '(\d+)'", out)
    assert policy and spin, f"libgomp printed no settings: {out[-500:]!r}"
    return policy[-1], int(spin[-1])


def test_openmp_waits_briefly_by_default():
    # passive after a short spin: 1000 spins (~10 us), not libgomp's 300,000 nor 0 (_native.py)
    assert _omp_env_seen({}) == ("PASSIVE", 1000)


def test_openmp_wait_settings_of_the_user_are_kept():
    assert _omp_env_seen({"OMP_WAIT_POLICY": "active"})[0] == "ACTIVE"
    assert _omp_env_seen({"OMP_WAIT_POLICY": "passive"}) == ("PASSIVE", 0)
    assert _omp_env_seen({"GOMP_SPINCOUNT": "250"})[1] == 250
