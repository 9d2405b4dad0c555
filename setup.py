"""Build of the C extension tflite_transfer._core.

oneDNN comes from the PyPI wheels ``onednn-cpu-gomp`` (libdnnl.so.3, oneDNN 3.2,
CPU only, GNU OpenMP threading) and ``onednn-devel-cpu-gomp`` (headers): they are
build requirements (pyproject.toml) and ``onednn-cpu-gomp`` is a run-time
requirement. The wheels install the library into ``<prefix>/lib``, so the
extension (``<prefix>/lib/pythonX.Y/site-packages/tflite_transfer/_core*.so``)
gets the rpath ``$ORIGIN/../../..``; ``tflite_transfer/_native.py`` also preloads
the library by its recorded location, which covers editable and --user installs.

stb_image comes from Debian's ``libstb-dev`` (``#include <stb/stb_image.h>``).

Environment:
  TT_WERROR=1    compile with -Werror (CI does).
  TT_SANITIZE=1  compile with -fsanitize=address,undefined (CI's reader/decoder run).
"""
import glob
import os
import sys
from importlib import metadata

import numpy
from setuptools import Extension, setup


def _dist_file(dist_name, suffix):
    """Absolute path of the first file of installed distribution `dist_name` ending in `suffix`."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith(suffix):
            return os.path.abspath(str(dist.locate_file(f)))
    return None


def _onednn_paths():
    header = _dist_file("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.h")
    lib = _dist_file("onednn-cpu-gomp", "/libdnnl.so.3")
    if header is None or lib is None:
        sys.exit(
            "tflite_transfer: oneDNN not found. Install the build requirements "
            "'onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0' "
            "(pip does this for you unless --no-build-isolation is used)."
        )
    include_dir = os.path.dirname(os.path.dirname(os.path.dirname(header)))
    return include_dir, os.path.dirname(lib)


def _stb_include():
    for d in ("/usr/include", "/usr/local/include"):
        if os.path.exists(os.path.join(d, "stb", "stb_image.h")):
            return d
    sys.exit("tflite_transfer: stb_image.h not found; install Debian's libstb-dev (apt-get install libstb-dev).")


dnnl_include, dnnl_lib = _onednn_paths()
stb_include = _stb_include()
# Linking needs an unversioned name; the wheel ships libdnnl.so next to libdnnl.so.3.
extra_compile = ["-std=c11", "-O3", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter",
                 "-Wno-missing-field-initializers", "-D_GNU_SOURCE"]
extra_link = ["-fopenmp", "-Wl,-rpath,$ORIGIN/../../..", "-lpthread", "-lm"]
if os.environ.get("TT_WERROR") == "1":
    extra_compile.append("-Werror")
if os.environ.get("TT_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_compile += san
    extra_link += ["-fsanitize=address,undefined"]

ext = Extension(
    "tflite_transfer._core",
    sources=sorted(glob.glob("csrc/*/*.c")),
    include_dirs=["csrc", numpy.get_include(), dnnl_include, stb_include],
    library_dirs=[dnnl_lib],
    libraries=["dnnl"],
    extra_compile_args=extra_compile,
    extra_link_args=extra_link,
)

setup(ext_modules=[ext])
