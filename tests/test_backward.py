"""Backward pass of the oneDNN engine (csrc/ops/*: conv, depthwise, RELU6, ADD, AVERAGE_POOL, MEAN)
through tflite_transfer._core.TrainEngine, against the NumPy float64 references of
tests/reference_grad.py (themselves checked by finite differences in test_reference_grad.py).

Each test builds a tiny .tflite model with tests/tflite_builder.py, runs forward + backward with
loss L = sum(y * R) (so dL/dy = R, random), and compares every parameter gradient of the trainable
ops. The op under test always has a trainable conv in front of it, so its input gradient (dL/dx)
shows up in that conv's weight gradient. Tolerance: float32 engine vs float64 reference,
max |ours - ref| <= 1e-4 * max |ref| + 1e-5 per array.
"""
import numpy as np
import pytest

import reference_grad as R
from tflite_builder import build_model
from tflite_transfer._native import _core

RTOL = 1e-4


class Net:
    """A chain/DAG of ops, written as a .tflite model and evaluated in float64 by reference_grad."""

    def __init__(self, rng, x_shape):
        self.rng = rng
        self.tensors = [dict(name="x", shape=list(x_shape), dtype="float32")]
        self.ops = []      # (kind, inputs, output, options, params)
        self.shapes = [tuple(x_shape)]

    def _tensor(self, name, shape, data=None):
        d = dict(name=name, shape=list(shape), dtype="float32")
        if data is not None:
            d["data"] = np.asarray(data, np.float32)
        self.tensors.append(d)
        self.shapes.append(tuple(shape))
        return len(self.tensors) - 1

    def conv(self, x, cout, k=1, stride=1, act="NONE", padding="SAME", scale=None):
        n, h, w, cin = self.shapes[x]
        scale = scale or 1.0 / np.sqrt(k * k * cin)
        wt = self.rng.normal(0, scale, (cout, k, k, cin)).astype(np.float32)
        b = self.rng.normal(0.3, 0.3, cout).astype(np.float32)
        oh, _, _ = R.same_or_valid(h, k, stride, padding)
        ow, _, _ = R.same_or_valid(w, k, stride, padding)
        tw, tb = self._tensor(f"w{len(self.ops)}", wt.shape, wt), self._tensor(f"b{len(self.ops)}", b.shape, b)
        y = self._tensor(f"y{len(self.ops)}", (n, oh, ow, cout))
        self.ops.append(("CONV_2D", [x, tw, tb], y, dict(padding=padding, stride_w=stride, stride_h=stride,
                                                           fused_activation_function=act), dict(w=tw, b=tb)))
        return y

    def dw(self, x, k=3, stride=1, act="NONE", padding="SAME"):
        n, h, w, c = self.shapes[x]
        wt = self.rng.normal(0, 1.0 / k, (1, k, k, c)).astype(np.float32)
        b = self.rng.normal(0.3, 0.3, c).astype(np.float32)
        oh, _, _ = R.same_or_valid(h, k, stride, padding)
        ow, _, _ = R.same_or_valid(w, k, stride, padding)
        tw, tb = self._tensor(f"w{len(self.ops)}", wt.shape, wt), self._tensor(f"b{len(self.ops)}", b.shape, b)
        y = self._tensor(f"y{len(self.ops)}", (n, oh, ow, c))
        self.ops.append(("DEPTHWISE_CONV_2D", [x, tw, tb], y, dict(padding=padding, stride_w=stride,
                                                                     stride_h=stride, depth_multiplier=1,
                                                                     fused_activation_function=act),
                         dict(w=tw, b=tb)))
        return y

    def add(self, a, b):
        y = self._tensor(f"y{len(self.ops)}", self.shapes[a])
        self.ops.append(("ADD", [a, b], y, {}, {}))
        return y

    def avg_pool(self, x, k=2, stride=2, padding="VALID"):
        n, h, w, c = self.shapes[x]
        oh, _, _ = R.same_or_valid(h, k, stride, padding)
        ow, _, _ = R.same_or_valid(w, k, stride, padding)
        y = self._tensor(f"y{len(self.ops)}", (n, oh, ow, c))
        self.ops.append(("AVERAGE_POOL_2D", [x], y, dict(padding=padding, stride_w=stride, stride_h=stride,
                                                         filter_width=k, filter_height=k), {}))
        return y

    def max_pool(self, x):
        n, h, w, c = self.shapes[x]
        y = self._tensor(f"y{len(self.ops)}", (n, h // 2, w // 2, c))
        self.ops.append(("MAX_POOL_2D", [x], y, dict(padding="VALID", stride_w=2, stride_h=2, filter_width=2,
                                                     filter_height=2), {}))
        return y

    def mean(self, x, keep_dims=False):
        n, h, w, c = self.shapes[x]
        ax = len(self.tensors)
        self.tensors.append(dict(name="axes", shape=[2], dtype="int32", data=np.array([1, 2], np.int32)))
        self.shapes.append((2,))
        y = self._tensor(f"y{len(self.ops)}", (n, 1, 1, c) if keep_dims else (n, c))
        self.ops.append(("MEAN", [x, ax], y, dict(keep_dims=keep_dims), {}))
        return y

    def model(self, output):
        data = build_model(self.tensors, [dict(op=k, inputs=i, outputs=[o], options=opt)
                                          for k, i, o, opt, _ in self.ops], [0], [output])
        return _core.Model(data, name="test_backward")

    def data(self, t):
        return np.asarray(self.tensors[t]["data"], np.float64)

    # --- float64 reference ---------------------------------------------------------------
    def reference(self, x, output, dy, train_from=0):
        """(y, {tensor index of a parameter: dL/dparam}) for ops >= train_from."""
        v = {0: np.asarray(x, np.float64)}
        for kind, ins, out, opt, p in self.ops:
            a = v[ins[0]]
            s = (opt.get("stride_h", 1),) * 2
            if kind == "CONV_2D":
                y = R.conv2d_forward(a, self.data(p["w"]), self.data(p["b"]), s, opt["padding"])
            elif kind == "DEPTHWISE_CONV_2D":
                y = R.depthwise_conv2d_forward(a, self.data(p["w"]), self.data(p["b"]), s, opt["padding"])
            elif kind == "ADD":
                y = a + v[ins[1]]
            elif kind == "AVERAGE_POOL_2D":
                y = R.avg_pool2d_forward(a, (opt["filter_height"],) * 2, s, opt["padding"])
            elif kind == "MEAN":
                y = R.mean_forward(a, opt["keep_dims"])
            if opt.get("fused_activation_function") == "RELU6":
                y = R.relu6_forward(y)
            v[out] = y
        g = {output: np.asarray(dy, np.float64)}
        grads = {}
        for idx in range(len(self.ops) - 1, train_from - 1, -1):
            kind, ins, out, opt, p = self.ops[idx]
            if out not in g:
                continue
            d = g[out]
            if opt.get("fused_activation_function") == "RELU6":
                d = R.relu6_backward(d, v[out])
            s = (opt.get("stride_h", 1),) * 2
            a = v[ins[0]]
            if kind == "CONV_2D":
                dx, grads[p["w"]], grads[p["b"]] = R.conv2d_backward(d, a, self.data(p["w"]), s, opt["padding"])
                dxs = [dx]
            elif kind == "DEPTHWISE_CONV_2D":
                dx, grads[p["w"]], grads[p["b"]] = R.depthwise_conv2d_backward(d, a, self.data(p["w"]), s,
                                                                                opt["padding"])
                dxs = [dx]
            elif kind == "ADD":
                dxs = list(R.add_backward(d))
            elif kind == "AVERAGE_POOL_2D":
                dxs = [R.avg_pool2d_backward(d, a.shape, (opt["filter_height"],) * 2, s, opt["padding"])]
            elif kind == "MEAN":
                dxs = [R.mean_backward(d, a.shape)]
            for t, dt in zip(ins, dxs):
                g[t] = g.get(t, 0) + dt
        return v[output], grads


def run_engine(net, model, x, output, dy, train_from=0):
    """(y, {param tensor: grad}, engine) from the C engine."""
    eng = _core.TrainEngine(model, x.shape[0], x.shape[1], x.shape[2], output, train_from)
    values, grads = {}, {}
    for k, p in enumerate(eng.params):
        values[p["tensor"]] = model.get_tensor(p["tensor"]).astype(np.float32).ravel().copy()
        grads[p["tensor"]] = np.full(p["size"], np.nan, np.float32)
        eng.bind_param(k, values[p["tensor"]], grads[p["tensor"]])
    y = eng.run(x)
    eng.backward(np.ascontiguousarray(dy, np.float32))
    return y, {t: g.reshape(net.shapes[t]) for t, g in grads.items()}, eng, values


def assert_close(ours, ref, what):
    ref = np.asarray(ref, np.float64)
    err = np.max(np.abs(np.asarray(ours, np.float64) - ref))
    tol = RTOL * max(np.max(np.abs(ref)), 1e-3) + 1e-5
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g} (max |ref| {np.max(np.abs(ref)):.3g})"


def check(net, output, x, train_from=0):
    model = net.model(output)
    dy = net.rng.normal(0, 1, net.shapes[output]).astype(np.float32)
    y, grads, eng, _ = run_engine(net, model, x, output, dy, train_from)
    y_ref, g_ref = net.reference(x, output, dy, train_from)
    assert_close(y, y_ref, "forward")
    assert set(grads) == set(g_ref), (sorted(grads), sorted(g_ref))
    for t in g_ref:
        assert_close(grads[t], g_ref[t], f"gradient of tensor {t} ({net.tensors[t]['name']})")
    return eng


def _x(rng, n, h, w, c):
    return rng.uniform(-1, 1, (n, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("k,stride,act", [(3, 1, "RELU6"), (3, 2, "NONE"), (1, 1, "RELU6"), (3, 2, "RELU6")])
def test_conv2d_backward(k, stride, act):
    rng = np.random.default_rng(k * 10 + stride)
    net = Net(rng, (2, 7, 6, 3))
    h = net.conv(0, 5, act="RELU6")           # upstream trainable conv: its dW carries dL/dx
    y = net.conv(h, 4, k=k, stride=stride, act=act)
    check(net, y, _x(rng, 2, 7, 6, 3))


@pytest.mark.parametrize("stride,act,padding", [(1, "RELU6", "SAME"), (2, "RELU6", "SAME"), (1, "NONE", "VALID")])
def test_depthwise_conv2d_backward(stride, act, padding):
    rng = np.random.default_rng(stride + 7)
    net = Net(rng, (2, 8, 7, 3))
    h = net.conv(0, 6, act="RELU6")
    y = net.dw(h, 3, stride, act, padding)
    check(net, y, _x(rng, 2, 8, 7, 3))


def test_add_backward_accumulates_two_consumers():
    # x feeds both the conv and the ADD: dL/dx = dL/dy + conv's backward-data
    rng = np.random.default_rng(3)
    net = Net(rng, (2, 5, 5, 3))
    x = net.conv(0, 4, act="RELU6")
    y = net.add(net.conv(x, 4), x)
    check(net, y, _x(rng, 2, 5, 5, 3))


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_avg_pool_backward(padding):
    rng = np.random.default_rng(4)
    net = Net(rng, (2, 7, 6, 3))
    h = net.conv(0, 4, act="RELU6")
    y = net.avg_pool(h, 2, 2, padding)
    check(net, y, _x(rng, 2, 7, 6, 3))


@pytest.mark.parametrize("keep_dims", [False, True])
def test_mean_backward(keep_dims):
    rng = np.random.default_rng(5)
    net = Net(rng, (3, 5, 4, 3))
    h = net.conv(0, 6, act="RELU6")
    y = net.mean(h, keep_dims)
    check(net, y, _x(rng, 3, 5, 4, 3))


def _block(net, x, cout, stride, expansion=6):
    n, h, w, cin = net.shapes[x]
    e = net.conv(x, cin * expansion, act="RELU6")
    d = net.dw(e, 3, stride, "RELU6")
    p = net.conv(d, cout)
    return net.add(p, x) if stride == 1 and cin == cout else p


@pytest.mark.parametrize("skip", [True, False])
def test_inverted_residual_block(skip):
    rng = np.random.default_rng(6)
    net = Net(rng, (2, 8, 8, 3))
    x = net.conv(0, 4, k=3, stride=2, act="RELU6")
    y = _block(net, x, 4 if skip else 6, 1 if skip else 2)
    assert (net.ops[-1][0] == "ADD") == skip
    check(net, net.mean(y), _x(rng, 2, 8, 8, 3))


def test_frozen_bottom_has_no_params_and_top_matches():
    rng = np.random.default_rng(8)
    net = Net(rng, (2, 8, 8, 3))
    x = net.conv(0, 4, k=3, stride=2, act="RELU6")
    y = _block(net, _block(net, x, 4, 1), 4, 1)
    out = net.mean(y)
    first = 5  # ops: 0 conv, 1-4 block (expand, dw, project, ADD), 5-8 block, 9 MEAN
    eng = check(net, out, _x(rng, 2, 8, 8, 3), train_from=first)
    assert {p["op"] for p in eng.params} == {5, 6, 7}
    # the cut: the first block's output (read by the expand conv and by the ADD)
    assert [t for t, _ in eng.cut] == [net.ops[first - 1][2]]


def test_cached_cut_gives_the_same_output_and_gradients():
    rng = np.random.default_rng(9)
    net = Net(rng, (2, 8, 8, 3))
    x = net.conv(0, 4, k=3, stride=2, act="RELU6")
    out = net.mean(_block(net, _block(net, x, 4, 1), 4, 1))
    model = net.model(out)
    xin = _x(rng, 2, 8, 8, 3)
    dy = rng.normal(0, 1, net.shapes[out]).astype(np.float32)
    # from the first block's ADD: the cut is its two inputs (project output and the block input)
    y, grads, eng, _ = run_engine(net, model, xin, out, dy, train_from=4)
    assert sorted(t for t, _ in eng.cut) == sorted([net.ops[3][2], net.ops[0][2]])
    cut = eng.run_bottom(xin)
    assert [c.shape for c in cut] == [tuple(s) for _, s in eng.cut]
    before = {t: g.copy() for t, g in grads.items()}
    for g in grads.values():
        g[...] = np.nan
    y2 = eng.run_top(cut)
    eng.backward(dy)
    np.testing.assert_array_equal(y2, y)
    for t in grads:
        np.testing.assert_allclose(grads[t], before[t], rtol=1e-6, atol=1e-7)


def test_updated_parameters_are_seen_by_the_next_run():
    rng = np.random.default_rng(10)
    net = Net(rng, (1, 4, 4, 2))
    y = net.conv(0, 3, act="NONE")
    model = net.model(y)
    xin = _x(rng, 1, 4, 4, 2)
    _, grads, eng, values = run_engine(net, model, xin, y, np.ones((1, 4, 4, 3), np.float32))
    wt = [p["tensor"] for p in eng.params if p["size"] == 6][0]
    values[wt] -= 0.5  # in place, as an optimizer does
    w = values[wt].reshape(3, 1, 1, 2).astype(np.float64)
    ref = R.conv2d_forward(xin, w, net.data(net.ops[0][4]["b"]))
    assert_close(eng.run(xin), ref, "forward after an in-place update")


def test_op_without_backward_is_named():
    rng = np.random.default_rng(11)
    net = Net(rng, (1, 4, 4, 2))
    y = net.conv(net.max_pool(net.conv(0, 3)), 3)
    with pytest.raises(ValueError, match="operator 1 \\(MAX_POOL_2D\\) has no backward"):
        _core.TrainEngine(net.model(y), 1, 4, 4, y, 0)
    eng = _core.TrainEngine(net.model(y), 1, 4, 4, y, 2)  # frozen from the pool down: fine
    assert [p["op"] for p in eng.params] == [2, 2]


@pytest.mark.parametrize("train_from", [-1, 4])
def test_train_from_out_of_range(train_from):
    rng = np.random.default_rng(12)
    net = Net(rng, (1, 4, 4, 2))
    y = net.conv(net.conv(0, 3), 3)
    with pytest.raises(ValueError, match="train_from must be in \\[0, 2\\]"):
        _core.TrainEngine(net.model(y), 1, 4, 4, y, train_from)


def test_train_from_end_is_the_inference_plan():
    rng = np.random.default_rng(13)
    net = Net(rng, (2, 8, 8, 3))
    x = net.conv(0, 4, k=3, stride=2, act="RELU6")
    out = net.mean(_block(net, x, 4, 1))
    model = net.model(out)
    xin = _x(rng, 2, 8, 8, 3)
    eng = _core.TrainEngine(model, 2, 8, 8, out, len(net.ops))
    assert eng.params == []
    np.testing.assert_array_equal(eng.run(xin), model.run(xin, output_tensor=out))
