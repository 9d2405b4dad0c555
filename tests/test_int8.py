"""MobileNetV2(dtype="int8"): the ptq file's own quantization on oneDNN int8 primitives,
against LiteRT's reference kernels (ai-edge-litert, BUILTIN_REF: TFLite's portable
integer kernels, not XNNPACK) on the same file.

What is and is not bit-faithful: oneDNN requantizes in float32
(round(acc * src_scale * wei_scale + bias) / dst_scale) with round-half-to-even, TFLite
with a 31-bit fixed-point multiplier and two roundings. On identical input the first
convolution agrees with TFLite to one step everywhere and differs by a step on ~0.14% of
its outputs (ties). This network amplifies such one-step differences (block 1's expand
conv reads a tensor whose scale is 0.35, so one input step moves an output by up to ~10
steps), so at the pooled features no non-bit-exact implementation stays within one step
of the reference: measured, ours 65% of elements within one step, LiteRT's own XNNPACK
int8 kernels 74%, our float32 engine 64%. The tests of dtype="int8" assert what holds:
exact requantization up to ties at the first conv, pooled features as close to the
reference as LiteRT's own fast kernels are (relative L2), and equal top-1.
dtype="int8_tflite" (TFLite's integer arithmetic after oneDNN's exact int32 accumulation)
is checked for bit-identical int8 tensors and pooled features within one step.
"""
import math

import numpy as np
import pytest

import conftest
from tflite_transfer import _native
from tflite_transfer.applications import mobilenet_v2 as mv

_core = _native._core

litert = pytest.importorskip("ai_edge_litert.interpreter")

# Without VNNI, dtype="int8" raises (test_int8_without_vnni_is_a_clear_error, which runs everywhere):
# the engine tests are reported as not run there, never silently green.
needs_vnni = pytest.mark.skipif(not _core.has_vnni(), reason="this CPU has no VNNI instructions: int8 raises")

PHOTOS = conftest.PHOTO_TOP1
# First conv on identical input: |ours - reference| in output steps.
FIRST_CONV_MAX_STEPS = 1.0
FIRST_CONV_MAX_FRACTION_OFF = 0.005      # measured 0.0014
# Pooled features, per image: ||ours - ref|| / ||ref - zero_point|| (in steps). Measured
# 0.055-0.089 for ours, 0.047-0.093 for LiteRT's XNNPACK int8 on the same photos.
POOLED_MAX_REL_L2 = 0.12


@pytest.fixture(scope="module")
def photos():
    return conftest.shared_photos_224()


@pytest.fixture(scope="module")
def model():
    return mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.PTQ_MODEL), dtype="int8")


def _litert_reference(path, photos, tensors):
    """LiteRT's reference kernels (BUILTIN_REF) on each photo of `photos` (N, 224, 224, 3) uint8:
    ({tensor: (N, ...) float64 of its stored integers}, {tensor: (scale, zero point)}, the file's
    output probabilities (N, 1001))."""
    it = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
                            experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = {t: [] for t in tensors}
    probs = []
    for k in range(len(photos)):
        it.set_tensor(inp["index"], photos[k:k + 1])
        it.invoke()
        for t in tensors:
            out[t].append(it.get_tensor(t)[0].astype(np.float64))
        probs.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    quant = {d["index"]: d["quantization"] for d in it.get_tensor_details()}
    return {t: np.stack(v) for t, v in out.items()}, quant, np.stack(probs)


@pytest.fixture(scope="module")
def reference(photos, model):
    """LiteRT reference kernels on each photo: {tensor: (N, ...) int8/uint8}, probabilities, quantization."""
    first_conv = next(op for op in model.model.ops if op["type"] == "CONV_2D")["outputs"][0]
    tensors, quant, probs = _litert_reference(conftest.PTQ_MODEL, photos, (model.feature_tensor, first_conv))
    return dict(tensors=tensors, probs=probs, quant=quant, first_conv=first_conv)


def _steps(real, quant):
    scale, zp = quant
    return real / scale + zp


@needs_vnni
def test_first_conv_requantizes_like_tflite(photos, model, reference):
    """QUANTIZE + CONV_2D(RELU6) on the same input: per-channel weight scales, zero points, bias, clamp."""
    t = reference["first_conv"]
    x = model._prepare(photos)
    got = np.full(reference["tensors"][t].shape, np.nan)
    got[:] = _steps(model.model.run(x, t, precision="int8"), reference["quant"][t])
    d = np.abs(got - reference["tensors"][t])
    assert d.max() <= FIRST_CONV_MAX_STEPS + 1e-3
    assert (d > 0.5).mean() <= FIRST_CONV_MAX_FRACTION_OFF


