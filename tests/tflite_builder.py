"""Writes small TFLite flatbuffers for tests, in pure Python.

Uses the ``flatbuffers`` Builder and the generated builder functions of the
``tflite`` package (schema of TensorFlow 2.18), so the bytes follow the real
schema and the ``tflite`` package itself can read them back.

Example::

    data = build_model(
        tensors=[
            dict(name="x", shape=[1, 5, 5, 3], dtype="float32"),
            dict(name="w", shape=[4, 3, 3, 3], dtype="float32", data=w),
            dict(name="b", shape=[4], dtype="float32", data=b),
            dict(name="y", shape=[1, 5, 5, 4], dtype="float32"),
        ],
        operators=[dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                        options=dict(padding="SAME", stride_w=1, stride_h=1,
                                     fused_activation_function="RELU6"))],
        inputs=[0], outputs=[3])

Layout conventions are TFLite's: activations NHWC, CONV_2D filters [O, KH, KW, I],
DEPTHWISE_CONV_2D filters [1, KH, KW, C * depth_multiplier], FULLY_CONNECTED
weights [O, I].
"""
import flatbuffers
import numpy as np
import tflite

__all__ = ["build_model", "DTYPES", "BUILTIN_CODES"]

# TFLite TensorType codes (schema.fbs).
DTYPES = {"float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "int8": 9}

# BuiltinOperator codes by name, from the tflite package ("CONV_2D" -> 3).
BUILTIN_CODES = {k: v for k, v in vars(tflite.BuiltinOperator).items()
                 if not k.startswith("_") and isinstance(v, int)}

_ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4, "SIGN_BIT": 5}
_PADDINGS = {"SAME": 0, "VALID": 1}
_BO = tflite.BuiltinOptions


def _act(options):
    a = options.get("fused_activation_function", "NONE")
    return _ACTIVATIONS[a] if isinstance(a, str) else int(a)


def _pad(options):
    p = options.get("padding", "SAME")
    return _PADDINGS[p] if isinstance(p, str) else int(p)


def _options(b, op_name, options):
    """Writes the builtin options table of `op_name`; returns (BuiltinOptions type, offset) or (0, None)."""
    o = options
    if op_name == "CONV_2D":
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, _pad(o))
        tflite.Conv2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.Conv2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.Conv2DOptionsAddFusedActivationFunction(b, _act(o))
        tflite.Conv2DOptionsAddDilationWFactor(b, o.get("dilation_w_factor", 1))
        tflite.Conv2DOptionsAddDilationHFactor(b, o.get("dilation_h_factor", 1))
        return _BO.Conv2DOptions, tflite.Conv2DOptionsEnd(b)
    if op_name == "DEPTHWISE_CONV_2D":
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, _pad(o))
        tflite.DepthwiseConv2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.DepthwiseConv2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, o.get("depth_multiplier", 1))
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, _act(o))
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, o.get("dilation_w_factor", 1))
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, o.get("dilation_h_factor", 1))
        return _BO.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(b)
    if op_name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, _pad(o))
        tflite.Pool2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.Pool2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.Pool2DOptionsAddFilterWidth(b, o.get("filter_width", 1))
        tflite.Pool2DOptionsAddFilterHeight(b, o.get("filter_height", 1))
        tflite.Pool2DOptionsAddFusedActivationFunction(b, _act(o))
        return _BO.Pool2DOptions, tflite.Pool2DOptionsEnd(b)
    if op_name == "ADD":
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, _act(o))
        return _BO.AddOptions, tflite.AddOptionsEnd(b)
    if op_name == "MEAN":
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, bool(o.get("keep_dims", False)))
        return _BO.ReducerOptions, tflite.ReducerOptionsEnd(b)
    if op_name == "FULLY_CONNECTED":
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, _act(o))
        tflite.FullyConnectedOptionsAddKeepNumDims(b, bool(o.get("keep_num_dims", o.get("keep_dims", False))))
        return _BO.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)
    if op_name == "SOFTMAX":
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, float(o.get("beta", 1.0)))
        return _BO.SoftmaxOptions, tflite.SoftmaxOptionsEnd(b)
    if op_name == "CONCATENATION":
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, o.get("axis", 0))
        tflite.ConcatenationOptionsAddFusedActivationFunction(b, _act(o))
        return _BO.ConcatenationOptions, tflite.ConcatenationOptionsEnd(b)
    if op_name == "RESHAPE":
        new_shape = o.get("new_shape")
        vec = None
        if new_shape is not None:
            vec = b.CreateNumpyVector(np.asarray(new_shape, dtype=np.int32))
        tflite.ReshapeOptionsStart(b)
        if vec is not None:
            tflite.ReshapeOptionsAddNewShape(b, vec)
        return _BO.ReshapeOptions, tflite.ReshapeOptionsEnd(b)
    if op_name == "PAD":
        tflite.PadOptionsStart(b)
        return _BO.PadOptions, tflite.PadOptionsEnd(b)
    if op_name == "QUANTIZE":
        tflite.QuantizeOptionsStart(b)
        return _BO.QuantizeOptions, tflite.QuantizeOptionsEnd(b)
    if op_name == "DEQUANTIZE":
        tflite.DequantizeOptionsStart(b)
        return _BO.DequantizeOptions, tflite.DequantizeOptionsEnd(b)
    return 0, None


