"""Keras-style layers (stub until the training API lands)."""
from .base import Layer  # noqa: F401
