"""Keras-style layers.

Core layers (``core.py``): Dense, Dropout, GlobalAveragePooling2D,
GlobalMaxPooling2D, Flatten, Rescaling, and the L2 regularizer. Augmentation
layers (``preprocessing.py``): RandomFlip, RandomRotation, RandomZoom,
RandomTranslation, RandomCrop, RandomBrightness, RandomContrast.
"""
from .base import Layer  # noqa: F401
from .core import (  # noqa: F401
    L2,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Rescaling,
    set_random_seed,
)

from .preprocessing import (  # noqa: F401
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
