"""Peer benchmark: MobileNetV2 1.0/224 pooled features, tflite_transfer vs the CPU inference engines.

One command, everything in one run. Each engine runs in its own subprocess (its
own thread pool, allocator and library versions; nothing shared with the
others). For each thread count (1, then all cores) one worker per engine is
started; then ``--rounds`` rounds interleave them: in every round each engine
runs each batch size (1 and 32) for about ``--seconds`` (the engine order
rotates each round), so that the machine's drift hits every engine alike. The
table reports the median over all timed calls of all rounds, in images/s.

Engines (the same weights everywhere: the dequantized float32 weights of the
``.tflite`` file, batch norm folded, read by our reader; int8 rows run the
file's own quantization):

=================  =========  =======================================================
engine             precision  what runs
=================  =========  =======================================================
tflite_transfer    f32        ``MobileNetV2(include_top=False, pooling="avg").predict``
tflite_transfer    bf16       the same with ``dtype="mixed_bfloat16"``
tflite_transfer    int8       the same with ``dtype="int8"``
ONNX Runtime       f32        an ONNX graph built here with ``onnx`` from the same
                              weights (Conv, Clip, Add, GlobalAveragePool, NCHW input),
                              CPU EP, graph optimizations ALL
OpenVINO           f32        the same ONNX file, ``INFERENCE_PRECISION_HINT=f32``
LiteRT (XNNPACK)   int8       the ``.tflite`` file itself (whole file: + the 1x1
                              classifier and softmax, +0.4% multiply-adds), uint8 input
LiteRT (XNNPACK)   f32        a float ``.tflite`` converted by TensorFlow's converter
                              from the Keras graph below
Keras / TF         f32        a Keras functional graph (Conv2D, DepthwiseConv2D, ReLU(6),
                              Add, GlobalAveragePooling2D) with the same weights, called
                              through ``tf.function`` (``model(x, training=False)``)
PyTorch            f32        the same graph in ``torch.nn``, channels_last, inference_mode
=================  =========  =======================================================

An engine that is not installed or not implemented is a row that says
"not run: <why>", never dropped. Inputs are random, already preprocessed floats
in [-1, 1] (uint8 for LiteRT int8), in each engine's native layout (NHWC; NCHW
for ONNX Runtime / OpenVINO / PyTorch(channels_last memory)).

Also recorded: CPU model and flags, the float32 peak (bench_engine.cpu_info), the
oneDNN ISA our engine dispatches to and the implementations it picks (one extra
short run with ONEDNN_VERBOSE=1), and the 1-min load average before and after
each round (a shared machine makes every number noisier; compare ratios within
one run).

Usage:   python3 benchmarks/bench_peers.py [--rounds 5] [--seconds 0.6] [--batches 1 32]
                                           [--threads 1 N] [--weights PATH|imagenet]
Writes:  benchmarks/results/peers.json, and prints the README table.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

FLOP_PER_IMAGE = 2 * 300e6  # MobileNetV2 1.0/224: 300M multiply-adds (Sandler et al. 2018, Table 4)

#: (key, label, precision) in table order.
ENGINES = [
    ("ours_f32", "tflite_transfer", "f32"),
    ("ours_bf16", "tflite_transfer", "bf16"),
    ("ours_int8", "tflite_transfer", "int8"),
    ("ort_f32", "ONNX Runtime (CPU EP)", "f32"),
    ("openvino_f32", "OpenVINO (CPU)", "f32"),
    ("litert_int8", "LiteRT (XNNPACK), the same .tflite", "int8"),
    ("litert_f32", "LiteRT (XNNPACK), float .tflite", "f32"),
    ("keras_f32", "Keras / TensorFlow (tf.function)", "f32"),
    ("torch_f32", "PyTorch (channels_last)", "f32"),
]


# -- the graph, extracted once from our reader ------------------------------------------------
def extract_spec(weights, out_dir):
    """Writes spec.json + spec.npz: the pooled-feature graph of a MobileNetV2 .tflite.

    Layers (in order), each dict(type, name, inputs: [names], ...):
      conv: kernel (kh, kw, cin, cout) HWIO float32, bias (cout,), stride, act ("NONE" | "RELU6" | "RELU")
      dwconv: kernel (kh, kw, c, 1), bias (c,), stride, act
      add: two inputs, act
      gap: global average pool -> (N, C)
    Padding is TF's SAME everywhere (checked). The input is "input" (N, H, W, 3) in [-1, 1].
    Returns the path of the .tflite file used.
    """
    from tflite_transfer import applications

    m = applications.MobileNetV2(include_top=False, pooling="avg", weights=weights)
    core, ops = m.model, m.model.ops
    names = {m.model.inputs[0]: "input"}
    layers, arrays = [], {}
    for op in ops:
        t = op["type"]
        o = op["options"]
        ins = [i for i in op["inputs"] if i >= 0]
        if t in ("QUANTIZE", "DEQUANTIZE", "RESHAPE"):
            if ins[0] in names:
                names[op["outputs"][0]] = names[ins[0]]
            continue
        if any(i not in names for i in ins[:1]):
            raise ValueError(f"op {op['index']} {t}: input not produced by a supported op")
        name = f"l{op['index']}"
        if t in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if o["padding"] != "SAME" or o["dilation_h"] != 1 or o["dilation_w"] != 1 or o["stride_h"] != o["stride_w"]:
                raise ValueError(f"op {op['index']}: only SAME, undilated, square strides")
            w = np.asarray(core.get_tensor(ins[1]), dtype=np.float32)
            b = np.asarray(core.get_tensor(ins[2]), dtype=np.float32)
            if t == "CONV_2D":  # OHWI -> HWIO
                k = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
            else:  # (1, kh, kw, C) -> (kh, kw, C, 1)
                k = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
            arrays[name + "/kernel"], arrays[name + "/bias"] = k, b
            layers.append(dict(type="conv" if t == "CONV_2D" else "dwconv", name=name, inputs=[names[ins[0]]],
                               stride=o["stride_h"], act=o["activation"]))
        elif t == "ADD":
            layers.append(dict(type="add", name=name, inputs=[names[i] for i in ins], act=o.get("activation", "NONE")))
        elif t in ("MEAN", "AVERAGE_POOL_2D"):
            layers.append(dict(type="gap", name=name, inputs=[names[ins[0]]]))
        else:
            raise ValueError(f"op {op['index']}: {t} not supported by the benchmark's graph builder")
        names[op["outputs"][0]] = name
        if op["outputs"][0] == m.feature_tensor:
            break
    with open(os.path.join(out_dir, "spec.json"), "w") as f:
        json.dump(dict(layers=layers, output=layers[-1]["name"], tflite=m.weights_path), f)
    np.savez(os.path.join(out_dir, "spec.npz"), **arrays)
    return m.weights_path


def load_spec(d):
    with open(os.path.join(d, "spec.json")) as f:
        spec = json.load(f)
    arrays = dict(np.load(os.path.join(d, "spec.npz")))
    return spec, arrays


def same_pads(n, k, s):
    """TF SAME padding along one axis: (before, after, out)."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def batchable_tflite(src, d):
    """Copy of the .tflite file whose RESHAPE ops take any batch size: the file reshapes the
    logits to the constant shape [1, 1001], which stops LiteRT from resizing the input to
    batch 32. The leading 1 of each RESHAPE's constant shape (and of ReshapeOptions.new_shape)
    becomes -1 in the copy; nothing else changes. Returns the copy's path."""
    import struct

    import tflite

    data = bytearray(open(src, "rb").read())
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != tflite.BuiltinOperator.RESHAPE:
            continue
        vecs = []
        if op.InputsLength() > 1 and op.Inputs(1) >= 0:
            tab = m.Buffers(g.Tensors(op.Inputs(1)).Buffer())._tab
            if tab.Offset(4):
                vecs.append(tab.Vector(tab.Offset(4)))
        if op.BuiltinOptionsType() == tflite.BuiltinOptions.ReshapeOptions:
            ro = tflite.ReshapeOptions()
            ro.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            if ro._tab.Offset(4):
                vecs.append(ro._tab.Vector(ro._tab.Offset(4)))
        for pos in vecs:
            if struct.unpack_from("<i", data, pos)[0] == 1:
                struct.pack_into("<i", data, pos, -1)
    path = os.path.join(d, "int8_batchable.tflite")
    with open(path, "wb") as f:
        f.write(data)
    return path


