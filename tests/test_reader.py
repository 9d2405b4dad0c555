"""Tests of the TFLite model reader (csrc/tflite_reader.c) through tflite_transfer._core.Model."""
import numpy as np
import tflite

from tflite_builder import build_model


def _conv_model(**kw):
    w = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 7 - 3
    return build_model(
        [dict(name="x", shape=[1, 5, 5, 3], dtype="float32"),
         dict(name="w", shape=[4, 3, 3, 3], dtype="int8", data=w,
              quant=dict(scale=[0.1, 0.2, 0.3, 0.4], zero_point=[0, 1, 2, 3], quantized_dimension=0)),
         dict(name="b", shape=[4], dtype="float32", data=np.ones(4)),
         dict(name="y", shape=[1, 3, 3, 4], dtype="float32")],
        [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
              options=dict(padding="VALID", stride_w=1, stride_h=1, fused_activation_function="RELU6"))],
        [0], [3], **kw)


def test_builder_output_reads_back_with_the_tflite_package():
    data = _conv_model()
    m = tflite.Model.GetRootAs(data, 0)
    assert tflite.Model.ModelBufferHasIdentifier(data, 0)
    assert m.Version() == 3 and m.Description() == b"test"
    assert m.Buffers(0).DataLength() == 0
    sg = m.Subgraphs(0)
    assert sg.TensorsLength() == 4 and sg.OperatorsLength() == 1
    t = sg.Tensors(1)
    assert t.Name() == b"w" and list(t.ShapeAsNumpy()) == [4, 3, 3, 3] and t.Type() == tflite.TensorType.INT8
    np.testing.assert_allclose(t.Quantization().ScaleAsNumpy(), [0.1, 0.2, 0.3, 0.4], rtol=1e-7)
    raw = m.Buffers(t.Buffer()).DataAsNumpy().view(np.int8)
    assert raw.size == 108 and raw[:4].tolist() == [-3, -2, -1, 0]
    op = sg.Operators(0)
    assert m.OperatorCodes(op.OpcodeIndex()).BuiltinCode() == tflite.BuiltinOperator.CONV_2D
    assert op.BuiltinOptionsType() == tflite.BuiltinOptions.Conv2DOptions
    o = tflite.Conv2DOptions()
    o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    assert (o.Padding(), o.FusedActivationFunction()) == (tflite.Padding.VALID, tflite.ActivationFunctionType.RELU6)


# ---- loading the shared models ---------------------------------------------------------------

import pytest  # noqa: E402

from conftest import PTQ_MODEL, QUANT_MODEL  # noqa: E402
from tflite_transfer import ModelFormatError, _core  # noqa: E402

_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_NP_TYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8,
             tflite.TensorType.INT32: np.int32, tflite.TensorType.FLOAT32: np.float32}


def _load(path):
    data = path.read_bytes()
    return data, _core.Model(data, name=path.name)


@pytest.fixture(scope="module", params=[QUANT_MODEL, PTQ_MODEL], ids=["quant", "ptq"])
def shared(request):
    data, model = _load(request.param)
    return data, model, tflite.Model.GetRootAs(data, 0)


def test_shared_models_inspection_matches_the_tflite_package(shared):
    data, model, ref = shared
    sg = ref.Subgraphs(0)
    assert len(model.ops) == sg.OperatorsLength()  # 66 (quant) and 68 (ptq)
    assert len(model.tensors) == sg.TensorsLength()
    assert model.inputs == tuple(sg.InputsAsNumpy()) and model.outputs == tuple(sg.OutputsAsNumpy())
    for t, info in zip((sg.Tensors(i) for i in range(sg.TensorsLength())), model.tensors):
        assert info["name"] == t.Name().decode()
        assert info["shape"] == tuple(int(d) for d in t.ShapeAsNumpy())
        assert info["is_constant"] == (ref.Buffers(t.Buffer()).DataLength() > 0)
    for i, op in enumerate(model.ops):
        r = sg.Operators(i)
        code = ref.OperatorCodes(r.OpcodeIndex())
        assert op["type"] == _OP_NAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        assert op["inputs"] == tuple(r.InputsAsNumpy()) and op["outputs"] == tuple(r.OutputsAsNumpy())
    convs = [op for op in model.ops if op["type"] == "CONV_2D"]
    dws = [op for op in model.ops if op["type"] == "DEPTHWISE_CONV_2D"]
    assert (len(convs), len(dws)) == (36, 17)
    assert all(op["options"]["padding"] == "SAME" for op in convs + dws)
    assert dws[0]["options"]["activation"] == "RELU6" and dws[0]["options"]["depth_multiplier"] == 1


