"""Per-op parity: the C engine (``_core.Model.run``) vs the NumPy float64 reference.

Each test builds a small .tflite model with ``tflite_builder`` (one op, or a
short chain where the op needs a second activation, as ADD and CONCATENATION
do in MobileNetV2), runs it on a batch of 2 with our engine and with
``tests/reference.py``, and checks

    max|ours - ref| <= 1e-5 * max|ref|        (float32 engine, float64 reference)

The bound: each output is a sum of at most a few hundred float32 products of
O(1) values, whose rounding error is ~sqrt(K) * 2^-24 relative to the largest
terms, well below 1e-5; an indexing or padding mistake moves whole values.
Weights are random normal; inputs uniform in [-1, 1]; the models' stored
shapes have batch 1 (as real .tflite files), so batch 2 also checks the
engine's shape propagation.
"""
import math

import numpy as np
import pytest

from reference import ReferenceModel
from tflite_builder import build_model
from tflite_transfer import _core

RTOL = 1e-5
BATCH = 2


def _t(name, shape, dtype="float32", data=None, quant=None):
    return dict(name=name, shape=list(shape), dtype=dtype, data=data, quant=quant)


def _out_size(size, k, stride, dilation, padding):
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return math.ceil(size / stride)
    return math.ceil((size - eff + 1) / stride)


def _check(data, x, output=None, ref_output=None):
    """Runs both; asserts shapes equal and the tolerance; returns (ours, ref)."""
    core = _core.Model(data, name="test.tflite")
    ref = ReferenceModel(data)
    ours = core.run(np.ascontiguousarray(x, dtype=np.float32), output)
    want = ref.run(x, ref_output if ref_output is not None else output)
    assert ours.dtype == np.float32
    assert ours.shape == want.shape, f"shape {ours.shape} != reference {want.shape}"
    scale = np.abs(want).max()
    assert scale > 0, "degenerate test: the reference output is all zeros"
    err = np.abs(ours.astype(np.float64) - want).max()
    assert err <= RTOL * scale, f"max|ours - ref| = {err:.3g} > {RTOL} * {scale:.3g}"
    return ours, want


def _input(rng, h, w, c, n=BATCH):
    return rng.uniform(-1, 1, size=(n, h, w, c)).astype(np.float32)


def _conv_model(rng, h, w, cin, cout, kh, kw, sh=1, sw=1, padding="SAME", dh=1, dw=1, act="NONE",
                wscale=1.0):
    oh, ow = _out_size(h, kh, sh, dh, padding), _out_size(w, kw, sw, dw, padding)
    wt = (rng.standard_normal((cout, kh, kw, cin)) * wscale).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    tensors = [_t("x", [1, h, w, cin]), _t("w", wt.shape, data=wt), _t("b", [cout], data=b),
               _t("y", [1, oh, ow, cout])]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(padding=padding, stride_h=sh, stride_w=sw, dilation_h_factor=dh,
                             dilation_w_factor=dw, fused_activation_function=act))]
    return build_model(tensors, ops, [0], [3])


# -- CONV_2D -----------------------------------------------------------------------
@pytest.mark.parametrize("h,w,cin,cout,kh,kw,sh,sw,padding", [
    (7, 9, 3, 8, 1, 1, 1, 1, "SAME"),     # 1x1, odd sizes
    (7, 9, 3, 8, 3, 3, 1, 1, "SAME"),     # 3x3 stride 1
    (7, 9, 3, 8, 3, 3, 2, 2, "SAME"),     # odd input, stride 2: symmetric padding
    (8, 8, 4, 6, 3, 3, 2, 2, "SAME"),     # even input, stride 2: extra pad at bottom/right only
    (15, 15, 5, 7, 3, 3, 2, 2, "SAME"),
    (15, 15, 5, 7, 3, 3, 2, 2, "VALID"),
    (8, 8, 4, 6, 1, 1, 2, 2, "SAME"),     # 1x1 stride 2 (no padding, skips rows)
    (3, 3, 2, 4, 5, 5, 1, 1, "SAME"),     # kernel larger than the input
    (6, 7, 3, 4, 4, 4, 2, 2, "SAME"),     # even kernel: pad_before < pad_after
    (9, 6, 3, 5, 1, 3, 2, 1, "SAME"),     # non-square kernel, stride_h != stride_w
    (224, 224, 3, 8, 3, 3, 2, 2, "SAME"), # MobileNetV2's first layer geometry
])
def test_conv2d(h, w, cin, cout, kh, kw, sh, sw, padding):
    rng = np.random.default_rng(1)
    data = _conv_model(rng, h, w, cin, cout, kh, kw, sh, sw, padding)
    _check(data, _input(rng, h, w, cin))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d_dilation(padding):
    rng = np.random.default_rng(2)
    data = _conv_model(rng, 11, 10, 3, 4, 3, 3, padding=padding, dh=2, dw=3)
    _check(data, _input(rng, 11, 10, 3))


