"""End-to-end checks of Model.run() (csrc/engine.c): real photos with known ImageNet classes,
output shapes, and argument errors. The NumPy float64 parity tests live in other files."""
import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES, PTQ_MODEL, QUANT_MODEL
from tflite_builder import build_model
from tflite_transfer import _core

# ../shared/README.md: expected top-1 index in imagenet_labels.txt (index 0 = background).
EXPECTED_TOP1 = {"grace_hopper": 653, "cat": 286, "bird": 20, "dragonfly": 320, "sunflower": 986}


@pytest.fixture(scope="module")
def photos():
    """The 5 shared photos, bilinear-resized to 224x224, scaled to [-1, 1] (x / 127.5 - 1)."""
    x = [np.asarray(Image.open(IMAGES / f"{name}.bmp").convert("RGB").resize((224, 224), Image.BILINEAR),
                    dtype=np.float32) / 127.5 - 1.0 for name in EXPECTED_TOP1]
    return np.ascontiguousarray(np.stack(x))


@pytest.fixture(scope="module", params=[QUANT_MODEL, PTQ_MODEL], ids=["quant", "ptq"])
def model(request):
    return _core.Model(request.param.read_bytes(), name=request.param.name)


def _pooled_tensor(model):
    pool = [op for op in model.ops if op["type"] in ("MEAN", "AVERAGE_POOL_2D")]
    assert len(pool) == 1
    return pool[0]["outputs"][0]


def test_photos_give_the_expected_top1(model, photos):
    probs = model.run(photos)
    assert probs.shape == (5, 1001) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert probs.argmax(axis=1).tolist() == list(EXPECTED_TOP1.values())


def test_batch_items_are_independent(model, photos):
    """Each image's result is the same alone and inside a batch (also checks buffer reuse)."""
    batch = model.run(photos)
    for k in (0, 3):
        np.testing.assert_allclose(model.run(photos[k:k + 1]), batch[k:k + 1], rtol=1e-4, atol=1e-6)


def test_large_batches_run_in_chunks_with_the_same_results(model, photos):
    """Batches above the engine's micro-batch (4) run as chunks plus a remainder (11 = 4 + 4 + 3)."""
    x = np.concatenate([photos, photos[::-1], photos[:1]])
    t = _pooled_tensor(model)
    big = model.run(x, output_tensor=t)
    assert big.shape == (11, 1, 1, 1280)
    for k in (0, 3, 4, 7, 8, 10):
        np.testing.assert_allclose(big[k], model.run(x[k:k + 1], output_tensor=t)[0], rtol=1e-5, atol=1e-6)


def test_pooled_features_have_1280_values_per_image(model, photos):
    t = _pooled_tensor(model)
    feats = model.run(photos[:2], output_tensor=t)
    assert feats.shape == model.output_shape(t, batch=2) == (2, 1, 1, 1280)
    assert np.isfinite(feats).all() and (feats >= 0).all() and (feats <= 6).all()  # mean of RELU6 outputs


def test_other_input_sizes_propagate_shapes(model):
    pool = next(op for op in model.ops if op["type"] in ("MEAN", "AVERAGE_POOL_2D"))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 160, 192, 3)).astype(np.float32)
    fmap = model.run(x, output_tensor=pool["inputs"][0])  # the last 1x1 conv's feature map
    assert fmap.shape == (1, 5, 6, 1280) and np.isfinite(fmap).all()
    if pool["type"] == "MEAN":  # global: any size works, and it is the mean of the map
        np.testing.assert_allclose(model.run(x, output_tensor=pool["outputs"][0]).ravel(),
                                   fmap.mean(axis=(1, 2)).ravel(), rtol=1e-5, atol=1e-6)
    else:  # the quant model's fixed 7x7 VALID pool needs at least 7x7
        with pytest.raises(ValueError, match=r"AVERAGE_POOL_2D\): the 5x6 input is smaller than the 7x7 window"):
            model.run(x, output_tensor=pool["outputs"][0])


def test_output_shape(model):
    assert model.output_shape() == (1, 1001)
    assert model.output_shape(batch=7) == (7, 1001)
    conv0 = next(op for op in model.ops if op["type"] == "CONV_2D")
    assert model.output_shape(conv0["outputs"][0], batch=2, height=225, width=97) == (2, 113, 49, 32)


@pytest.mark.parametrize("x,match", [
    (np.zeros((224, 224, 3), np.float32), r"`x` must be a 4D array .* x.shape=\(224, 224, 3\)"),
    (np.zeros((1, 224, 224, 3), np.float64), r"`x` must have dtype float32 .* x.dtype=float64"),
    (np.zeros((1, 224, 224, 1), np.float32), r"`x` must have the model's channel count .* x.shape=\(1, 224, 224, 1\)"),
    (np.zeros((0, 224, 224, 3), np.float32), r"`x` must have N, H, W >= 1 .* x.shape=\(0, 224, 224, 3\)"),
    (np.zeros((1, 224, 224, 6), np.float32)[..., ::2], r"`x` must be C-contiguous"),
    ([[1.0]], r"`x` must be a float32 NumPy array"),
])
def test_run_rejects_bad_arrays(x, match):
    model = _core.Model(QUANT_MODEL.read_bytes())
    with pytest.raises(ValueError, match=match):
        model.run(x)