def build_onnx(d, size=224):
    """Writes model.onnx (NCHW float32 input "input", output "features" (N, 1280)) from the spec."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec, arrays = load_spec(d)
    nodes, inits, hw = [], [], {"input": (size, size)}
    for L in spec["layers"]:
        n, x = L["name"], L["inputs"]
        if L["type"] in ("conv", "dwconv"):
            k, b = arrays[n + "/kernel"], arrays[n + "/bias"]
            kh, kw, cin, cout = k.shape
            if L["type"] == "conv":
                w, group = k.transpose(3, 2, 0, 1), 1  # HWIO -> OIHW
            else:
                w, group = k.transpose(2, 3, 0, 1), cin  # (kh, kw, C, 1) -> (C, 1, kh, kw)
            h, wd = hw[x[0]]
            t, bt, oh = same_pads(h, kh, L["stride"])
            le, ri, ow = same_pads(wd, kw, L["stride"])
            inits += [numpy_helper.from_array(np.ascontiguousarray(w), n + "_w"), numpy_helper.from_array(b, n + "_b")]
            out = n if L["act"] == "NONE" else n + "_pre"
            nodes.append(helper.make_node("Conv", [x[0], n + "_w", n + "_b"], [out], kernel_shape=[kh, kw],
                                          strides=[L["stride"]] * 2, pads=[t, le, bt, ri], group=group))
            hw[n] = (oh, ow)
        elif L["type"] == "add":
            out = n if L["act"] == "NONE" else n + "_pre"
            nodes.append(helper.make_node("Add", x, [out]))
            hw[n] = hw[x[0]]
        elif L["type"] == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", x, [n + "_pool"]))
            nodes.append(helper.make_node("Flatten", [n + "_pool"], [n], axis=1))
            continue
        if L["act"] != "NONE":
            lo, hi = "zero", ("six" if L["act"] == "RELU6" else "")
            nodes.append(helper.make_node("Clip", [n + "_pre", lo, hi], [n]))
    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6, np.float32), "six")]
    nodes.append(helper.make_node("Identity", [spec["output"]], ["features"]))
    graph = helper.make_graph(nodes, "mobilenet_v2_features", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench_peers")
    onnx.checker.check_model(model)
    path = os.path.join(d, "model.onnx")
    onnx.save(model, path)
    return path


def build_keras(d, size=224):
    """A Keras functional model of the spec (NHWC, padding "same" = TF SAME)."""
    import keras

    spec, arrays = load_spec(d)
    t = {"input": keras.Input((size, size, 3), name="input")}
    for L in spec["layers"]:
        n, x = L["name"], [t[i] for i in L["inputs"]]
        if L["type"] == "conv":
            k = arrays[n + "/kernel"]
            lay = keras.layers.Conv2D(k.shape[3], k.shape[:2], strides=L["stride"], padding="same", name=n)
            y = lay(x[0])
            lay.set_weights([k, arrays[n + "/bias"]])
        elif L["type"] == "dwconv":
            k = arrays[n + "/kernel"]
            lay = keras.layers.DepthwiseConv2D(k.shape[:2], strides=L["stride"], padding="same", name=n)
            y = lay(x[0])
            lay.set_weights([k, arrays[n + "/bias"]])
        elif L["type"] == "add":
            y = keras.layers.Add(name=n)(x)
        else:
            y = keras.layers.GlobalAveragePooling2D(name=n)(x[0])
        if L.get("act", "NONE") != "NONE":
            y = keras.layers.ReLU(max_value=6.0 if L["act"] == "RELU6" else None, name=n + "_act")(y)
        t[n] = y
    return keras.Model(t["input"], t[spec["output"]])


def batchable_tflite_here(d):
    with open(os.path.join(d, "spec.json")) as f:
        return batchable_tflite(json.load(f)["tflite"], d)


def build_float_tflite(d):
    """float .tflite from the Keras graph with TF's converter (run in a subprocess: TF is heavy)."""
    import tensorflow as tf

    model = build_keras(d)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    data = conv.convert()
    path = os.path.join(d, "model_f32.tflite")
    with open(path, "wb") as f:
        f.write(data)
    return path