@needs_vnni
def test_pooled_features_as_close_to_the_reference_as_litert_fast_kernels(photos, model, reference):
    t = model.feature_tensor
    ref = reference["tensors"][t].reshape(len(photos), -1)
    zp = reference["quant"][t][1]
    got = np.full(ref.shape, np.nan)
    got[:] = _steps(model.predict(photos, batch_size=2), reference["quant"][t])
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref - zp, axis=1)
    assert rel.max() <= POOLED_MAX_REL_L2, rel


def _top1(features, weights_model):
    """Classifier of the file (a 1x1 CONV_2D over the pooled features) in float64."""
    cls = next(op for op in weights_model.model.ops if op["type"] == "CONV_2D"
               and op["inputs"][0] == weights_model.feature_tensor)
    w = np.asarray(weights_model.model.get_tensor(cls["inputs"][1]), np.float64).reshape(1001, -1)
    b = np.asarray(weights_model.model.get_tensor(cls["inputs"][2]), np.float64)
    return list((features.astype(np.float64) @ w.T + b).argmax(axis=1))


@needs_vnni
def test_top1_equals_litert_reference_and_f32(photos, model, reference):
    int8 = model.predict(photos)
    f32 = mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.PTQ_MODEL)).predict(photos)
    assert _top1(int8, model) == list(reference["probs"].argmax(axis=1)) == _top1(f32, model) \
        == list(PHOTOS.values())


@needs_vnni
@pytest.mark.parametrize("path", [conftest.PTQ_MODEL, conftest.QUANT_MODEL], ids=["ptq", "quant"])
def test_int8_engine_runs_int8_convolutions(path):
    """oneDNN's verbose log: every convolution reads s8 weights and an s8 source, or a u8 source
    without zero point where that source is a ReLU6 output (zero point -128 as s8: stored as u8,
    csrc/ops/conv.c int8_output_as_u8), none a reference kernel."""
    import os
    import subprocess
    import sys

    code = ("import sys, numpy as np; from tflite_transfer.applications import mobilenet_v2 as mv\n"
            "m = mv.MobileNetV2(include_top=False, pooling='avg', weights=sys.argv[1], dtype='int8')\n"
            "m.predict(np.zeros((2, 224, 224, 3), np.uint8), batch_size=2)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       check=True, env=dict(os.environ, ONEDNN_VERBOSE="1"), cwd=str(conftest.REPO))
    convs = [ln.split(",") for ln in r.stdout.splitlines() if ln.startswith("onednn_verbose,exec,cpu,convolution")]
    assert len(convs) >= 52, len(convs)
    u8 = 0
    for f in convs:
        line = ",".join(f)
        assert ("src_s8" in line or "src_u8" in line) and "wei_s8" in line and not f[4].startswith("ref"), line
        if "src_u8" in line:
            u8 += 1
            assert "zero-points:src" not in line, line
    # each block's depthwise and project convs read ReLU6 outputs (block 0: the stem's and its dw's)
    assert u8 >= 34, u8


@needs_vnni
def test_int8_rejects_a_file_outside_the_scheme():
    # float weights have no quantization to run: the message names the tensor and what it is
    with pytest.raises(ValueError, match=r"int8 \(or per-tensor uint8\) weights.*is not int8"):
        mv.MobileNetV2(include_top=False, weights="imagenet_float", dtype="int8")


# The quant-aware file: uint8 activations (shifted to s8 exactly) and uint8 per-tensor weights with
# non-zero zero points, which oneDNN's CPU convolutions cannot take; converted once at build (exact
# per channel where q - zp fits in s8, else symmetric per-channel requantization; engine/quant.c).
# Measured on the 5 photos: relative L2 to LiteRT's reference kernels 0.043-0.099 (the ptq file:
# 0.055-0.089; our float32 engine on this file: 0.041-0.062); with every channel requantized
# (before keeping the exact ones) it was 0.11-0.15.
@pytest.fixture(scope="module")
def quant_reference(photos):
    model = mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.QUANT_MODEL), dtype="int8")
    t = model.feature_tensor
    tensors, quant, probs = _litert_reference(conftest.QUANT_MODEL, photos, (t,))
    return model, tensors[t].reshape(len(photos), -1), probs, quant[t]


@needs_vnni
@pytest.mark.parametrize("dtype", ["int8", "int8_tflite"])
def test_quant_aware_file_runs_in_int8_close_to_litert(photos, quant_reference, dtype):
    # int8_tflite on this file is not bit-exact (its weights are converted), but must be as close:
    # it rounds the file's bias to the converted weights' units (measured 4.9-6.4% from float32;
    # 34-54% when the bias kept the file's units).
    _, ref, _, quant = quant_reference
    model = mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.QUANT_MODEL), dtype=dtype)
    got = np.full(ref.shape, np.nan)
    got[:] = _steps(model.predict(photos, batch_size=2), quant)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref - quant[1], axis=1)
    assert rel.max() <= POOLED_MAX_REL_L2, rel