def test_run_rejects_bad_output_tensor_and_small_inputs():
    model = _core.Model(QUANT_MODEL.read_bytes())
    x = np.zeros((1, 224, 224, 3), np.float32)
    with pytest.raises(ValueError, match=r"`output_tensor` must be a tensor index in \[0, 174\)"):
        model.run(x, output_tensor=999)
    w = model.ops[0]["inputs"][1]
    with pytest.raises(ValueError, match=rf"tensor {w} .* is a constant"):
        model.run(x, output_tensor=w)
    with pytest.raises(ValueError, match=r"AVERAGE_POOL_2D\): the 2x2 input is smaller than the 7x7 window"):
        model.run(np.zeros((1, 64, 64, 3), np.float32))


def test_unreachable_tensor_is_rejected():
    data = build_model(
        [dict(name="x", shape=[1, 4, 4, 2], dtype="float32"), dict(name="z", shape=[1, 4, 4, 2], dtype="float32"),
         dict(name="y", shape=[1, 4, 4, 2], dtype="float32")],
        [dict(op="ADD", inputs=[0, 1], outputs=[2])], [0, 1], [2])
    with pytest.raises(ValueError, match=r"tensor 1 \('z'\) is not computed from the model's first input"):
        _core.Model(data).run(np.zeros((1, 4, 4, 2), np.float32))


def test_nan_input_does_not_crash_or_poison_later_runs(model, photos):
    """run() does not scan for NaN (the Python API does); RELU6 clipping may absorb NaNs.
    What must hold: no crash, and no state left behind in the cached engine's buffers."""
    x = np.full((5, 224, 224, 3), np.nan, np.float32)
    assert model.run(x).shape == (5, 1001)
    assert model.run(photos).argmax(axis=1).tolist() == list(EXPECTED_TOP1.values())


# ---- engine-specific graph rewrites, checked against NumPy float64 ---------------------------

def _conv_ref(x, w, stride, pads, depthwise=False):
    """Cross-correlation as TFLite: x [N, H, W, C]; w [O, KH, KW, C] or depthwise [1, KH, KW, C];
    pads ((top, bottom), (left, right)) of zeros."""
    x = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw = w.shape[1:3]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            y = y + (patch * w[0, i, j] if depthwise else patch @ w[:, i, j, :].T.astype(np.float64))
    return y


def _t(name, shape, data=None, dtype="float32"):
    return dict(name=name, shape=shape, dtype=dtype, data=data)


def test_residual_add_folded_into_the_projecting_conv_matches_numpy():
    """MobileNetV2 block: expand 1x1 (RELU6) -> depthwise 3x3 (RELU6) -> project 1x1 -> ADD(block input).
    The engine computes the ADD as a sum post-op of the projecting conv, in the input's buffer."""
    rng = np.random.default_rng(3)
    c, e = 8, 24
    w0 = rng.normal(size=(c, 1, 1, 3)) * 0.5
    w1, w2, w3 = (rng.normal(size=s) * 0.3 for s in [(e, 1, 1, c), (1, 3, 3, e), (c, 1, 1, e)])
    data = build_model(
        [_t("x", [1, 9, 9, 3]), _t("w0", [c, 1, 1, 3], w0), _t("a", [1, 9, 9, c]), _t("w1", [e, 1, 1, c], w1),
         _t("h1", [1, 9, 9, e]), _t("w2", [1, 3, 3, e], w2), _t("h2", [1, 9, 9, e]), _t("w3", [c, 1, 1, e], w3),
         _t("p", [1, 9, 9, c]), _t("y", [1, 9, 9, c])],
        [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2]),
         dict(op="CONV_2D", inputs=[2, 3, -1], outputs=[4], options=dict(fused_activation_function="RELU6")),
         dict(op="DEPTHWISE_CONV_2D", inputs=[4, 5, -1], outputs=[6], options=dict(fused_activation_function="RELU6")),
         dict(op="CONV_2D", inputs=[6, 7, -1], outputs=[8]),
         dict(op="ADD", inputs=[8, 2], outputs=[9])], [0], [9])
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    a = _conv_ref(x, w0, 1, ((0, 0), (0, 0)))
    h = np.clip(_conv_ref(a, w1, 1, ((0, 0), (0, 0))), 0, 6)
    h = np.clip(_conv_ref(h, w2, 1, ((1, 1), (1, 1)), depthwise=True), 0, 6)
    ref = _conv_ref(h, w3, 1, ((0, 0), (0, 0))) + a
    got = np.full(ref.shape, np.nan, np.float32)
    got[...] = _core.Model(data).run(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_pad_folded_into_a_stride_2_valid_depthwise_conv_matches_numpy():
    """Keras' ZeroPadding2D(((0, 1), (0, 1))) + DepthwiseConv2D(3, strides=2, padding='valid'): the PAD
    becomes the conv's (asymmetric) padding."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(1, 3, 3, 5))
    pads = np.array([[0, 0], [0, 1], [0, 1], [0, 0]])
    data = build_model(
        [_t("x", [1, 8, 7, 5]), _t("pads", [4, 2], pads, "int32"), _t("xp", [1, 9, 8, 5]), _t("w", [1, 3, 3, 5], w),
         _t("y", [1, 4, 3, 5])],
        [dict(op="PAD", inputs=[0, 1], outputs=[2]),
         dict(op="DEPTHWISE_CONV_2D", inputs=[2, 3, -1], outputs=[4],
              options=dict(padding="VALID", stride_h=2, stride_w=2, fused_activation_function="RELU"))], [0], [4])
    x = rng.normal(size=(3, 8, 7, 5)).astype(np.float32)
    ref = np.maximum(_conv_ref(x, w, 2, ((0, 1), (0, 1)), depthwise=True), 0)
    got = _core.Model(data).run(x)
    assert got.shape == ref.shape == (3, 4, 3, 5)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