def build_torch(d):
    import torch
    from torch import nn
    import torch.nn.functional as F

    spec, arrays = load_spec(d)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict()
            for L in spec["layers"]:
                if L["type"] in ("conv", "dwconv"):
                    k = arrays[L["name"] + "/kernel"]
                    kh, kw, cin, cout = k.shape
                    if L["type"] == "conv":
                        c = nn.Conv2d(cin, cout, (kh, kw), L["stride"])
                        c.weight.data = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
                    else:
                        c = nn.Conv2d(cin, cin, (kh, kw), L["stride"], groups=cin)
                        c.weight.data = torch.from_numpy(k.transpose(2, 3, 0, 1).copy())
                    c.bias.data = torch.from_numpy(arrays[L["name"] + "/bias"].copy())
                    self.convs[L["name"]] = c

        def forward(self, x):
            t = {"input": x}
            for L in spec["layers"]:
                a = [t[i] for i in L["inputs"]]
                if L["type"] in ("conv", "dwconv"):
                    c = self.convs[L["name"]]
                    kh, kw = c.kernel_size
                    pt, pb, _ = same_pads(a[0].shape[2], kh, L["stride"])
                    pl, pr, _ = same_pads(a[0].shape[3], kw, L["stride"])
                    y = c(F.pad(a[0], (pl, pr, pt, pb)) if (pt or pb or pl or pr) else a[0])
                elif L["type"] == "add":
                    y = a[0] + a[1]
                else:
                    y = a[0].mean(dim=(2, 3))
                if L.get("act", "NONE") == "RELU6":
                    y = F.hardtanh(y, 0.0, 6.0)
                elif L.get("act", "NONE") == "RELU":
                    y = F.relu(y)
                t[L["name"]] = y
            return t[spec["output"]]

    return Net().eval().to(memory_format=torch.channels_last)


