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