@pytest.mark.parametrize("act", ["RELU", "RELU6"])
def test_conv2d_fused_activation(act):
    rng = np.random.default_rng(3)
    # Large weights so that outputs fall below 0 and above 6: both clamps act.
    data = _conv_model(rng, 7, 7, 4, 6, 3, 3, act=act, wscale=3.0)
    ours, ref = _check(data, _input(rng, 7, 7, 4))
    assert ours.min() == 0.0 and (ref < 0).sum() == 0
    if act == "RELU6":
        assert ours.max() == 6.0
    else:
        assert ours.max() > 6.0


# -- DEPTHWISE_CONV_2D ---------------------------------------------------------------
def _dw_model(rng, h, w, c, k, s=1, padding="SAME", act="NONE", dil=1):
    oh, ow = _out_size(h, k, s, dil, padding), _out_size(w, k, s, dil, padding)
    wt = rng.standard_normal((1, k, k, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    tensors = [_t("x", [1, h, w, c]), _t("w", wt.shape, data=wt), _t("b", [c], data=b), _t("y", [1, oh, ow, c])]
    ops = [dict(op="DEPTHWISE_CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(padding=padding, stride_h=s, stride_w=s, depth_multiplier=1,
                             dilation_h_factor=dil, dilation_w_factor=dil, fused_activation_function=act))]
    return build_model(tensors, ops, [0], [3])


@pytest.mark.parametrize("h,w,c,k,s,padding,act,dil", [
    (7, 9, 8, 3, 1, "SAME", "NONE", 1),
    (7, 9, 8, 3, 2, "SAME", "RELU6", 1),
    (8, 8, 16, 3, 2, "SAME", "NONE", 1),   # even input, stride 2
    (15, 15, 5, 3, 2, "VALID", "RELU", 1),
    (2, 2, 4, 3, 1, "SAME", "NONE", 1),    # kernel larger than the input
    (9, 9, 6, 3, 1, "SAME", "NONE", 2),    # dilation
])
def test_depthwise_conv2d(h, w, c, k, s, padding, act, dil):
    rng = np.random.default_rng(4)
    _check(_dw_model(rng, h, w, c, k, s, padding, act, dil), _input(rng, h, w, c))


# -- pools ---------------------------------------------------------------------
@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("h,w,k,s,padding", [
    (7, 9, 2, 2, "VALID"),
    (8, 8, 3, 2, "SAME"),     # padded windows: the average counts in-bounds elements only
    (7, 7, 3, 1, "SAME"),
    (7, 7, 7, 1, "VALID"),    # global pooling as in the TF-slim MobileNetV2
])
def test_pool(op, h, w, k, s, padding):
    rng = np.random.default_rng(5)
    oh, ow = _out_size(h, k, s, 1, padding), _out_size(w, k, s, 1, padding)
    tensors = [_t("x", [1, h, w, 3]), _t("y", [1, oh, ow, 3])]
    ops = [dict(op=op, inputs=[0], outputs=[1], options=dict(padding=padding, stride_h=s, stride_w=s,
                                                            filter_height=k, filter_width=k))]
    _check(build_model(tensors, ops, [0], [1]), _input(rng, h, w, 3))


def test_avg_pool_fused_relu6():
    rng = np.random.default_rng(6)
    tensors = [_t("x", [1, 6, 6, 3]), _t("y", [1, 3, 3, 3])]
    ops = [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1],
                options=dict(padding="VALID", stride_h=2, stride_w=2, filter_height=2, filter_width=2,
                             fused_activation_function="RELU6"))]
    ours, _ = _check(build_model(tensors, ops, [0], [1]), _input(rng, 6, 6, 3) * 10)
    assert ours.min() == 0.0 and ours.max() == 6.0


# -- MEAN ----------------------------------------------------------------------
@pytest.mark.parametrize("keep_dims", [True, False])
def test_mean_over_hw(keep_dims):
    rng = np.random.default_rng(7)
    out_shape = [1, 1, 1, 6] if keep_dims else [1, 6]
    tensors = [_t("x", [1, 7, 5, 6]), _t("axes", [2], "int32", np.array([1, 2], np.int32)), _t("y", out_shape)]
    ops = [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=dict(keep_dims=keep_dims))]
    _check(build_model(tensors, ops, [0], [2]), _input(rng, 7, 5, 6))


