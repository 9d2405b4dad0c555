"""tflite_transfer: transfer learning for images with a Keras-like API.

The engine is C (oneDNN for convolutions, pooling and inner products; stb_image
for decoding), reading standard ``.tflite`` models. Public modules mirror Keras:
``applications``, ``layers``, ``models`` (``Sequential``), ``optimizers``,
``losses``, ``metrics``, ``callbacks``, ``data``, ``datasets``; plus ``evaluation`` (one-call
classification report) and ``visualization`` (matplotlib figures).
"""
from ._native import ImageDecodeError, ModelFormatError, _core  # noqa: F401
from . import applications, callbacks, data, datasets, layers, losses, metrics, models, optimizers, utils  # noqa: F401
from . import evaluation, visualization  # noqa: F401  (matplotlib / scikit-learn are imported on first use)
from .models import Sequential  # noqa: F401

__version__ = "0.1.0"


def set_num_threads(n):
    """Sets the number of threads oneDNN and the C core use (int in [1, 4096]).

    Raises ValueError for a non-integer or one outside [1, 4096] (the C core's check,
    worded the same). More threads than cores is allowed, as OpenMP allows it.
    Default: OpenMP's default (all cores, or ``OMP_NUM_THREADS``).
    """
    import numbers

    # the range is checked here too: an int beyond C's long (2**63) would otherwise
    # fail converting to C with an OverflowError that names no argument
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or not 1 <= int(n) <= 4096:
        raise ValueError(f"`n` must be an int in [1, 4096]. Received: n={n!r}")
    _core.set_num_threads(int(n))


def get_num_threads():
    """Returns the number of threads oneDNN and the C core will use."""
    return _core.get_num_threads()