# -- workers -----------------------------------------------------------------------------------
def make_runner(engine, d, threads):
    """Returns (info, run(batch) -> callable) for one engine, or raises NotRun."""
    spec_path = os.path.join(d, "spec.json")
    with open(spec_path) as f:
        tflite_path = json.load(f)["tflite"]
    rng = np.random.default_rng(0)

    if engine.startswith("ours_"):
        import tflite_transfer as tt
        tt.set_num_threads(threads)
        dtype = {"ours_f32": None, "ours_bf16": "mixed_bfloat16", "ours_int8": "int8"}[engine]
        kw = {} if dtype is None else {"dtype": dtype}
        try:
            m = tt.applications.MobileNetV2(include_top=False, pooling="avg", weights=tflite_path, **kw)
        except (TypeError, NotImplementedError) as e:
            raise NotRun(f"not implemented ({type(e).__name__}: {e})")
        except ValueError as e:
            raise NotRun(f"not available here ({e})")
        info = (f"tflite_transfer {tt.__version__}, {threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
                f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}")

        def prep(b):
            x = rng.uniform(-1, 1, (b, 224, 224, 3)).astype(np.float32)
            return lambda: m.predict(x, batch_size=b)
        return info, prep, lambda x: m.predict(x, batch_size=len(x))

    if engine == "ort_f32":
        try:
            import onnxruntime as ort
        except ImportError:
            raise NotRun("onnxruntime not installed")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
        info = f"onnxruntime {ort.__version__}, CPUExecutionProvider, intra_op_num_threads={threads}"

        def prep(b):
            x = rng.uniform(-1, 1, (b, 3, 224, 224)).astype(np.float32)
            return lambda: sess.run(None, {"input": x})
        return info, prep, lambda x: sess.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]

    if engine == "openvino_f32":
        try:
            import openvino as ov
        except ImportError:
            raise NotRun("openvino not installed")
        core = ov.Core()
        model = core.read_model(os.path.join(d, "model.onnx"))
        cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        compiled = {}
        info = f"openvino {ov.__version__}, CPU, {cfg}"

        def prep(b):
            if b not in compiled:
                model.reshape({"input": [b, 3, 224, 224]})
                compiled[b] = core.compile_model(model, "CPU", cfg).create_infer_request()
            req = compiled[b]
            x = rng.uniform(-1, 1, (b, 3, 224, 224)).astype(np.float32)
            return lambda: req.infer({0: x})

        def feat(x):
            prep(len(x))
            return compiled[len(x)].infer({0: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        return info, prep, feat

    if engine in ("litert_int8", "litert_f32"):
        try:
            from ai_edge_litert.interpreter import Interpreter
            import ai_edge_litert
        except ImportError:
            raise NotRun("ai-edge-litert not installed")
        path = os.path.join(d, "int8_batchable.tflite" if engine == "litert_int8" else "model_f32.tflite")
        if not os.path.exists(path):
            raise NotRun("no float .tflite (TensorFlow's converter not available)")
        interps = {}
        info = f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}, num_threads={threads}, " \
               f"{os.path.basename(path)}"

        def prep(b):
            if b not in interps:
                it = Interpreter(model_path=path, num_threads=threads)
                inp = it.get_input_details()[0]
                it.resize_tensor_input(inp["index"], [b] + list(inp["shape"][1:]))
                it.allocate_tensors()
                interps[b] = it
            it = interps[b]
            inp = it.get_input_details()[0]
            if inp["dtype"] == np.uint8:
                x = rng.integers(0, 256, tuple(inp["shape"]), dtype=np.uint8)
            else:
                x = rng.uniform(-1, 1, tuple(inp["shape"])).astype(inp["dtype"])

            def run():
                it.set_tensor(inp["index"], x)
                it.invoke()
                return it.get_tensor(it.get_output_details()[0]["index"])
            return run

        def feat(x):
            if engine == "litert_int8":
                return None  # uint8 in, class probabilities out: not comparable
            prep(len(x))
            it = interps[len(x)]
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            return it.get_tensor(it.get_output_details()[0]["index"])
        return info, prep, feat

    if engine == "keras_f32":
        try:
            import tensorflow as tf
        except ImportError:
            raise NotRun("TensorFlow not installed")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model = build_keras(d)
        fn = tf.function(lambda x: model(x, training=False))
        info = f"tensorflow {tf.__version__}, keras {__import__('keras').__version__}, tf.function, " \
               f"intra_op={threads}, inter_op=1"

        def prep(b):
            x = tf.constant(rng.uniform(-1, 1, (b, 224, 224, 3)).astype(np.float32))
            return lambda: fn(x).numpy()
        return info, prep, lambda x: fn(tf.constant(x)).numpy()

    if engine == "torch_f32":
        try:
            import torch
        except ImportError:
            raise NotRun("PyTorch not installed")
        torch.set_num_threads(threads)
        model = build_torch(d)
        info = f"torch {torch.__version__}, {threads} threads, channels_last, inference_mode"

        def prep(b):
            x = torch.from_numpy(rng.uniform(-1, 1, (b, 3, 224, 224)).astype(np.float32)).contiguous(
                memory_format=torch.channels_last)

            def run():
                with torch.inference_mode():
                    return model(x)
            return run

        def feat(x):
            with torch.inference_mode():
                return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
        return info, prep, feat
    raise NotRun(f"unknown engine {engine}")


class NotRun(Exception):
    pass


def worker(engine, d, threads):
    """Line protocol on stdin/stdout: prints one JSON line per request."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library chatter off the protocol channel
    try:
        info, prep, feat = make_runner(engine, d, threads)
        out.write(json.dumps(dict(ok=True, info=info)) + "\n")
    except NotRun as e:
        out.write(json.dumps(dict(ok=False, why=str(e))) + "\n")
        out.flush()
        return
    out.flush()
    runs = {}
    for line in sys.stdin:
        req = json.loads(line)
        if "check" in req:
            x = np.random.default_rng(1).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
            y = feat(x)
            out.write(json.dumps(dict(features=None if y is None else np.asarray(y, np.float64).tolist())) + "\n")
            out.flush()
            continue
        b = req["batch"]
        if b not in runs:
            runs[b] = prep(b)
            t = time.perf_counter()
            runs[b]()  # warm-up: builds / compiles for this batch size
            warm = time.perf_counter() - t
        else:
            warm = None
        fn, times, start = runs[b], [], time.perf_counter()
        while len(times) < req["min_calls"] or time.perf_counter() - start < req["seconds"]:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out.write(json.dumps(dict(times=times, warmup_s=warm)) + "\n")
        out.flush()


class Worker:
    def __init__(self, engine, d, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", engine, "--dir", d,
                                   "--worker-threads", str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        self.hello = self._read()

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            self.err.seek(0)
            last = [ln for ln in self.err.read().splitlines() if ln.strip()][-1:] or [""]
            return dict(ok=False, why=f"worker exited with status {self.p.wait()}: {last[0][:300]}")
        return json.loads(line)

    def ask(self, **req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()


# -- machine ---------------------------------------------------------------------------------------
def machine_info(d):
    from bench_engine import cpu_info

    cpu = cpu_info()
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    cpu["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))
    # oneDNN's dispatch: our engine under ONEDNN_VERBOSE=1 in a subprocess, once with 1 call and once
    # with 2 calls of predict (batch 2); the difference is one steady-state call (no weight reorders).
    code = ("import numpy as np, tflite_transfer as tt, json, sys\n"
            "p=json.load(open(sys.argv[1]))['tflite']\n"
            "m=tt.applications.MobileNetV2(include_top=False,pooling='avg',weights=p)\n"
            "for _ in range(int(sys.argv[2])): m.predict(np.zeros((2,224,224,3),np.float32),batch_size=2)\n")
    isa, version, counts = None, None, []
    for calls in (1, 2):
        r = subprocess.run([sys.executable, "-c", code, os.path.join(d, "spec.json"), str(calls)],
                           capture_output=True, text=True, env=dict(os.environ, ONEDNN_VERBOSE="1"), cwd=ROOT,
                           timeout=300)
        c = {}
        for line in r.stdout.splitlines():
            f = line.split(",")
            if len(f) >= 3 and f[1] == "info" and "isa:" in line:
                isa = line.split("isa:", 1)[1].strip()
            elif len(f) >= 3 and f[1] == "info" and "oneDNN v" in line:
                version = line.split("oneDNN v", 1)[1].split()[0]
            elif len(f) > 5 and f[1] == "exec":
                key = f"{f[3]}:{f[4]}"  # primitive kind : implementation
                c[key] = c.get(key, 0) + 1
        counts.append(c)
    impls = {k: v - counts[0].get(k, 0) for k, v in counts[1].items() if v - counts[0].get(k, 0) > 0}
    cpu["onednn_version"] = version
    cpu["onednn_isa"] = isa
    cpu["onednn_implementations"] = impls
    return cpu


def fmt(x, spec=".1f"):
    return format(x, spec) if isinstance(x, (int, float)) and not math.isnan(x) else "—"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all cores")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.6, help="timed seconds per (engine, batch) per round")
    ap.add_argument("--min-calls", type=int, default=2)
    ap.add_argument("--weights", default="imagenet_ptq")
    ap.add_argument("--engines", nargs="+", default=[e[0] for e in ENGINES])
    ap.add_argument("--json", default=os.path.join(HERE, "results", "peers.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.dir, args.worker_threads)

    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    thread_counts = args.threads or sorted({1, ncores})
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as d:
        # Graph and peer model files, each heavy step in its own subprocess.
        sp = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0]=sys.argv[2:4]; import bench_peers as b; "
                             "print(b.extract_spec(sys.argv[4], sys.argv[1]))", d, ROOT, HERE, args.weights],
                            capture_output=True, text=True, cwd=ROOT)
        if sp.returncode:
            sys.exit("could not read the model: " + sp.stderr[-2000:])
        tflite_path = sp.stdout.strip().splitlines()[-1]
        prep_notes = {}
        for what, fn in (("int8_batchable_tflite", "batchable_tflite_here"), ("onnx", "build_onnx"),
                         ("float_tflite", "build_float_tflite")):
            r = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0]=sys.argv[2:4]; import bench_peers as b; "
                                f"print(b.{fn}(sys.argv[1]))", d, ROOT, HERE], capture_output=True, text=True,
                               cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            prep_notes[what] = "ok" if r.returncode == 0 else f"failed: {last}"
            print(f"{what}: {prep_notes[what]}", flush=True)
        cpu = machine_info(d)

        rows, infos, loads, checks = {}, {}, [], {}
        for threads in thread_counts:
            workers = {}
            for e in args.engines:
                w = Worker(e, d, threads)
                if w.hello.get("ok"):
                    workers[e] = w
                    infos[e] = w.hello["info"]
                else:
                    infos[e] = "not run: " + w.hello.get("why", "?")
                    w.close()
                print(f"[{threads} thr] {e}: {infos[e]}", flush=True)
            # Same weights, same answer: pooled features of one fixed batch vs ours f32.
            feats = {e: w.ask(check=True).get("features") for e, w in workers.items()}
            ref = np.asarray(feats["ours_f32"]) if feats.get("ours_f32") is not None else None
            for e, f in feats.items():
                if f is not None and ref is not None:
                    err = float(np.max(np.abs(np.asarray(f) - ref)) / np.max(np.abs(ref)))
                    checks[(e, threads)] = err
                    print(f"[{threads} thr] {e}: max|features - ours f32| / max|ours f32| = {err:.2e}", flush=True)
            times = {(e, b): [] for e in workers for b in args.batches}
            order = list(workers)
            for rnd in range(args.rounds):
                la = os.getloadavg()[0]
                for b in args.batches:
                    for e in order:
                        r = workers[e].ask(batch=b, seconds=args.seconds, min_calls=args.min_calls)
                        if "times" not in r:
                            infos[e] = "not run: " + r.get("why", "worker failed")
                            continue
                        times[(e, b)] += r["times"]
                order = order[1:] + order[:1]
                lb = os.getloadavg()[0]
                loads.append(dict(threads=threads, round=rnd, load_before=la, load_after=lb))
                print(f"[{threads} thr] round {rnd + 1}/{args.rounds} done (load {la:.2f} -> {lb:.2f})", flush=True)
            for w in workers.values():
                w.close()
            for (e, b), ts in times.items():
                if ts:
                    med = float(np.median(ts))
                    rows[(e, threads, b)] = dict(engine=e, threads=threads, batch=b, calls=len(ts),
                                                 median_s=med, images_per_s=b / med,
                                                 q25_images_per_s=b / float(np.percentile(ts, 75)),
                                                 q75_images_per_s=b / float(np.percentile(ts, 25)))

    # -- table ---------------------------------------------------------------------------------------
    label = {k: (lab, prec) for k, lab, prec in ENGINES}
    out_rows = []
    lines = ["| engine | precision | threads | batch | images/s (median) | ours f32 ÷ engine | notes |",
             "|---|---|---:|---:|---:|---:|---|"]
    for threads in thread_counts:
        for b in args.batches:
            ours = rows.get(("ours_f32", threads, b))
            for e in args.engines:
                lab, prec = label.get(e, (e, "?"))
                r = rows.get((e, threads, b))
                if r is None:
                    note = infos.get(e, "not run")
                    lines.append(f"| {lab} | {prec} | {threads} | {b} | not run | — | {note} |")
                    out_rows.append(dict(engine=e, threads=threads, batch=b, images_per_s=None, note=note))
                    continue
                r = dict(r)
                if ours:
                    r["ours_f32_ratio"] = ours["images_per_s"] / r["images_per_s"]
                if (e, threads) in checks:
                    r["max_rel_diff_vs_ours_f32"] = checks[(e, threads)]
                if e.startswith("ours"):
                    r["gflops"] = r["images_per_s"] * FLOP_PER_IMAGE / 1e9
                    r["fraction_of_f32_peak"] = r["gflops"] / cpu["peak_gflops"] if cpu["peak_gflops"] else None
                note = f"{r['gflops']:.0f} GFLOP/s, {100 * r['fraction_of_f32_peak']:.0f}% of f32 peak" \
                    if e == "ours_f32" and r.get("fraction_of_f32_peak") else ""
                if "max_rel_diff_vs_ours_f32" in r and e != "ours_f32":
                    note = f"features vs ours f32: {r['max_rel_diff_vs_ours_f32']:.0e} (max rel.)"
                lines.append(f"| {lab} | {prec} | {threads} | {b} | {r['images_per_s']:.1f} "
                             f"({r['q25_images_per_s']:.0f}–{r['q75_images_per_s']:.0f}) | "
                             f"{fmt(r.get('ours_f32_ratio'), '.2f')}x | {note} |")
                out_rows.append(r)
    la = [x["load_before"] for x in loads] + [x["load_after"] for x in loads]
    impl = ", ".join(f"{k} ×{v}" for k, v in sorted(cpu["onednn_implementations"].items(), key=lambda kv: -kv[1]))
    header = [f"Machine: {cpu['model_name']}, {cpu['cores']} cores visible, {cpu['ghz']:.2f} GHz; SIMD flags: "
              f"{' '.join(cpu['simd_flags'])}",
              f"f32 peak: {cpu['peak_formula']}",
              f"oneDNN {cpu['onednn_version']}, ISA in use: {cpu['onednn_isa']}; primitives executed per call: {impl}",
              f"1-min load average during the rounds: {min(la):.2f}–{max(la):.2f} (median {np.median(la):.2f}) "
              f"on {cpu['cores']} cores" if la else "load: —",
              f"{args.rounds} rounds × ~{args.seconds}s per (engine, batch), interleaved; images/s = batch ÷ median "
              f"call time (interquartile range in brackets); weights {os.path.basename(tflite_path)}"]
    table = "\n".join(header) + "\n\n" + "\n".join(lines)
    print("\n" + table)
    result = dict(benchmark="MobileNetV2 1.0/224 pooled features: tflite_transfer vs peers",
                  command="python3 benchmarks/bench_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), wall_s=time.time() - t0,
                  flop_per_image=FLOP_PER_IMAGE, machine=cpu, engines=infos, model_files=prep_notes,
                  weights=os.path.basename(tflite_path), rounds=args.rounds, seconds_per_round=args.seconds,
                  load=loads, rows=out_rows, table_markdown=table)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