# -- ADD, CONCATENATION (second operand from a conv of the input, as in MobileNetV2) ----
def _residual(rng, op, c=4, act="NONE", axis=3):
    wt = rng.standard_normal((c, 1, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    out_c = 2 * c if op == "CONCATENATION" else c
    tensors = [_t("x", [1, 5, 7, c]), _t("w", wt.shape, data=wt), _t("b", [c], data=b), _t("a", [1, 5, 7, c]),
               _t("y", [1, 5, 7, out_c])]
    opts = dict(fused_activation_function=act)
    if op == "CONCATENATION":
        opts["axis"] = axis
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3], options=dict(padding="SAME")),
           dict(op=op, inputs=[0, 3], outputs=[4], options=opts)]
    return build_model(tensors, ops, [0], [4])


@pytest.mark.parametrize("act", ["NONE", "RELU", "RELU6"])
def test_add(act):
    rng = np.random.default_rng(8)
    _check(_residual(rng, "ADD", act=act), _input(rng, 5, 7, 4) * 4)


@pytest.mark.parametrize("axis", [3, -1])
def test_concatenation_channels(axis):
    rng = np.random.default_rng(9)
    _check(_residual(rng, "CONCATENATION", axis=axis), _input(rng, 5, 7, 4))


def test_intermediate_tensor_as_output():
    rng = np.random.default_rng(10)
    data = _residual(rng, "ADD")
    _check(data, _input(rng, 5, 7, 4), output=3)


# -- FULLY_CONNECTED, RESHAPE, SOFTMAX, PAD, QUANTIZE/DEQUANTIZE --------------------
@pytest.mark.parametrize("act", ["NONE", "RELU"])
def test_fully_connected_flattens_nhwc(act):
    rng = np.random.default_rng(11)
    wt = rng.standard_normal((5, 24)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    tensors = [_t("x", [1, 2, 3, 4]), _t("w", wt.shape, data=wt), _t("b", [5], data=b), _t("y", [1, 5])]
    ops = [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3], options=dict(fused_activation_function=act))]
    _check(build_model(tensors, ops, [0], [3]), _input(rng, 2, 3, 4))


def test_classifier_head_mean_fc_softmax():
    rng = np.random.default_rng(12)
    wt = rng.standard_normal((10, 8)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    tensors = [_t("x", [1, 7, 7, 8]), _t("axes", [2], "int32", np.array([1, 2], np.int32)), _t("p", [1, 8]),
               _t("w", wt.shape, data=wt), _t("b", [10], data=b), _t("l", [1, 10]), _t("y", [1, 10])]
    ops = [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=dict(keep_dims=False)),
           dict(op="FULLY_CONNECTED", inputs=[2, 3, 4], outputs=[5]),
           dict(op="SOFTMAX", inputs=[5], outputs=[6], options=dict(beta=1.0))]
    ours, _ = _check(build_model(tensors, ops, [0], [6]), _input(rng, 7, 7, 8))
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_reshape_then_softmax(beta):
    rng = np.random.default_rng(13)
    tensors = [_t("x", [1, 1, 1, 10]), _t("shape", [2], "int32", np.array([1, 10], np.int32)),
               _t("r", [1, 10]), _t("y", [1, 10])]
    ops = [dict(op="RESHAPE", inputs=[0, 1], outputs=[2]),
           dict(op="SOFTMAX", inputs=[2], outputs=[3], options=dict(beta=beta))]
    _check(build_model(tensors, ops, [0], [3]), _input(rng, 1, 1, 10) * 5)


def test_reshape_flatten():
    rng = np.random.default_rng(14)
    tensors = [_t("x", [1, 2, 3, 4]), _t("shape", [2], "int32", np.array([1, 24], np.int32)), _t("y", [1, 24])]
    ops = [dict(op="RESHAPE", inputs=[0, 1], outputs=[2])]
    x = _input(rng, 2, 3, 4)
    ours, _ = _check(build_model(tensors, ops, [0], [2]), x)
    np.testing.assert_array_equal(ours, x.reshape(BATCH, 24))


def test_pad():
    rng = np.random.default_rng(15)
    pads = np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)
    tensors = [_t("x", [1, 5, 6, 3]), _t("pads", [4, 2], "int32", pads), _t("y", [1, 8, 9, 3])]
    ops = [dict(op="PAD", inputs=[0, 1], outputs=[2])]
    x = _input(rng, 5, 6, 3)
    ours, _ = _check(build_model(tensors, ops, [0], [2]), x)
    np.testing.assert_array_equal(ours[:, 1:6, 2:8, :], x)


