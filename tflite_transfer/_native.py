"""Loads the C extension ``tflite_transfer._core`` and the oneDNN library it links.

The extension's rpath (``$ORIGIN/../../..``) finds ``libdnnl.so.3`` for a regular
``pip install``; for editable installs, ``--user`` installs and in-place builds the
library is preloaded here from the location the ``onednn-cpu-gomp`` wheel recorded,
so the dynamic loader reuses it (same SONAME) when the extension is imported.
"""
import ctypes
import os
from importlib import metadata

# How GNU OpenMP threads wait between parallel regions. libgomp's default spins for
# ~300,000 iterations (milliseconds): best when oneDNN owns the machine, but here our
# own image threads decode the next batch while oneDNN computes, and spinning OpenMP
# threads starved them (measured on 2 cores: one epoch of the augmented flowers job took
# 49 s with that default and 25 s with passive waits). Fully passive waits (spin 0)
# cost the other way at batch 1, where each of a run's ~55 primitives is its own
# parallel region and the second thread went to sleep and was woken ~55 times per image:
# 2 threads were barely faster than 1. A short spin (GOMP_SPINCOUNT=1000, about 10 us,
# libgomp's own estimate being ~100,000 spins per ms) keeps the thread awake across the
# gap between two primitives and still sleeps soon after a run: batch 1 at 2 threads
# went from 130 to 165 images/s (f32) and from 182 to 393 (int8), medians of 3, batch 32
# and the augmented job (frozen and fine-tuning epochs) unchanged within their noise
# (benchmarks/bench_omp_wait.py; README, "Threads that stay awake"). An OMP_WAIT_POLICY or GOMP_SPINCOUNT already in the environment is kept
# (the user's choice, whole). Both must be set before libgomp loads, i.e. before the
# preload below; a libgomp that another module loaded first has already read them.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"
    os.environ["GOMP_SPINCOUNT"] = "1000"


def _dist_file(dist_name, suffix):
    """Absolute path of the first file installed by distribution `dist_name` whose name ends
    in `suffix` (as setup.py finds oneDNN's wheels), or None if there is no such file."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith(suffix):
            return os.path.abspath(str(dist.locate_file(f)))
    return None


def _preload_onednn():
    path = _dist_file("onednn-cpu-gomp", "/libdnnl.so.3")
    if path and os.path.exists(path):  # else rely on the rpath / system search path
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_onednn()

from . import _core  # noqa: E402  (after the preload, on purpose)

ModelFormatError = _core.ModelFormatError
ImageDecodeError = _core.ImageDecodeError

__all__ = ["_core", "ModelFormatError", "ImageDecodeError"]
