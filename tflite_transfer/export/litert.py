"""Writes a `Graph` as a LiteRT / TFLite flatbuffer (.tflite), in pure Python.

Uses the ``flatbuffers`` runtime and the builder functions generated from
TensorFlow's TFLite schema (``schema.fbs``) that the ``tflite`` package ships,
so no TensorFlow is needed. Layout follows the schema: buffer 0 is the empty
sentinel, constant data is 16-byte aligned, every tensor has a
``shape_signature`` with batch -1 (dynamic batch), one subgraph "main", one
SignatureDef "serving_default" (input "input", output "output").

Class names travel in the model's ``metadata`` table: an entry named
``"labels"`` whose buffer is the UTF-8 class names, one per line (line i =
output index i); `read_labels` reads them back. Other metadata entries hold
key/values of the graph (UTF-8 strings).
"""
import struct

import numpy as np

__all__ = ["write_tflite", "to_tflite_bytes", "read_labels", "read_metadata"]

DTYPES = {"float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "int8": 9}
_ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}
_PADDINGS = {"SAME": 0, "VALID": 1}
LABELS_KEY = "labels"


def _tfl():
    try:
        import flatbuffers
        import tflite
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Writing .tflite files needs the `flatbuffers` and `tflite` packages: "
                          "pip install 'tflite_transfer[export]'") from e
    return flatbuffers, tflite


def _options(tflite, b, name, o):
    """Writes the builtin options of op `name`; returns (BuiltinOptions type, offset) or (0, None)."""
    BO = tflite.BuiltinOptions
    act = _ACTIVATIONS[o.get("fused_activation_function", "NONE")]
    if name == "CONV_2D":
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, _PADDINGS[o.get("padding", "SAME")])
        tflite.Conv2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.Conv2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        tflite.Conv2DOptionsAddDilationWFactor(b, o.get("dilation_w_factor", 1))
        tflite.Conv2DOptionsAddDilationHFactor(b, o.get("dilation_h_factor", 1))
        return BO.Conv2DOptions, tflite.Conv2DOptionsEnd(b)
    if name == "DEPTHWISE_CONV_2D":
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, _PADDINGS[o.get("padding", "SAME")])
        tflite.DepthwiseConv2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.DepthwiseConv2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, o.get("depth_multiplier", 1))
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, o.get("dilation_w_factor", 1))
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, o.get("dilation_h_factor", 1))
        return BO.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(b)
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, _PADDINGS[o.get("padding", "VALID")])
        tflite.Pool2DOptionsAddStrideW(b, o.get("stride_w", 1))
        tflite.Pool2DOptionsAddStrideH(b, o.get("stride_h", 1))
        tflite.Pool2DOptionsAddFilterWidth(b, o.get("filter_width", 1))
        tflite.Pool2DOptionsAddFilterHeight(b, o.get("filter_height", 1))
        tflite.Pool2DOptionsAddFusedActivationFunction(b, act)
        return BO.Pool2DOptions, tflite.Pool2DOptionsEnd(b)
    if name == "ADD":
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, act)
        return BO.AddOptions, tflite.AddOptionsEnd(b)
    if name in ("MEAN", "REDUCE_MAX"):
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, bool(o.get("keep_dims", False)))
        return BO.ReducerOptions, tflite.ReducerOptionsEnd(b)
    if name == "FULLY_CONNECTED":
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        tflite.FullyConnectedOptionsAddKeepNumDims(b, False)
        return BO.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)
    if name == "SOFTMAX":
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, float(o.get("beta", 1.0)))
        return BO.SoftmaxOptions, tflite.SoftmaxOptionsEnd(b)
    if name == "CONCATENATION":
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, o.get("axis", -1))
        tflite.ConcatenationOptionsAddFusedActivationFunction(b, act)
        return BO.ConcatenationOptions, tflite.ConcatenationOptionsEnd(b)
    if name == "RESHAPE":
        vec = b.CreateNumpyVector(np.asarray(o["new_shape"], dtype=np.int32)) if "new_shape" in o else None
        tflite.ReshapeOptionsStart(b)
        if vec is not None:
            tflite.ReshapeOptionsAddNewShape(b, vec)
        return BO.ReshapeOptions, tflite.ReshapeOptionsEnd(b)
    if name == "PAD":
        tflite.PadOptionsStart(b)
        return BO.PadOptions, tflite.PadOptionsEnd(b)
    if name == "QUANTIZE":
        tflite.QuantizeOptionsStart(b)
        return BO.QuantizeOptions, tflite.QuantizeOptionsEnd(b)
    if name == "DEQUANTIZE":
        tflite.DequantizeOptionsStart(b)
        return BO.DequantizeOptions, tflite.DequantizeOptionsEnd(b)
    return 0, None