def _quant(b, q):
    scale = b.CreateNumpyVector(np.asarray(q.get("scale", []), dtype=np.float32))
    zp = b.CreateNumpyVector(np.asarray(q.get("zero_point", []), dtype=np.int64))
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale)
    tflite.QuantizationParametersAddZeroPoint(b, zp)
    tflite.QuantizationParametersAddQuantizedDimension(b, int(q.get("quantized_dimension", 0)))
    return tflite.QuantizationParametersEnd(b)


def _int32_vector(b, values):
    return b.CreateNumpyVector(np.asarray(list(values), dtype=np.int32))


def build_model(tensors, operators, inputs, outputs, *, version=3, description="test",
                deprecated_codes_only=False):
    """Returns the bytes of a one-subgraph .tflite model (file identifier "TFL3").

    tensors: list of dicts with keys
        name (str), shape (list[int]), dtype ("float32" | "float16" | "int8" |
        "uint8" | "int32" | "int64"), data (np.ndarray or None: given => a
        constant tensor whose own buffer holds ``data.astype(dtype)`` as
        little-endian bytes), quant (None or dict(scale=list[float],
        zero_point=list[int], quantized_dimension=int)).
    operators: list of dicts with keys
        op (str BuiltinOperator name such as "CONV_2D", or an int builtin code,
        e.g. to write an op the reader does not support), inputs (list[int], -1
        for an absent optional input), outputs (list[int]), options (dict,
        schema names: padding "SAME"/"VALID", stride_w, stride_h,
        dilation_w_factor, dilation_h_factor, fused_activation_function
        "NONE"/"RELU"/"RELU6", depth_multiplier, filter_width, filter_height,
        keep_dims, beta, axis, new_shape).
    inputs, outputs: tensor indices of the subgraph's inputs and outputs.

    Buffer 0 is the empty sentinel (as TFLite requires); activations point at it.
    Operator codes carry both ``deprecated_builtin_code`` (min(code, 127)) and
    ``builtin_code``, unless ``deprecated_codes_only`` (old files: only the int8 field).
    """
    b = flatbuffers.Builder(1024)

    # Buffers: 0 = sentinel, then one per constant tensor in tensor order.
    buffer_data = [None]
    tensor_buffer = []
    for t in tensors:
        data = t.get("data")
        if data is None:
            tensor_buffer.append(0)
        else:
            arr = np.ascontiguousarray(np.asarray(data).astype(np.dtype(t["dtype"]).newbyteorder("<")))
            tensor_buffer.append(len(buffer_data))
            buffer_data.append(arr.tobytes())
    buffer_offsets = []
    for raw in buffer_data:
        vec = None
        if raw is not None:
            b.StartVector(1, len(raw), 16)  # TFLite aligns constant data to 16 bytes
            b.head = b.head - len(raw)
            b.Bytes[b.head:b.head + len(raw)] = raw
            vec = b.EndVector()
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))

    tensor_offsets = []
    for t, buf_index in zip(tensors, tensor_buffer):
        name = b.CreateString(t.get("name", ""))
        shape = _int32_vector(b, t["shape"])
        q = _quant(b, t["quant"]) if t.get("quant") is not None else None
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, DTYPES[t["dtype"]])
        tflite.TensorAddBuffer(b, buf_index)
        tflite.TensorAddName(b, name)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        tensor_offsets.append(tflite.TensorEnd(b))

    # Operator codes: one per distinct builtin code, in first-use order.
    codes = []
    op_code_index = []
    for op in operators:
        code = op["op"] if isinstance(op["op"], int) else BUILTIN_CODES[op["op"]]
        if code not in codes:
            codes.append(code)
        op_code_index.append(codes.index(code))
    code_offsets = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddVersion(b, 1)
        if not deprecated_codes_only:
            tflite.OperatorCodeAddBuiltinCode(b, code)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    op_offsets = []
    for op, ci in zip(operators, op_code_index):
        name = op["op"] if isinstance(op["op"], str) else None
        opt_type, opt = _options(b, name, op.get("options", {}) or {}) if name else (0, None)
        ins = _int32_vector(b, op["inputs"])
        outs = _int32_vector(b, op["outputs"])
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, ci)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opt is not None:
            tflite.OperatorAddBuiltinOptionsType(b, opt_type)
            tflite.OperatorAddBuiltinOptions(b, opt)
        op_offsets.append(tflite.OperatorEnd(b))

    def table_vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    sg_tensors = table_vector(tensor_offsets)
    sg_ops = table_vector(op_offsets)
    sg_inputs = _int32_vector(b, inputs)
    sg_outputs = _int32_vector(b, outputs)
    sg_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, sg_tensors)
    tflite.SubGraphAddInputs(b, sg_inputs)
    tflite.SubGraphAddOutputs(b, sg_outputs)
    tflite.SubGraphAddOperators(b, sg_ops)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)

    codes_vec = table_vector(code_offsets)
    subgraphs_vec = table_vector([subgraph])
    buffers_vec = table_vector(buffer_offsets)
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, version)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())
