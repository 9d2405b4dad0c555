"""Loads the C extension ``tflite_transfer._core`` and the oneDNN library it links.

The extension's rpath (``$ORIGIN/../../..``) finds ``libdnnl.so.3`` for a regular
``pip install``; for editable installs, ``--user`` installs and in-place builds the
library is preloaded here from the location the ``onednn-cpu-gomp`` wheel recorded,
so the dynamic loader reuses it (same SONAME) when the extension is imported.
"""
import ctypes
import os
from importlib import metadata


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