@needs_vnni
def test_quant_aware_file_top1_equals_litert_and_f32(photos, quant_reference):
    model, _, probs, _ = quant_reference
    f32 = mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.QUANT_MODEL)).predict(photos)
    assert _top1(model.predict(photos), model) == list(probs.argmax(axis=1)) == _top1(f32, model) \
        == list(PHOTOS.values())


@needs_vnni
def test_int8_needs_include_top_false():
    with pytest.raises(ValueError, match="include_top"):
        mv.MobileNetV2(weights=str(conftest.PTQ_MODEL), dtype="int8")


# dtype="int8_tflite": oneDNN accumulates each convolution exactly in int32, then TFLite's own
# integer arithmetic requantizes (QuantizeMultiplier + MultiplyByQuantizedMultiplier, double
# rounding) and adds (TFLite's int8 ADD, left shift 20). Measured: all 62 convolution / depthwise /
# ADD outputs of the ptq file bit-identical to LiteRT's reference kernels on the 5 photos, and the
# pooled features too (TFLite's integer MEAN; averaged in float they were within 0.53 of a step).
@pytest.fixture(scope="module")
def exact_model():
    return mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.PTQ_MODEL), dtype="int8_tflite")


@pytest.fixture(scope="module")
def every_int8_tensor(photos, exact_model):
    """LiteRT reference kernels: {tensor: (5, ...) float64 of the int8 values} for every CONV_2D,
    DEPTHWISE_CONV_2D and ADD output and the pooled features, and each tensor's (scale, zero point)."""
    tensors = [op["outputs"][0] for op in exact_model.model.ops
               if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")]
    tensors = [t for t in tensors if t != exact_model.logits_tensor] + [exact_model.feature_tensor]
    return _litert_reference(conftest.PTQ_MODEL, photos, tensors)


@needs_vnni
def test_int8_tflite_every_int8_tensor_equals_litert_reference(photos, exact_model, every_int8_tensor):
    ref, quant, _ = every_int8_tensor
    x = exact_model._prepare(photos)
    maps = [t for t in ref if t != exact_model.feature_tensor]
    assert len(maps) == 62  # 35 CONV_2D (the first 3x3, 34 1x1), 17 DEPTHWISE_CONV_2D, 10 ADD
    for t in maps:
        got = np.full(ref[t].shape, np.nan)
        got[:] = _steps(exact_model.model.run(x, t, precision="int8_tflite"), quant[t])
        off = np.abs(got - ref[t])
        assert off.max() < 1e-3, f"tensor {t}: {np.mean(off > 0.5):.4%} of int8 values differ (max {off.max():.1f})"


@needs_vnni
def test_int8_tflite_pooled_features_equal_litert_reference(photos, exact_model, every_int8_tensor):
    """The pooled features (TFLite's int8 MEAN of the exact last map) bit-identical: the issue asks
    >= 99% within one output step; a float average of the same int8 maps is off by up to 0.53."""
    ref, quant, _ = every_int8_tensor
    t = exact_model.feature_tensor
    want = ref[t].reshape(len(photos), -1)
    got = np.full(want.shape, np.nan)
    got[:] = _steps(exact_model.predict(photos, batch_size=2), quant[t])
    off = np.abs(got - want)
    assert off.max() < 1e-3, (np.mean(off > 0.5), off.max())


@needs_vnni
def test_int8_tflite_top1_equals_litert_and_f32(photos, exact_model, every_int8_tensor):
    _, _, probs = every_int8_tensor
    f32 = mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.PTQ_MODEL)).predict(photos)
    assert _top1(exact_model.predict(photos), exact_model) == list(probs.argmax(axis=1)) == _top1(f32, exact_model) \
        == list(PHOTOS.values())


# TFLite's integer arithmetic (engine/quant.c, exposed as _core functions) against a NumPy int64
# transcription of tensorflow/lite/kernels/internal/common.h and quantization_util.cc, on edge cases.
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