# Operator versions LiteRT needs for the int8 kernels (per-channel conv, int8 add ...).
_INT8_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "ADD": 2, "MEAN": 2, "FULLY_CONNECTED": 4,
                  "SOFTMAX": 2, "QUANTIZE": 2, "DEQUANTIZE": 2, "RESHAPE": 1, "PAD": 2, "REDUCE_MAX": 2,
                  "LOGISTIC": 2, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "CONCATENATION": 2}


def to_tflite_bytes(g, description="tflite_transfer export"):
    """The .tflite flatbuffer (bytes) of Graph `g` (file identifier "TFL3", schema version 3).

    Raises ValueError for an op name the TFLite schema does not know."""
    flatbuffers, tflite = _tfl()
    codes_by_name = {k: v for k, v in vars(tflite.BuiltinOperator).items()
                     if not k.startswith("_") and isinstance(v, int)}
    b = flatbuffers.Builder(1 << 20)

    def ivec(values, dtype=np.int32):
        return b.CreateNumpyVector(np.asarray(list(values), dtype=dtype))

    def table_vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def bytes_vector(raw):
        b.StartVector(1, len(raw), 16)  # TFLite aligns constant data to 16 bytes
        b.head = b.head - len(raw)
        b.Bytes[b.head:b.head + len(raw)] = raw
        return b.EndVector()

    meta = {}
    if g.labels is not None:
        meta[LABELS_KEY] = "\n".join(g.labels) + "\n"
    meta.update({str(k): str(v) for k, v in g.metadata.items()})

    # Buffers: 0 = sentinel, then one per constant tensor, then one per metadata entry.
    raws, tensor_buffer = [None], []
    for t in g.tensors:
        if t["data"] is None:
            tensor_buffer.append(0)
        else:
            tensor_buffer.append(len(raws))
            raws.append(np.ascontiguousarray(t["data"].astype(np.dtype(t["dtype"]).newbyteorder("<"))).tobytes())
    meta_buffer = {}
    for k, v in meta.items():
        meta_buffer[k] = len(raws)
        raws.append(v.encode("utf-8"))
    buffer_offsets = []
    for raw in raws:
        vec = bytes_vector(raw) if raw is not None else None
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))

    quantized = any(t["dtype"] == "int8" for t in g.tensors)
    tensor_offsets = []
    for t, buf in zip(g.tensors, tensor_buffer):
        name = b.CreateString(t["name"])
        shape = ivec(t["shape"])
        sig = ivec([-1] + list(t["shape"][1:])) if t["data"] is None and len(t["shape"]) >= 1 else None
        q = None
        if t.get("quant") is not None:
            qd = t["quant"]
            scale = b.CreateNumpyVector(np.asarray(qd["scale"], dtype=np.float32))
            zp = b.CreateNumpyVector(np.asarray(qd["zero_point"], dtype=np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, int(qd.get("quantized_dimension", 0)))
            q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, DTYPES[t["dtype"]])
        tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, name)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        if sig is not None:
            tflite.TensorAddShapeSignature(b, sig)
        tensor_offsets.append(tflite.TensorEnd(b))

    codes, op_code_index = [], []
    for op in g.ops:
        if op["op"] not in codes_by_name:
            raise ValueError(f"Unknown TFLite op {op['op']!r}")
        if op["op"] not in codes:
            codes.append(op["op"])
        op_code_index.append(codes.index(op["op"]))
    code_offsets = []
    for name in codes:
        code = codes_by_name[name]
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, _INT8_VERSIONS.get(name, 1) if quantized else 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    op_offsets = []
    for op, ci in zip(g.ops, op_code_index):
        opt_type, opt = _options(tflite, b, op["op"], op["options"])
        ins, outs = ivec(op["inputs"]), ivec(op["outputs"])
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, ci)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opt is not None:
            tflite.OperatorAddBuiltinOptionsType(b, opt_type)
            tflite.OperatorAddBuiltinOptions(b, opt)
        op_offsets.append(tflite.OperatorEnd(b))

    sg_tensors, sg_ops = table_vector(tensor_offsets), table_vector(op_offsets)
    sg_inputs, sg_outputs = ivec(g.inputs), ivec(g.outputs)
    sg_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, sg_tensors)
    tflite.SubGraphAddInputs(b, sg_inputs)
    tflite.SubGraphAddOutputs(b, sg_outputs)
    tflite.SubGraphAddOperators(b, sg_ops)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)

    def tensor_maps(pairs):
        offs = []
        for nm, idx in pairs:
            s = b.CreateString(nm)
            tflite.TensorMapStart(b)
            tflite.TensorMapAddName(b, s)
            tflite.TensorMapAddTensorIndex(b, idx)
            offs.append(tflite.TensorMapEnd(b))
        return table_vector(offs)

    sig_in = tensor_maps([("input", g.inputs[0])])
    sig_out = tensor_maps([("output", g.outputs[0])])
    sig_key = b.CreateString("serving_default")
    tflite.SignatureDefStart(b)
    tflite.SignatureDefAddInputs(b, sig_in)
    tflite.SignatureDefAddOutputs(b, sig_out)
    tflite.SignatureDefAddSignatureKey(b, sig_key)
    tflite.SignatureDefAddSubgraphIndex(b, 0)
    sigdef = tflite.SignatureDefEnd(b)

    meta_offsets = []
    for k in meta:
        s = b.CreateString(k)
        tflite.MetadataStart(b)
        tflite.MetadataAddName(b, s)
        tflite.MetadataAddBuffer(b, meta_buffer[k])
        meta_offsets.append(tflite.MetadataEnd(b))

    codes_vec = table_vector(code_offsets)
    subgraphs_vec = table_vector([subgraph])
    buffers_vec = table_vector(buffer_offsets)
    meta_vec = table_vector(meta_offsets) if meta_offsets else None
    sigs_vec = table_vector([sigdef])
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers_vec)
    if meta_vec is not None:
        tflite.ModelAddMetadata(b, meta_vec)
    tflite.ModelAddSignatureDefs(b, sigs_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def write_tflite(g, filepath, description="tflite_transfer export"):
    """Writes Graph `g` to `filepath` (.tflite); returns the file size in bytes (int)."""
    data = to_tflite_bytes(g, description)
    with open(filepath, "wb") as f:
        f.write(data)
    return len(data)


def read_metadata(filepath):
    """The metadata entries of a .tflite file: dict name (str) -> bytes.

    Raises ValueError if the file is not a TFLite flatbuffer."""
    _, tflite = _tfl()
    with open(filepath, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{filepath!r} is not a .tflite file (no 'TFL3' identifier).")
    try:  # the flatbuffers runtime does no bounds checks: a truncated file fails inside it
        m = tflite.Model.GetRootAsModel(data, 0)
        out = {}
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            buf = m.Buffers(md.Buffer())
            out[md.Name().decode("utf-8")] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    except (struct.error, IndexError, UnicodeDecodeError, AttributeError, TypeError) as e:
        raise ValueError(f"{filepath!r} is not a valid .tflite file (damaged or truncated: {e}).") from e
    return out


def read_labels(filepath):
    """Class names (list of str, index = output index) stored in an exported .tflite, or None."""
    raw = read_metadata(filepath).get(LABELS_KEY)
    if raw is None:
        return None
    return raw.decode("utf-8").rstrip("\n").split("\n")