def test_per_channel_scales_of_the_ptq_model_match_the_tflite_package():
    data, model = _load(PTQ_MODEL)
    sg = tflite.Model.GetRootAs(data, 0).Subgraphs(0)
    dw = next(op for op in model.ops if op["type"] == "DEPTHWISE_CONV_2D")
    w = dw["inputs"][1]
    q = model.tensors[w]["quantization"]
    ref = sg.Tensors(w).Quantization()
    assert q["quantized_dimension"] == 3 and len(q["scale"]) == model.tensors[w]["shape"][3]
    np.testing.assert_array_equal(np.float32(q["scale"]), ref.ScaleAsNumpy())
    np.testing.assert_array_equal(q["zero_point"], ref.ZeroPointAsNumpy())


def _dequantize_reference(ref_model, index):
    t = ref_model.Subgraphs(0).Tensors(index)
    raw = ref_model.Buffers(t.Buffer()).DataAsNumpy().view(_NP_TYPES[t.Type()]).reshape(t.ShapeAsNumpy())
    q = t.Quantization()
    scale = q.ScaleAsNumpy().astype(np.float64)
    zp = q.ZeroPointAsNumpy().astype(np.float64)
    shape = [1] * raw.ndim
    if scale.size > 1:
        shape[q.QuantizedDimension()] = scale.size
    return scale.reshape(shape) * (raw.astype(np.float64) - zp.reshape(shape))


def test_dequantized_weights_and_biases_equal_scale_times_q_minus_zero_point(shared):
    data, model, ref = shared
    checked = 0
    for op in model.ops:
        if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            for idx in op["inputs"][1:]:
                expected = _dequantize_reference(ref, idx)
                got = model.get_tensor(idx)
                assert got.dtype == np.float32 and got.shape == expected.shape
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)
                checked += 1
    assert checked == 2 * 53


def test_get_tensor_rejects_activations_and_out_of_range_indices(shared):
    _, model, _ = shared
    with pytest.raises(ValueError, match="activation"):
        model.get_tensor(model.inputs[0])
    with pytest.raises(ValueError, match="12345"):
        model.get_tensor(12345)
    with pytest.raises(ValueError, match="-1"):
        model.get_tensor(-1)


def test_float16_constants_convert_exactly():
    vals = np.array([0, -0.0, 1, -2.5, 65504, 6.1e-5, 5.96e-8, 1e-6, np.inf, -np.inf, 0.1, 3.14159], np.float16)
    data = build_model(
        [dict(name="x", shape=[1, 12], dtype="float32"),
         dict(name="w", shape=[1, 12], dtype="float16", data=vals.reshape(1, 12)),
         dict(name="y", shape=[1, 1], dtype="float32")],
        [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2])], [0], [2])
    got = _core.Model(data).get_tensor(1)
    np.testing.assert_array_equal(got, vals.astype(np.float32).reshape(1, 12))
    assert np.signbit(got[0, 1])


def test_integer_constants_keep_int32_values():
    data = build_model(
        [dict(name="x", shape=[1, 4, 4, 8], dtype="float32"),
         dict(name="axes", shape=[2], dtype="int64", data=np.array([1, 2])),
         dict(name="y", shape=[1, 8], dtype="float32")],
        [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=dict(keep_dims=False))], [0], [2])
    m = _core.Model(data)
    axes = m.get_tensor(1)
    assert axes.dtype == np.int32 and axes.tolist() == [1, 2]
    assert m.tensors[1]["dtype"] == "int64" and m.tensors[1]["is_constant"]
    assert m.ops[0]["options"] == {"keep_dims": False}


def test_deprecated_only_operator_codes_are_read():
    m = _core.Model(_conv_model(deprecated_codes_only=True))
    assert m.ops[0]["type"] == "CONV_2D" and m.ops[0]["options"]["activation"] == "RELU6"


def test_builtin_name():
    assert _core.builtin_name(3) == "CONV_2D"
    assert _core.builtin_name(56) == "ARG_MAX"
    assert _core.builtin_name(-5) == "UNKNOWN" and _core.builtin_name(10**6) == "UNKNOWN"


# ---- bad files ----------------------------------------------------------------------------------