def _np_quantize_multiplier(real):
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(q * 2 ** 31 + 0.5))  # TfLiteRound: half away from zero (q > 0)
    if q_fixed == 2 ** 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def _np_mbqm(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul then RoundingDivideByPOT, int64."""
    x = np.asarray(x, np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    a = ((x << left) + 2 ** 31) % 2 ** 32 - 2 ** 31  # int32 wrap, as TFLite's x * (1 << left)
    ab = a * multiplier
    num = ab + np.where(ab >= 0, 2 ** 30, 1 - 2 ** 30)
    high = np.where(num >= 0, num // 2 ** 31, -((-num) // 2 ** 31))  # C division: toward zero
    high = np.where((a == INT32_MIN) & (multiplier == INT32_MIN), INT32_MAX, high)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)


def test_int8_without_vnni_is_a_clear_error(monkeypatch):
    # oneDNN without VNNI multiplies int8 in 16 bits (measured on a Zen 3, AVX2: the first conv
    # off by up to 7 steps on 25% of its outputs, pooled features 0.17 relative L2 from LiteRT's
    # reference): raised, never run silently.
    monkeypatch.setattr(_core, "has_vnni", lambda: False)
    for dtype in ("int8", "int8_tflite"):
        with pytest.raises(ValueError, match=f"dtype='{dtype}' needs a CPU with VNNI"):
            mv.MobileNetV2(include_top=False, pooling="avg", weights=str(conftest.PTQ_MODEL), dtype=dtype)


@pytest.mark.skipif(_core.has_vnni(), reason="this CPU has VNNI: the engine runs int8 (the tests above)")
def test_int8_engine_without_vnni_raises():
    # the C engine's own check, for callers below the Keras API (_core.Model.run)
    m = _core.Model(conftest.PTQ_MODEL.read_bytes())
    with pytest.raises(ValueError, match="int8 needs a CPU with VNNI"):
        m.run(np.zeros((1, 224, 224, 3), np.float32), precision="int8")


def test_quantize_multiplier_equals_tflite_formula():
    reals = [0.0, 2.0 ** -40, 2.0 ** -32, 2.0 ** -31, 0.5, 1.0, 1.0 - 2.0 ** -40, 0.75, 1.2333,
             0.0235294122248888 * 0.0123 / 0.0190778, 3.9, 123.456]
    reals += list(np.random.default_rng(0).uniform(1e-6, 4.0, 200))
    for r in reals:
        assert _core.quantize_multiplier(float(r)) == _np_quantize_multiplier(float(r)), r


def test_mean_multiplier_folds_one_over_count_like_tflite():
    for real, count in [(1.2333, 49), (0.5, 1), (1.0, 2), (0.9, 64), (2.0 ** -30, 49), (0.3, 12544), (1.7, 3)]:
        m, shift = _np_quantize_multiplier(real)
        k = min(count.bit_length() - 1, 32, 31 + shift)
        assert _core.mean_multiplier(real, count) == ((m << k) // count, shift - k), (real, count)


@pytest.mark.parametrize("shift", [-31, -20, -7, -1, 0, 1, 4])
def test_multiply_by_quantized_multiplier_equals_tflite_formula(shift):
    rng = np.random.default_rng(shift + 40)
    # ties of both roundings (odd x with multiplier 2^30 = one half; x = +-3 * 2^(right - 1)),
    # negative values, the int32 extremes, and random values
    x = np.array([0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, INT32_MIN, INT32_MAX, INT32_MIN + 1,
                  3 << max(-shift - 1, 0), -(3 << max(-shift - 1, 0))], np.int64)
    x = np.concatenate([x, rng.integers(INT32_MIN, INT32_MAX, 2000, endpoint=True)]).astype(np.int32)
    if shift > 0:  # TFLite multiplies x by 2^shift first: keep it in int32 range as real kernels do
        x = x >> shift
    for multiplier in [0, 2 ** 30, 2 ** 30 + 1, 2 ** 31 - 1, 1324286437, 864840122]:
        got = np.full(x.shape, np.nan)
        got[:] = _core.multiply_by_quantized_multiplier(x, multiplier, shift)
        want = _np_mbqm(x, multiplier, shift)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (multiplier, x[bad[:5]], got[bad[:5]], want[bad[:5]])


def test_multiply_by_quantized_multiplier_rounding_by_hand():
    """TFLite's two roundings, worked by hand: SaturatingRoundingDoublingHighMul rounds ties up
    (its nudge for negatives is 1 - 2^30: 3 * 0.5 = 1.5 -> 2, -1.5 -> -1); RoundingDivideByPOT
    rounds ties away from zero (3 / 2 -> 2, -3 / 2 -> -2); and they round twice (5 * 0.5 / 2:
    2.5 -> 3, 3 / 2 -> 2, where one rounding of 1.25 would give 1)."""
    def mbqm(values, shift):
        return list(_core.multiply_by_quantized_multiplier(np.array(values, np.int32), 2 ** 30, shift))
    assert mbqm([3, -3], 0) == [2, -1]
    assert mbqm([6, -6], -1) == [2, -2]
    assert mbqm([5, -5], -1) == [2, -1]
