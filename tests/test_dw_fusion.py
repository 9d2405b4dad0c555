"""The expand 1x1 + depthwise 3x3 fusion of inference engines (csrc/engine/plan.c,
tt_plan_dw_fusion; csrc/ops/conv.c, conv_forward_dw_fused): oneDNN's depthwise post-op.

Specification:
- the fused engine computes what the two convolutions compute: the pooled features of the
  shared photos equal the unfused engine's (TFLITE_TRANSFER_DW_FUSION=0) to float32
  rounding, for stride 1 and stride 2 blocks (the stride-2 ones carry Keras'
  ZeroPadding2D(((0, 1), (0, 1))), which the post-op's padding must reproduce);
- the fusion really happens (oneDNN's verbose log names the post-op, both strides);
- results are the same bits whatever the batch size and the thread count, although oneDNN
  fuses a pair or not depending on them (an unfused pair runs the fused primitive's own
  kernels, found by name in oneDNN's list; a name that is not there never ends on the
  reference kernel).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import conftest
from conftest import IMAGES, PTQ_MODEL
import tflite_transfer as tt
from tflite_transfer import _core

NAMES = ["grace_hopper", "cat", "bird", "dragonfly", "sunflower"]


@pytest.fixture(scope="module")
def photos():
    """The 5 shared photos at 224x224 in [-1, 1], each also mirrored: (10, 224, 224, 3) float32."""
    x = [np.asarray(Image.open(IMAGES / f"{n}.bmp").convert("RGB").resize((224, 224), Image.BILINEAR),
                    dtype=np.float32) / 127.5 - 1.0 for n in NAMES]
    x = np.stack(x)
    return np.ascontiguousarray(np.concatenate([x, x[:, :, ::-1]]))


def _model():
    return _core.Model(PTQ_MODEL.read_bytes(), name=PTQ_MODEL.name)


def _pooled(model):
    (op,) = [op for op in model.ops if op["type"] in ("MEAN", "AVERAGE_POOL_2D")]
    return op["outputs"][0]


def _features(photos, precision, fusion, monkeypatch):
    with monkeypatch.context() as mp:
        if not fusion:
            mp.setenv("TFLITE_TRANSFER_DW_FUSION", "0")
        m = _model()  # a new model: engines are built (and the variable read) on its first run
        out = np.full((len(photos), 1, 1, 1280), np.nan, np.float32)
        out[:] = m.run(photos, output_tensor=_pooled(m), precision=precision)
    return out


def test_fused_f32_features_equal_the_unfused_ones(photos, monkeypatch):
    fused = _features(photos, "float32", True, monkeypatch)
    plain = _features(photos, "float32", False, monkeypatch)
    assert np.isfinite(fused).all()
    # float32: the same sums in another order; measured max |diff| 1.1e-5 of features up to 5.7
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
    assert np.abs(plain).max() > 1.0  # real features, not zeros on both sides


@pytest.mark.skipif(not _core.has_bf16(), reason="this CPU has no bfloat16 instructions")
def test_fused_bf16_features_equal_the_unfused_ones(photos, monkeypatch):
    fused = _features(photos, "bfloat16", True, monkeypatch)
    plain = _features(photos, "bfloat16", False, monkeypatch)
    assert np.isfinite(fused).all()
    # the expanded tensor is rounded to bf16 in both (dst of the 1x1 / src of the depthwise)
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-2 * np.abs(plain).max())


def _verbose_convs(precision, threads, batch, hw=(224, 224)):
    code = ("import sys, numpy as np; from tflite_transfer import _core; import tflite_transfer as tt\n"
            f"tt.set_num_threads({threads}); m = _core.Model(open({str(PTQ_MODEL)!r}, 'rb').read())\n"
            f"m.run(np.zeros(({batch}, {hw[0]}, {hw[1]}, 3), np.float32), precision={precision!r})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, ONEDNN_VERBOSE="1"), cwd=str(conftest.REPO))
    return [ln for ln in r.stdout.splitlines() if ln.startswith("onednn_verbose,exec,cpu,convolution")]


def test_the_post_op_runs_for_stride_1_and_stride_2_blocks():
    # One micro-batch (4 images, one execution) at 448 x 448: every expanded tensor is at
    # least 4.8 MB, above oneDNN's cache threshold for fusing (2 x L2 per thread) on CPUs
    # with up to 2 MB of L2 per core, so the count does not hinge on this CPU's cache.
    fused = [ln for ln in _verbose_convs("float32", 1, 4, (448, 448)) if "+dw:k3" in ln]
    # 16 expand + depthwise pairs, 13 of them proposed at 224 (the three 7x7 ones are not: plan.c)
    assert len(fused) >= 10, len(fused)
    assert any("+dw:k3s1p1" in ln for ln in fused) and any("+dw:k3s2p0" in ln for ln in fused)


PRECISIONS = ["float32"] + (["bfloat16"] if _core.has_bf16() else [])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("threads,batch", [(1, 8), (2, 2)])
def test_no_convolution_falls_back_to_a_reference_kernel(precision, threads, batch):
    # An unfused pair asks for the fused primitive's kernels by name; a name that is not in
    # oneDNN's list must leave oneDNN's own choice, never the reference kernel at the end of
    # the list (measured once: bf16 at 0.5 images/s).
    convs = _verbose_convs(precision, threads, batch)
    assert len(convs) >= 36
    impls = sorted({ln.split(",")[4] for ln in convs})
    assert not [i for i in impls if i.startswith("ref")], impls


@pytest.mark.parametrize("precision", PRECISIONS + (["int8"] if _core.has_vnni() else []))  # int8: not fused
def test_same_bits_for_any_batch_size_and_thread_count(photos, precision):
    before = tt.get_num_threads()
    m = _model()
    t = _pooled(m)
    x = np.ascontiguousarray(np.concatenate([photos, photos[::-1]]))  # 20 images: lanes at 2 threads
    try:
        tt.set_num_threads(2)
        ref = m.run(x, output_tensor=t, precision=precision)
        singles = np.concatenate([m.run(x[k:k + 1], output_tensor=t, precision=precision) for k in range(0, 20, 7)])
        three = m.run(x[:3], output_tensor=t, precision=precision)
        tt.set_num_threads(1)
        one_thread = m.run(x, output_tensor=t, precision=precision)
    finally:
        tt.set_num_threads(before)
    np.testing.assert_array_equal(singles, ref[0:20:7])
    np.testing.assert_array_equal(three, ref[:3])
    np.testing.assert_array_equal(one_thread, ref)


def test_odd_sizes_fuse_stride_2_with_top_padding_and_agree(monkeypatch):
    # 97 x 131: odd maps before stride-2 blocks, where TF's SAME pads 1 on top and 1 at the
    # bottom (post-op padding_l = 1, "k3s2p1"), unlike the even 224 case ("k3s2p0")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 97, 131, 3)).astype(np.float32)
    outs = []
    for fusion in (True, False):
        with monkeypatch.context() as mp:
            if not fusion:
                mp.setenv("TFLITE_TRANSFER_DW_FUSION", "0")
            m = _model()
            outs.append(m.run(x, output_tensor=_pooled(m)))
    fused, plain = outs
    assert fused.shape == (2, 1, 1, 1280) and np.isfinite(fused).all()
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
    # the post-op with top padding: one micro-batch (4 images) of 193 x 261, whose first
    # stride-2 pair reads 97 x 131 (odd both ways: p1) and whose expanded tensor is far above
    # oneDNN's cache threshold for fusing (2 x L2 per thread); smaller maps sit near it
    assert any("+dw:k3s2p1" in ln for ln in _verbose_convs("float32", 1, 4, (193, 261)))