def _raises(data, match, name="bad.tflite"):
    with pytest.raises(ModelFormatError, match=match) as e:
        _core.Model(data, name=name)
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(name + ": ")
    return str(e.value)


def test_empty_file():
    _raises(b"", r"is empty \(0 bytes\)", name="model.tflite")
    _raises(bytearray(), r"is empty")


@pytest.mark.parametrize("length", [1, 7, 8, 100, "half", "90%"])
def test_truncated_shared_model(length):
    data = PTQ_MODEL.read_bytes()
    n = {"half": len(data) // 2, "90%": len(data) * 9 // 10}.get(length, length)
    _raises(data[:n], r"too short|past the end|outside|identifier")


def test_truncated_by_one_byte():
    # Both shared models end with parts the reader does not need (an appended zip of labels,
    # metadata), so cut one byte off the end of the data it does need: the weights' buffer.
    data = _conv_model()
    buf = tflite.Model.GetRootAs(data, 0).Buffers(1)
    end = buf._tab.Vector(buf._tab.Offset(4)) + buf.DataLength()
    _raises(data[:end - 1], r"past the end")


def test_random_bytes():
    rng = np.random.default_rng(1234)
    for n in (16, 1000, 100000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        _raises(data, r"identifier")
        # With the right identifier the parser must still reject random structure, not crash.
        patched = data[:4] + b"TFL3" + data[8:]
        with pytest.raises(ValueError):
            _core.Model(patched)


def test_random_corruption_of_a_valid_model_raises_or_gives_a_runnable_model():
    """4 random bytes replaced, 300 times. Each result is one of the two right outcomes: a
    ModelFormatError naming the file, or (the bytes hit weights, names or a still-valid option) a
    model that runs on its declared input and returns finite values: batch 1 and 4 channels as
    declared (the spatial size follows the ops' options, as in TFLite, which recomputes shapes).
    At seed 7, 288 raise and 12 load; both outcomes must occur, or the corpus tests one path only."""
    base = bytearray(_conv_model())
    rng = np.random.default_rng(7)
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 3)).astype(np.float32)
    raised = loaded = 0
    for _ in range(300):
        data = bytearray(base)
        for pos in rng.integers(0, len(data), 4):
            data[pos] = int(rng.integers(0, 256))
        try:
            m = _core.Model(bytes(data), name="corrupt.tflite")
        except ModelFormatError as e:
            assert str(e).startswith("corrupt.tflite: ") and len(str(e)) > len("corrupt.tflite: ") + 10, str(e)
            raised += 1
            continue
        y = m.run(x)
        assert y.ndim == 4 and (y.shape[0], y.shape[3]) == (1, 4) and np.isfinite(y).all(), y.shape
        loaded += 1
    assert raised > 0 and loaded > 0, (raised, loaded)


def test_wrong_file_identifier():
    data = bytearray(_conv_model())
    data[4:8] = b"TFL2"
    _raises(bytes(data), r'identifier .* expected "TFL3"')


def _vector_length_pos(tab, field_vt_offset):
    """Byte position of the length word of the vector in `field_vt_offset` of a tflite-package table."""
    o = tab.Offset(field_vt_offset)
    assert o != 0
    return tab.Vector(o) - 4


def test_root_offset_past_the_end():
    data = bytearray(_conv_model())
    data[0:4] = (len(data) + 100).to_bytes(4, "little")
    _raises(bytes(data), r"Model table: .*past the end")


def test_vector_length_past_the_end():
    data = bytearray(_conv_model())
    sg = tflite.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    pos = _vector_length_pos(sg._tab, 4)  # SubGraph.tensors
    data[pos:pos + 4] = (0x7FFFFFFF).to_bytes(4, "little")
    _raises(bytes(data), r"subgraph 0: vector runs past the end of the file")


def test_table_offset_in_vector_past_the_end():
    data = bytearray(_conv_model())
    m = tflite.Model.GetRootAs(bytes(data), 0)
    pos = m._tab.Vector(m._tab.Offset(8))  # first element of Model.subgraphs
    data[pos:pos + 4] = (len(data) * 4).to_bytes(4, "little")
    _raises(bytes(data), r"subgraph 0: table offset in a vector points past the end")


def test_string_offset_past_the_end():
    data = bytearray(_conv_model())
    t = tflite.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Tensors(1)
    pos = t._tab.Pos + t._tab.Offset(10)  # Tensor.name offset field
    data[pos:pos + 4] = (0xFFFFFFF0).to_bytes(4, "little")
    _raises(bytes(data), r"tensor 1: offset points past the end")


