"""Keras-style pretrained models (stub)."""
