"""Loads the C extension ``tflite_transfer._core`` and the oneDNN library it links.

The extension's rpath (``$ORIGIN/../../..``) finds ``libdnnl.so.3`` for a regular
``pip install``; for editable installs, ``--user`` installs and in-place builds the
library is preloaded here from the location the ``onednn-cpu-gomp`` wheel recorded,
so the dynamic loader reuses it (same SONAME) when the extension is imported.
"""
import ctypes
import os
from importlib import metadata

# GNU OpenMP threads spin while waiting for work by default. That is best when oneDNN
# owns the machine, but here our own image threads decode the next batch while oneDNN
# computes, and spinning OpenMP threads starve them: measured on 2 cores, one epoch
# of the augmented flowers job took 49 s with spinning and 25 s with passive waits,
# for ~10% less peak engine speed (240 -> 215 images/s at batch 32). Users can
# still choose: an OMP_WAIT_POLICY already in the environment is kept. It must be
# set before libgomp loads, i.e. before the preload below.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _preload_onednn():
    try:
        dist = metadata.distribution("onednn-cpu-gomp")
    except metadata.PackageNotFoundError:
        return  # rely on the rpath / system search path
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith("/libdnnl.so.3"):
            path = os.path.abspath(str(dist.locate_file(f)))
            if os.path.exists(path):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return


_preload_onednn()

from . import _core  # noqa: E402  (after the preload, on purpose)

ModelFormatError = _core.ModelFormatError
ImageDecodeError = _core.ImageDecodeError

__all__ = ["_core", "ModelFormatError", "ImageDecodeError"]
