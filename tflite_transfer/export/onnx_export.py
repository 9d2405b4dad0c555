"""Writes a `Graph` as an ONNX model (opset 13) with the ``onnx`` package.

The graph input keeps the NHWC layout of the model (uint8 or float32
[N, H, W, 3], batch dynamic, named "input"); one Transpose to NCHW follows, the
convolutions run NCHW as ONNX defines them (kernels transposed from TFLite's
OHWI / 1HWC), and TF's SAME padding is written as explicit pads (the extra
row/column at the bottom/right). Output "output". Class names are stored in
``metadata_props`` under "labels" (one per line).
"""
import numpy as np

__all__ = ["to_onnx_model", "write_onnx"]

_ONNX_DTYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7}


def _same_pads(size, k, s, d=1):
    ek = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + ek - size, 0)
    return total // 2, total - total // 2


def to_onnx_model(g, opset=13):
    """The ``onnx.ModelProto`` of Graph `g`. Raises NotImplementedError for ops without a mapping."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:  # pragma: no cover
        raise ImportError("ONNX export needs the `onnx` package: pip install 'tflite_transfer[export]'") from e

    nodes, inits = [], []
    names = {}
    layout = {}  # tensor index -> "NHWC" | "NCHW" | "2D"
    counter = [0]

    def uniq(base):
        counter[0] += 1
        return f"{base}__{counter[0]}"

    def const(name, arr):
        n = uniq(name)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def act(y, a):
        if a == "RELU6":
            z = uniq(y + "/relu6")
            lo, hi = const("zero", np.asarray(0, np.float32)), const("six", np.asarray(6, np.float32))
            nodes.append(helper.make_node("Clip", [y, lo, hi], [z]))
            return z
        if a == "RELU":
            z = uniq(y + "/relu")
            nodes.append(helper.make_node("Relu", [y], [z]))
            return z
        if a not in (None, "NONE"):
            raise NotImplementedError(f"ONNX export: fused activation {a!r}")
        return y

    t_in = g.inputs[0]
    ti = g.tensors[t_in]
    in_name = "input"
    x = in_name
    if ti["dtype"] == "uint8":
        x = uniq("cast")
        nodes.append(helper.make_node("Cast", [in_name], [x], to=onnx.TensorProto.FLOAT))
    # NHWC -> NCHW once at the input.
    xt = uniq("to_nchw")
    nodes.append(helper.make_node("Transpose", [x], [xt], perm=[0, 3, 1, 2]))
    names[t_in] = xt
    layout[t_in] = "NCHW"

    def val(t):
        return names[t]

    for op in g.ops:
        typ, o = op["op"], op["options"]
        ins, out = op["inputs"], op["outputs"][0]
        y = uniq(g.tensors[out]["name"])
        if typ == "DEQUANTIZE":
            q = g.tensors[ins[0]]["quant"]
            zp = float(q["zero_point"][0])
            src = val(ins[0])
            if zp:
                src2 = uniq("zp")
                nodes.append(helper.make_node("Sub", [src, const("zp", np.asarray(zp, np.float32))], [src2]))
                src = src2
            if abs(float(q["scale"][0]) - 1 / 127.5) < 1e-12:
                # x / 127.5 exactly as preprocess_input computes it.
                nodes.append(helper.make_node("Div", [src, const("d", np.asarray(127.5, np.float32))], [y]))
            else:
                s = const("scale", np.asarray(q["scale"][0], np.float32))
                nodes.append(helper.make_node("Mul", [src, s], [y]))
            layout[out] = layout[ins[0]]
        elif typ in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g.const(ins[1])
            _, kh, kw, _ = w.shape
            if typ == "CONV_2D":
                wk = w.transpose(0, 3, 1, 2)
                group = 1
            else:
                wk = w.transpose(3, 0, 1, 2)  # [1, KH, KW, C] -> [C, 1, KH, KW]
                group = w.shape[3] // o.get("depth_multiplier", 1)
            ih, iw = g.shape(ins[0])[1:3]
            sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
            dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
            if o.get("padding", "SAME") == "SAME":
                (pt, pb), (pl, pr) = _same_pads(ih, kh, sh, dh), _same_pads(iw, kw, sw, dw)
            else:
                pt = pb = pl = pr = 0
            inputs = [val(ins[0]), const("w", wk.astype(np.float32))]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(const("b", g.const(ins[2]).astype(np.float32)))
            z = uniq(y + "/conv")
            nodes.append(helper.make_node("Conv", inputs, [z], kernel_shape=[kh, kw], strides=[sh, sw],
                                          dilations=[dh, dw], pads=[pt, pl, pb, pr], group=group))
            nodes.append(helper.make_node("Identity", [act(z, o.get("fused_activation_function"))], [y]))
            layout[out] = "NCHW"
        elif typ == "ADD":
            a, bb = ins
            if g.const(bb) is not None:
                c = g.const(bb)
                if c.size != 1:
                    raise NotImplementedError("ONNX export: ADD of a non-scalar constant")
                z = uniq(y + "/add")
                nodes.append(helper.make_node("Add", [val(a), const("c", c.reshape(()).astype(np.float32))], [z]))
                layout[out] = layout[a]
            else:
                z = uniq(y + "/add")
                nodes.append(helper.make_node("Add", [val(a), val(bb)], [z]))
                layout[out] = layout[a]
            nodes.append(helper.make_node("Identity", [act(z, o.get("fused_activation_function"))], [y]))
        elif typ in ("MEAN", "REDUCE_MAX"):
            axes = [int(a) for a in g.const(ins[1]).ravel()]
            if sorted(axes) != [1, 2] or layout[ins[0]] != "NCHW":
                raise NotImplementedError("ONNX export: only the mean / max over H and W")
            keep = bool(o.get("keep_dims", False))
            kind = "ReduceMean" if typ == "MEAN" else "ReduceMax"
            if keep:
                z = uniq(y + "/nchw")
                nodes.append(helper.make_node(kind, [val(ins[0])], [z], axes=[2, 3], keepdims=1))
                nodes.append(helper.make_node("Transpose", [z], [y], perm=[0, 2, 3, 1]))
                layout[out] = "NHWC"
            else:
                nodes.append(helper.make_node(kind, [val(ins[0])], [y], axes=[2, 3], keepdims=0))
                layout[out] = "2D"
        elif typ == "RESHAPE":
            src = val(ins[0])
            if layout[ins[0]] == "NCHW":
                z = uniq(y + "/nhwc")
                nodes.append(helper.make_node("Transpose", [src], [z], perm=[0, 2, 3, 1]))
                src = z
            shp = [int(s) for s in o.get("new_shape", g.const(ins[1]).ravel())]
            nodes.append(helper.make_node("Reshape", [src, const("shape", np.asarray(shp, np.int64))], [y]))
            layout[out] = "2D" if len(shp) == 2 else "NHWC"
        elif typ == "FULLY_CONNECTED":
            if layout[ins[0]] != "2D":
                raise NotImplementedError("ONNX export: FULLY_CONNECTED on a 4D tensor")
            z = uniq(y + "/gemm")
            inputs = [val(ins[0]), const("w", g.const(ins[1]).astype(np.float32))]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(const("b", g.const(ins[2]).astype(np.float32)))
            nodes.append(helper.make_node("Gemm", inputs, [z], transB=1))
            nodes.append(helper.make_node("Identity", [act(z, o.get("fused_activation_function"))], [y]))
            layout[out] = "2D"
        elif typ == "SOFTMAX":
            nodes.append(helper.make_node("Softmax", [val(ins[0])], [y], axis=-1))
            layout[out] = layout[ins[0]]
        elif typ == "LOGISTIC":
            nodes.append(helper.make_node("Sigmoid", [val(ins[0])], [y]))
            layout[out] = layout[ins[0]]
        else:
            raise NotImplementedError(f"ONNX export does not support the {typ} op")
        names[out] = y

    t_out = g.outputs[0]
    src = names[t_out]
    if layout[t_out] == "NCHW":
        z = uniq("to_nhwc")
        nodes.append(helper.make_node("Transpose", [src], [z], perm=[0, 2, 3, 1]))
        src = z
    nodes.append(helper.make_node("Identity", [src], ["output"]))
    in_shape = ["N"] + list(ti["shape"][1:])
    out_shape = ["N"] + list(g.tensors[t_out]["shape"][1:])
    graph = helper.make_graph(
        nodes, "tflite_transfer",
        [helper.make_tensor_value_info("input", _ONNX_DTYPES[ti["dtype"]], in_shape)],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, out_shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tflite_transfer")
    model.ir_version = 8
    props = dict(g.metadata)
    if g.labels is not None:
        props["labels"] = "\n".join(g.labels)
    helper.set_model_props(model, {str(k): str(v) for k, v in props.items()})
    onnx.checker.check_model(model)
    return model


def write_onnx(g, filepath):
    """Writes Graph `g` to `filepath` (.onnx); returns the file size in bytes (int)."""
    model = to_onnx_model(g)
    data = model.SerializeToString()
    with open(filepath, "wb") as f:
        f.write(data)
    return len(data)
