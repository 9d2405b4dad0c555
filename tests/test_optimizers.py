"""Optimizer parity: 5 steps of each optimizer (updates in C, float32) on a small
fixed least-squares problem equal a float64 NumPy transcription of Keras 3's
update rule (keras/src/optimizers/{sgd,adam,adamw,rmsprop}.py and
base_optimizer._apply_weight_decay) to 1e-6; and Keras itself when installed.
"""
import math

import numpy as np
import pytest

from tflite_transfer import optimizers as O

A = np.array([[1.0, 0.2, 0.0], [0.2, 0.7, -0.1], [0.0, -0.1, 0.4]])
B = np.array([0.3, -0.5, 0.8])
X0 = np.array([0.5, -1.0, 2.0])


def _grad(v):
    return A @ v - B  # gradient of 0.5 v'Av - b'v


def _np_run(rule, cfg, steps=5, lr_fn=None):
    v = X0.copy()
    s = {"m": np.zeros(3), "v": np.zeros(3), "vhat": np.zeros(3), "mom": np.zeros(3), "avg": np.zeros(3)}
    for it in range(steps):
        lr = lr_fn(it) if lr_fn else cfg["learning_rate"]
        g = _grad(v)
        if cfg.get("weight_decay"):
            v = v - v * cfg["weight_decay"] * lr
        if rule == "sgd":
            mo = cfg.get("momentum", 0.0)
            if mo:
                s["m"] = mo * s["m"] - lr * g
                v = v + (mo * s["m"] - lr * g if cfg.get("nesterov") else s["m"])
            else:
                v = v - lr * g
        elif rule == "adam":
            b1, b2, eps, t = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7), it + 1
            alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            s["m"] += (g - s["m"]) * (1 - b1)
            s["v"] += (g * g - s["v"]) * (1 - b2)
            vv = s["v"]
            if cfg.get("amsgrad"):
                s["vhat"] = np.maximum(s["vhat"], s["v"])
                vv = s["vhat"]
            v = v - alpha * s["m"] / (np.sqrt(vv) + eps)
        elif rule == "rmsprop":
            rho, mo, eps = cfg.get("rho", 0.9), cfg.get("momentum", 0.0), cfg.get("epsilon", 1e-7)
            s["v"] = rho * s["v"] + (1 - rho) * g * g
            if cfg.get("centered"):
                s["avg"] = rho * s["avg"] + (1 - rho) * g
                den = s["v"] - s["avg"] ** 2 + eps
            else:
                den = s["v"] + eps
            inc = lr * g / np.sqrt(den)
            if mo > 0:
                s["mom"] = mo * s["mom"] + inc
                v = v - s["mom"]
            else:
                v = v - inc
    return v


def _c_run(opt, steps=5):
    v = X0.astype(np.float32)
    for _ in range(steps):
        opt.apply([_grad(v.astype(np.float64)).astype(np.float32)], [v])
    return v


CASES = [
    ("sgd", O.SGD, {"learning_rate": 0.1}),
    ("sgd", O.SGD, {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd", O.SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adam", O.Adam, {"learning_rate": 0.05}),
    ("adam", O.Adam, {"learning_rate": 0.05, "amsgrad": True}),
    ("adam", O.AdamW, {"learning_rate": 0.05, "weight_decay": 0.1}),
    ("rmsprop", O.RMSprop, {"learning_rate": 0.01}),
    ("rmsprop", O.RMSprop, {"learning_rate": 0.01, "momentum": 0.8}),
    ("rmsprop", O.RMSprop, {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
]


@pytest.mark.parametrize("rule,cls,cfg", CASES, ids=[f"{c[1].__name__}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}" for c in CASES])
def test_five_steps_match_keras_rule(rule, cls, cfg):
    got = _c_run(cls(**cfg))
    want = _np_run(rule, cfg)
    assert not np.allclose(want, X0)  # the problem moves
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sched", [
    O.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5),
    O.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True),
    O.schedules.CosineDecay(0.1, decay_steps=4, alpha=0.1),
], ids=["exp", "exp_staircase", "cosine"])
def test_schedule_is_evaluated_at_iterations(sched):
    got = _c_run(O.Adam(learning_rate=sched))
    want = _np_run("adam", {}, lr_fn=sched)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_schedule_formulas():
    e = O.schedules.ExponentialDecay(1.0, 10, 0.5)
    assert e(5) == pytest.approx(0.5 ** 0.5)
    assert O.schedules.ExponentialDecay(1.0, 10, 0.5, staircase=True)(15) == pytest.approx(0.5)
    c = O.schedules.CosineDecay(2.0, 10, alpha=0.2)
    assert c(0) == pytest.approx(2.0) and c(10) == pytest.approx(0.4) and c(50) == pytest.approx(0.4)
    assert c(5) == pytest.approx(2.0 * (0.8 * 0.5 + 0.2))
    w = O.schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    assert w(2) == pytest.approx(0.5) and w(4) == pytest.approx(1.0)


def test_keras_defaults_and_strings():
    assert O.get("sgd").learning_rate == 0.01 and O.get("sgd").momentum == 0.0 and not O.get("sgd").nesterov
    a = O.get("adam")
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.amsgrad) == (0.001, 0.9, 0.999, 1e-7, False)
    w = O.get("adamw")
    assert isinstance(w, O.AdamW) and w.weight_decay == 0.004 and w.learning_rate == 0.001
    r = O.get("rmsprop")
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    with pytest.raises(ValueError, match="optimizer"):
        O.get("adagrad")
    with pytest.raises(ValueError, match="learning_rate"):
        O.Adam(learning_rate=-1)


def test_config_round_trip_keeps_schedule():
    opt = O.Adam(learning_rate=O.schedules.ExponentialDecay(0.1, 3, 0.9), amsgrad=True)
    back = O.get(O.serialize(opt))
    assert isinstance(back, O.Adam) and back.amsgrad and back.learning_rate == pytest.approx(0.1)


def test_keras_itself_if_installed():
    keras = pytest.importorskip("keras", reason="TensorFlow/Keras not installed")
    for rule, cls, cfg in CASES:
        kopt = getattr(keras.optimizers, cls.__name__)(**cfg)
        var = keras.Variable(X0.astype(np.float32))
        for _ in range(5):
            g = _grad(np.asarray(var, np.float64)).astype(np.float32)
            kopt.apply([keras.ops.convert_to_tensor(g)], [var])
        # Keras computes Adam/AdamW in float32, including 1 - beta_2**t, which loses ~5
        # digits to cancellation: measured after these 5 steps, Keras is 1.87e-6 away from
        # the exact (float64) rule and our C 2.6e-7 away. So Keras itself is compared at
        # 5e-6 for those two; SGD and RMSprop agree to 1.2e-7 and keep 1e-6. (Our C vs the
        # float64 rule is held to 1e-6 for every optimizer above.)
        atol = 5e-6 if cls in (O.Adam, O.AdamW) else 1e-6
        np.testing.assert_allclose(_c_run(cls(**cfg)), np.asarray(var), rtol=0, atol=atol)
