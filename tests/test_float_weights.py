"""weights="imagenet_float": TensorFlow's float MobileNetV2 1.0/224 tensors (.npy per tensor,
SHA-256 checked) assembled into a float .tflite without classifier.

Independent checks: the ptq file was post-training quantized from these weights, so the
pooled features of real photos must be close to the ptq model's (cosine > 0.97, measured
0.979-0.994) and, with the ptq file's dequantized logits kernel and the float logits bias, give the
shared photos' known ImageNet classes (shared/README.md).
"""
import os

import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer.applications import mobilenet_v2

from conftest import IMAGES, MODELS

EXPECTED = {"grace_hopper": 653, "cat": 286, "bird": 20, "dragonfly": 320, "sunflower": 986}


def _photos():
    return np.stack([tt.data.load_img(str(IMAGES / f"{n}.bmp"), target_size=(224, 224)) for n in EXPECTED])


def test_float_features_are_close_to_ptq_and_classify_the_photos():
    x = _photos()
    fl = tt.applications.MobileNetV2(include_top=False, weights="imagenet_float", pooling="avg")
    ptq = tt.applications.MobileNetV2(include_top=False, weights="imagenet_ptq", pooling="avg")
    f = np.full((len(x), 1280), np.nan, np.float32)
    f[...] = fl.predict(x)
    g = ptq.predict(x).astype(np.float64)
    cos = (f * g).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(g, axis=1)
    assert cos.min() > 0.97, cos  # measured 0.979-0.994
    top = tt.applications.MobileNetV2(include_top=True, weights="imagenet_ptq")
    conv = [op for op in top.model.ops if op["type"] == "CONV_2D"][-1]
    kernel = np.asarray(top.model.get_tensor(conv["inputs"][1]), np.float64).reshape(1001, 1280)
    bias = np.load(MODELS / "mobilenet_v2_1.0_224_float" / "weights" /
                   "MobilenetV2_Logits_Conv2d_1c_1x1_Conv2D_bias.npy").astype(np.float64)
    pred = (f.astype(np.float64) @ kernel.T + bias).argmax(1)
    assert pred.tolist() == list(EXPECTED.values())


def test_float_weights_have_no_classifier():
    with pytest.raises(ValueError, match="include_top=False"):
        tt.applications.MobileNetV2(include_top=True, weights="imagenet_float")


def test_corrupt_float_weight_file_is_rejected(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    folder = mirror / "mobilenet_v2_1.0_224_float" / "weights"
    folder.mkdir(parents=True)
    np.save(folder / "Const_90.npy", np.zeros((32, 3, 3, 3), np.float32))
    monkeypatch.setenv("TFLITE_TRANSFER_MIRROR", str(mirror))
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="Const_90.npy"):
        mobilenet_v2.float_weights_path()
    assert not os.path.exists(tmp_path / "home" / "models" / "mobilenet_v2_1.0_224_float_notop.tflite")
