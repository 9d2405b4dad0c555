"""Sequential models: compile / fit / evaluate / predict / summary / save, and load_model.

Split as Keras splits its models and trainers:
  * ``sequential.py``: ``Sequential`` (layer stack, build, compile, weights, summary, save);
  * ``trainer.py``: the ``Trainer`` mixin: fit (feature-cache and per-batch paths),
    evaluate, predict;
  * ``head.py``: the classifier head (trailing Dense / Dropout) run and trained in C;
  * ``data_adapters.py``: input / label checks, class weights, validation split,
    batch iteration and the background prefetch thread;
  * ``saving.py``: the save format, ``load_model`` and the layer class lookup.
The progress bar of fit is ``callbacks.ProgbarLogger``.
"""
from ..callbacks import History  # noqa: F401
from .data_adapters import _check_x, _class_weight_array, _is_dataset, _Labels, _prefetch, _split_arrays  # noqa: F401
from .head import _Head  # noqa: F401
from .saving import _FORMAT, _layer_class, _load_model, load_model  # noqa: F401
from .sequential import Sequential  # noqa: F401
from .trainer import _check_int, _check_verbose  # noqa: F401
