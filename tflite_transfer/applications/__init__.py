"""Keras-style pretrained models (``keras.applications`` subset).

``MobileNetV2(input_shape=None, include_top=True, weights="imagenet", pooling=None,
classes=1001)`` loads an ImageNet-pretrained MobileNetV2 from a .tflite file and
runs it with the C engine; ``mobilenet_v2.preprocess_input`` and
``mobilenet_v2.decode_predictions`` follow Keras. See ``mobilenet_v2`` for the
weights registry and the 1001-class (index 0 = background) output.
"""
from . import mobilenet_v2  # noqa: F401
from .mobilenet_v2 import MobileNetV2, MobileNetV2Model  # noqa: F401

__all__ = ["MobileNetV2", "MobileNetV2Model", "mobilenet_v2"]
