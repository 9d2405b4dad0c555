"""MobileNetV2(dtype=...): the bfloat16 engine against the float32 engine, and dtype validation.

bfloat16 keeps 8 significant bits (relative rounding error <= 2**-9 per value); the
convolutions accumulate in float32 (oneDNN's bf16 kernels), so errors come from
rounding weights and activations to bf16 between layers. Tolerances below are
stated against the float32 engine, whose own parity with an independent float64
reference is tested in test_mobilenet_v2.py.
"""
import numpy as np
import pytest
from PIL import Image

import conftest
import tflite_transfer as tt
from tflite_transfer.applications import mobilenet_v2 as mv

# ../shared/README.md: expected top-1 index in imagenet_labels.txt (1001 classes).
PHOTOS = {"grace_hopper": 653, "cat": 286, "bird": 20, "dragonfly": 320, "sunflower": 986}
# bf16 vs f32, pooled features (1280 per image, values in [0, 6]): max error relative to
# the largest feature, and the mean over elements of |bf16 - f32| relative to the mean |f32|.
BF16_MAX_REL = 0.05
BF16_MEAN_REL = 0.02

needs_bf16 = pytest.mark.skipif(not tt._core.has_bf16(), reason="this CPU has no bfloat16 instructions")


@pytest.fixture(scope="module")
def photos():
    """The 5 shared photos, uint8 (5, 224, 224, 3), in PHOTOS order."""
    imgs = [np.asarray(Image.open(conftest.IMAGES / f"{n}.bmp").convert("RGB").resize((224, 224), Image.BILINEAR))
            for n in PHOTOS]
    return np.stack(imgs)


@pytest.mark.parametrize("weights", ["imagenet_ptq", "imagenet_quant"])
@needs_bf16
def test_bf16_top1_equals_f32_on_shared_photos(photos, weights):
    f32 = mv.MobileNetV2(weights=weights).predict(photos)
    bf16 = mv.MobileNetV2(weights=weights, dtype="mixed_bfloat16").predict(photos)
    assert bf16.dtype == np.float32 and bf16.shape == f32.shape
    assert list(bf16.argmax(axis=1)) == list(f32.argmax(axis=1)) == list(PHOTOS.values())


@needs_bf16
@pytest.mark.parametrize("batch_size", [1, 5])
def test_bf16_pooled_features_close_to_f32(photos, batch_size):
    f32 = mv.MobileNetV2(include_top=False, pooling="avg").predict(photos, batch_size=batch_size)
    bf16 = mv.MobileNetV2(include_top=False, pooling="avg", dtype="mixed_bfloat16").predict(photos,
                                                                                          batch_size=batch_size)
    assert np.isfinite(bf16).all()
    err = np.abs(bf16.astype(np.float64) - f32)
    assert err.max() <= BF16_MAX_REL * np.abs(f32).max(), err.max()
    assert err.mean() <= BF16_MEAN_REL * np.abs(f32).mean(), err.mean()
    # and it is not the f32 engine under another name: bf16 rounding shows
    assert err.max() > 0


@needs_bf16
def test_bf16_engine_runs_bf16_convolutions():
    """oneDNN's verbose log of one bf16 run: every convolution reads bf16 source and weights
    (not a silent float32 fallback); the float32 engine's read f32."""
    import json
    import os
    import subprocess
    import sys

    code = ("import sys, numpy as np; from tflite_transfer.applications import mobilenet_v2 as mv\n"
            "m = mv.MobileNetV2(include_top=False, pooling='avg', dtype=sys.argv[1])\n"
            "m.predict(np.zeros((2, 224, 224, 3), np.uint8), batch_size=2)\n")
    for dtype, want in (("mixed_bfloat16", "bf16"), ("float32", "f32")):
        r = subprocess.run([sys.executable, "-c", code, dtype], capture_output=True, text=True, check=True,
                           env=dict(os.environ, ONEDNN_VERBOSE="1"), cwd=str(conftest.REPO))
        convs = [ln for ln in r.stdout.splitlines() if ln.startswith("onednn_verbose,exec,cpu,convolution")]
        assert len(convs) == 52, (dtype, len(convs))  # 35 CONV_2D + 17 DEPTHWISE before the pooling
        for ln in convs:
            assert f"src_{want}" in ln and f"wei_{want}" in ln, ln


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "uint8", 3, "mixed_float16"])
def test_bad_dtype_raises_naming_the_argument(dtype):
    with pytest.raises(ValueError, match="`dtype` must be"):
        mv.MobileNetV2(dtype=dtype)


def test_float32_dtype_is_the_default(photos):
    a = mv.MobileNetV2(include_top=False, pooling="avg").predict(photos[:2])
    b = mv.MobileNetV2(include_top=False, pooling="avg", dtype="float32").predict(photos[:2])
    np.testing.assert_array_equal(a, b)
    assert mv.MobileNetV2(dtype="float32").get_config()["dtype"] == "float32"


def test_bf16_without_hardware_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tt._core, "has_bf16", lambda: False)
    with pytest.raises(ValueError, match="bfloat16 instructions"):
        mv.MobileNetV2(dtype="mixed_bfloat16")