def test_tensor_name_that_is_not_utf8():
    # Flatbuffer strings are UTF-8; a corrupt name must be a model error, not a
    # UnicodeDecodeError when Python later reads `.tensors`.
    data = bytes(_conv_model())
    i = data.index(b"\x01\x00\x00\x00w\x00")  # length-prefixed name "w" of tensor 1
    data = data[:i + 4] + b"\xfa" + data[i + 5:]
    _raises(data, r"tensor 1: a string is not valid UTF-8")


def test_weight_buffer_index_out_of_range():
    data = bytearray(_conv_model())
    t = tflite.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Tensors(1)
    pos = t._tab.Pos + t._tab.Offset(8)  # Tensor.buffer
    data[pos:pos + 4] = (999).to_bytes(4, "little")
    _raises(bytes(data), r"tensor 1 \('w'\): buffer index 999 is out of range \(the model has 3 buffers\)")


def test_weight_buffer_too_short():
    data = build_model(
        [dict(name="x", shape=[1, 5, 5, 3], dtype="float32"),
         dict(name="w", shape=[4, 3, 3, 3], dtype="float32", data=np.zeros(100)),
         dict(name="y", shape=[1, 3, 3, 4], dtype="float32")],
        [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2], options=dict(padding="VALID"))], [0], [2])
    _raises(data, r"tensor 1 \('w'\): buffer 1 holds 400 bytes, but shape \[4, 3, 3, 3\] of FLOAT32 needs 432")


def test_weight_without_data():
    data = build_model(
        [dict(name="x", shape=[1, 5, 5, 3], dtype="float32"),
         dict(name="w", shape=[4, 3, 3, 3], dtype="float32"),
         dict(name="y", shape=[1, 3, 3, 4], dtype="float32")],
        [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2], options=dict(padding="VALID"))], [0], [2])
    _raises(data, r"operator 0 \(CONV_2D\): filter \(input 1, tensor 1 'w'\) must be a constant")


def test_tensor_index_out_of_range():
    data = build_model(
        [dict(name="x", shape=[1, 4], dtype="float32"), dict(name="y", shape=[1, 4], dtype="float32")],
        [dict(op="SOFTMAX", inputs=[7], outputs=[1], options=dict(beta=1.0))], [0], [1])
    _raises(data, r"operator 0 \(SOFTMAX\): input 0 refers to tensor 7, out of range \(the model has 2 tensors\)")


@pytest.mark.parametrize("code,name", [(56, "ARG_MAX"), (28, "TANH"), (150, "GELU")])
def test_unsupported_op_names_the_op_and_its_index(code, name):
    data = build_model(
        [dict(name="x", shape=[1, 4], dtype="float32"), dict(name="y", shape=[1, 4], dtype="float32"),
         dict(name="z", shape=[1, 4], dtype="float32")],
        [dict(op="SOFTMAX", inputs=[0], outputs=[1], options=dict(beta=1.0)),
         dict(op=code, inputs=[1], outputs=[2])], [0], [2])
    msg = _raises(data, rf"operator 1 is {name} \(builtin code {code}\), which is not supported; supported: CONV_2D")
    assert "DEQUANTIZE" in msg


def test_depth_multiplier_2_is_unsupported():
    data = build_model(
        [dict(name="x", shape=[1, 5, 5, 2], dtype="float32"),
         dict(name="w", shape=[1, 3, 3, 4], dtype="float32", data=np.ones((1, 3, 3, 4))),
         dict(name="y", shape=[1, 5, 5, 4], dtype="float32")],
        [dict(op="DEPTHWISE_CONV_2D", inputs=[0, 1, -1], outputs=[2], options=dict(depth_multiplier=2))], [0], [2])
    _raises(data, r"operator 0 \(DEPTHWISE_CONV_2D\) has depth_multiplier 2; only depth_multiplier 1")


def test_unsupported_fused_activation():
    data = build_model(
        [dict(name="x", shape=[1, 4], dtype="float32"), dict(name="y", shape=[1, 4], dtype="float32")],
        [dict(op="ADD", inputs=[0, 0], outputs=[1], options=dict(fused_activation_function="TANH"))], [0], [1])
    _raises(data, r"operator 0 \(ADD\) has fused activation TANH .* supported: NONE, RELU, RELU6")


def test_data_must_be_bytes_like():
    with pytest.raises(TypeError, match="bytes-like"):
        _core.Model("not bytes")