def test_quantize_dequantize_are_identity_in_float():
    rng = np.random.default_rng(16)
    q = dict(scale=[1 / 128], zero_point=[0], quantized_dimension=0)
    tensors = [_t("x", [1, 4, 4, 3]), _t("q", [1, 4, 4, 3], "int8", quant=q), _t("y", [1, 4, 4, 3])]
    ops = [dict(op="QUANTIZE", inputs=[0], outputs=[1]), dict(op="DEQUANTIZE", inputs=[1], outputs=[2])]
    x = _input(rng, 4, 4, 3)
    ours, _ = _check(build_model(tensors, ops, [0], [2]), x)
    np.testing.assert_array_equal(ours, x)


# -- quantized / float16 weights ----------------------------------------------------
def _quant_conv(rng, kind, depthwise=False):
    cin, cout, k = 4, (4 if depthwise else 6), 3
    shape = (1, k, k, cout) if depthwise else (cout, k, k, cin)
    in_scale = 1 / 127.5
    if kind == "int8_per_channel":
        qdim = 3 if depthwise else 0
        wq = rng.integers(-127, 128, size=shape).astype(np.int8)
        ws = rng.uniform(0.001, 0.02, size=cout)
        wquant = dict(scale=list(ws), zero_point=[0] * cout, quantized_dimension=qdim)
        bs = in_scale * ws
        bq = rng.integers(-5000, 5000, size=cout).astype(np.int32)
        bquant = dict(scale=list(bs), zero_point=[0] * cout, quantized_dimension=0)
        wt, bt = _t("w", shape, "int8", wq, wquant), _t("b", [cout], "int32", bq, bquant)
    elif kind == "uint8_per_tensor":
        wq = rng.integers(0, 256, size=shape).astype(np.uint8)
        ws = 0.0123
        wquant = dict(scale=[ws], zero_point=[122], quantized_dimension=0)
        bq = rng.integers(-5000, 5000, size=cout).astype(np.int32)
        bquant = dict(scale=[in_scale * ws], zero_point=[0], quantized_dimension=0)
        wt, bt = _t("w", shape, "uint8", wq, wquant), _t("b", [cout], "int32", bq, bquant)
    else:  # float16
        wt = _t("w", shape, "float16", rng.standard_normal(shape).astype(np.float16))
        bt = _t("b", [cout], "float16", rng.standard_normal(cout).astype(np.float16))
    tensors = [_t("x", [1, 7, 7, cin]), wt, bt, _t("y", [1, 7, 7, cout])]
    op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    opts = dict(padding="SAME", stride_h=1, stride_w=1)
    if depthwise:
        opts["depth_multiplier"] = 1
    return build_model(tensors, [dict(op=op, inputs=[0, 1, 2], outputs=[3], options=opts)], [0], [3])


@pytest.mark.parametrize("kind", ["int8_per_channel", "uint8_per_tensor", "float16"])
@pytest.mark.parametrize("depthwise", [False, True])
def test_quantized_weights(kind, depthwise):
    rng = np.random.default_rng(17)
    data = _quant_conv(rng, kind, depthwise)
    _check(data, _input(rng, 7, 7, 4))
    # The engine's dequantized constants equal the reference's own dequantization.
    core, ref = _core.Model(data), ReferenceModel(data)
    for i in (1, 2):
        got = np.asarray(core.get_tensor(i), np.float64)
        want = ref.constant(i)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * np.abs(want).max())


# -- optional bias (input index -1) ---------------------------------------------------
@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"])
def test_absent_bias(op):
    rng = np.random.default_rng(18)
    if op == "FULLY_CONNECTED":
        wt = rng.standard_normal((5, 75)).astype(np.float32)
        out = [1, 5]
        opts = {}
    else:
        wt = rng.standard_normal((4, 3, 3, 3) if op == "CONV_2D" else (1, 3, 3, 3)).astype(np.float32)
        out = [1, 5, 5, wt.shape[0] if op == "CONV_2D" else 3]
        opts = dict(padding="SAME", depth_multiplier=1) if op != "CONV_2D" else dict(padding="SAME")
    tensors = [_t("x", [1, 5, 5, 3]), _t("w", wt.shape, data=wt), _t("y", out)]
    data = build_model(tensors, [dict(op=op, inputs=[0, 1, -1], outputs=[2], options=opts)], [0], [2])
    _check(data, _input(rng, 5, 5, 3))
