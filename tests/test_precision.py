"""MobileNetV2(dtype=...): the bfloat16 engine against the float32 engine, and dtype validation.

bfloat16 keeps 8 significant bits (relative rounding error <= 2**-9 per value); the
convolutions accumulate in float32 (oneDNN's bf16 kernels), so errors come from
rounding weights and activations to bf16 between layers. Tolerances below are
stated against the float32 engine, whose own parity with an independent float64
reference is tested in test_mobilenet_v2.py.
"""
import numpy as np
import pytest

import conftest
import tflite_transfer as tt
from tflite_transfer.applications import mobilenet_v2 as mv

# ../shared/README.md: expected top-1 index in imagenet_labels.txt (1001 classes).
PHOTOS = conftest.PHOTO_TOP1
# bf16 engine vs an independent NumPy simulation of bf16 inference (reference.py's float64
# graph with conv inputs, weights and every op output rounded to bfloat16, float64
# accumulation): relative L2 error per image and max error relative to the largest
# feature. Measured 0.008-0.013 and 0.012-0.016 (both models, the 5 photos); the
# remaining difference is where the engine rounds (it does not round a conv's output
# before the fused residual sum; accumulation order). bf16 vs float32 is far larger
# (measured relative L2 0.05-0.09 ptq, 0.02-0.04 quant: rounding weights and activations
# to 8 significant bits, which the simulation reproduces), so those are only required
# to agree in direction (cosine) and class.
BF16_SIM_REL_L2 = 0.03
BF16_SIM_MAX_REL = 0.03
BF16_F32_MIN_COSINE = 0.99

needs_bf16 = pytest.mark.skipif(not tt._core.has_bf16(), reason="this CPU has no bfloat16 instructions")


@pytest.fixture(scope="module")
def photos():
    """The 5 shared photos, uint8 (5, 224, 224, 3), in PHOTOS order."""
    return conftest.shared_photos_224()


@pytest.mark.parametrize("weights", ["imagenet_ptq", "imagenet_quant"])
@needs_bf16
def test_bf16_top1_equals_f32_on_shared_photos(photos, weights):
    f32 = mv.MobileNetV2(weights=weights).predict(photos)
    bf16 = mv.MobileNetV2(weights=weights, dtype="mixed_bfloat16").predict(photos)
    assert bf16.dtype == np.float32 and bf16.shape == f32.shape
    assert list(bf16.argmax(axis=1)) == list(f32.argmax(axis=1)) == list(PHOTOS.values())


def _bf16(x):
    """Rounds to bfloat16 (round to nearest even) and returns float64."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.fixture
def bf16_reference(monkeypatch):
    """reference.py's float64 graph with bf16 storage: conv inputs and weights rounded to
    bf16, and every conv / ADD / pooling output rounded to bf16."""
    import reference

    def rounded(f, conv):
        def g(ins, o, n):
            ins = list(ins)
            if conv:
                ins[0], ins[1] = _bf16(ins[0]), _bf16(ins[1])
            return _bf16(f(ins, o, n))
        return g

    ops = dict(reference._OPS)
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        monkeypatch.setitem(reference._OPS, name, rounded(ops[name], True))
    for name in ("ADD", "MEAN", "AVERAGE_POOL_2D"):
        monkeypatch.setitem(reference._OPS, name, rounded(ops[name], False))
    return reference


@needs_bf16
@pytest.mark.parametrize("weights,path", [("imagenet_ptq", conftest.PTQ_MODEL), ("imagenet_quant", conftest.QUANT_MODEL)])
def test_bf16_pooled_features_match_a_bf16_simulation(photos, bf16_reference, weights, path):
    ref = bf16_reference.ReferenceModel(str(path))
    want = ref.run(mv.preprocess_input(photos), bf16_reference.pooled_feature_tensor(ref)).reshape(len(photos), -1)
    got = np.full(want.shape, np.nan, np.float32)
    got[:] = mv.MobileNetV2(include_top=False, pooling="avg", weights=weights,
                            dtype="mixed_bfloat16").predict(photos, batch_size=1)
    rel_l2 = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert rel_l2.max() <= BF16_SIM_REL_L2, rel_l2
    assert np.abs(got - want).max() <= BF16_SIM_MAX_REL * np.abs(want).max()


@needs_bf16
@pytest.mark.parametrize("batch_size", [1, 5])
def test_bf16_pooled_features_agree_with_f32(photos, batch_size):
    f32 = mv.MobileNetV2(include_top=False, pooling="avg").predict(photos, batch_size=batch_size)
    bf16 = mv.MobileNetV2(include_top=False, pooling="avg", dtype="mixed_bfloat16").predict(photos,
                                                                                          batch_size=batch_size)
    assert np.isfinite(bf16).all()
    cos = (f32 * bf16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() >= BF16_F32_MIN_COSINE, cos
    assert np.abs(bf16 - f32).max() > 0  # not the f32 engine under another name


@needs_bf16
def test_bf16_engine_runs_bf16_convolutions():
    """oneDNN's verbose log of one bf16 run: every convolution reads bf16 source and weights
    (not a silent float32 fallback); the float32 engine's read f32."""
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
        # an expand 1x1 conv that runs its depthwise as a post-op counts twice, and its
        # depthwise weights must be in the dtype too
        fused = [ln for ln in convs if "+dw:k3" in ln]
        assert fused and all(f"wei_fused_{want}" in ln for ln in fused), (dtype, fused)
        assert len(convs) + len(fused) == 52, (dtype, len(convs))  # 35 CONV_2D + 17 DEPTHWISE before the pooling
        for ln in convs:
            assert f"src_{want}" in ln and f"wei_{want}" in ln, ln


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "uint8", 3, "mixed_float16", np.float16, np.int8,
                                   np.dtype("int8"), np.dtype("float64")])
def test_bad_dtype_raises_naming_the_argument(dtype):
    with pytest.raises(ValueError, match="`dtype` must be"):
        mv.MobileNetV2(dtype=dtype)


def test_float32_dtype_is_the_default(photos):
    a = mv.MobileNetV2(include_top=False, pooling="avg").predict(photos[:2])
    b = mv.MobileNetV2(include_top=False, pooling="avg", dtype="float32").predict(photos[:2])
    np.testing.assert_array_equal(a, b)
    assert mv.MobileNetV2(dtype="float32").get_config()["dtype"] == "float32"
    # NumPy's float32, as the type or as a dtype, names the same policy (Keras takes both)
    for same in (np.float32, np.dtype("float32")):
        assert mv.MobileNetV2(dtype=same).get_config()["dtype"] == "float32"


def test_bf16_without_hardware_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tt._core, "has_bf16", lambda: False)
    with pytest.raises(ValueError, match="bfloat16 instructions"):
        mv.MobileNetV2(dtype="mixed_bfloat16")
