"""Optimizers with Keras 3's defaults and update rules; updates run in C (csrc/train/optim.c).

``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and the learning-rate schedules
``schedules.ExponentialDecay`` and ``schedules.CosineDecay``. Strings "sgd",
"adam", "adamw", "rmsprop" give the defaults. As in Keras 3, the learning rate
of step ``iterations`` (0-based) is ``schedule(iterations)``, decoupled weight
decay (``weight_decay``, AdamW) runs before the update as
``var -= var * weight_decay * lr``, and ``iterations`` grows by one per
``apply``. Variables are float32 C-contiguous NumPy arrays updated in place;
the optimizer keeps its slots (momentum, moments) per variable position.
"""
import math
import types

import numpy as np

from . import _core


class LearningRateSchedule:
    """Base of schedules: ``schedule(step) -> float`` learning rate at 0-based `step`."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return dict(self._config)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floor of the ratio when staircase).

    Args: initial_learning_rate (float > 0), decay_steps (int > 0), decay_rate (float > 0), staircase (bool).
    Keras' ``optimizers.schedules.ExponentialDecay``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        if decay_steps <= 0:
            raise ValueError(f"`decay_steps` must be > 0. Received: decay_steps={decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self._config = dict(initial_learning_rate=self.initial_learning_rate, decay_steps=decay_steps,
                            decay_rate=self.decay_rate, staircase=self.staircase, name=name)

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class CosineDecay(LearningRateSchedule):
    """Cosine decay with optional linear warmup, Keras' ``optimizers.schedules.CosineDecay``.

    Without warmup: ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)``.
    With ``warmup_steps`` and ``warmup_target``: linear from lr0 to warmup_target over warmup_steps,
    then the decay above starting from warmup_target.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        if decay_steps <= 0:
            raise ValueError(f"`decay_steps` must be > 0. Received: decay_steps={decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.alpha = float(alpha)
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps
        self._config = dict(initial_learning_rate=self.initial_learning_rate, decay_steps=decay_steps,
                            alpha=self.alpha, name=name, warmup_target=warmup_target, warmup_steps=warmup_steps)

    def _decay(self, step, lr):
        step = min(step, self.decay_steps)
        cos = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return lr * ((1.0 - self.alpha) * cos + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.initial_learning_rate + frac * (self.warmup_target - self.initial_learning_rate)
        return self._decay(step - self.warmup_steps, self.warmup_target)


schedules = types.SimpleNamespace(LearningRateSchedule=LearningRateSchedule, ExponentialDecay=ExponentialDecay,
                                  CosineDecay=CosineDecay)


def _check_float(name, v, lo=None, hi=None, lo_open=False):
    v = float(v)
    ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        raise ValueError(f"`{name}` out of range. Received: {name}={v}")
    return v


class Optimizer:
    """Base class. ``learning_rate`` is a float or a LearningRateSchedule; ``iterations`` counts applies.

    Reading ``optimizer.learning_rate`` gives the float rate of the current step;
    assigning a float replaces it (ReduceLROnPlateau does this).
    """

    _slot_names = ()

    def __init__(self, learning_rate, weight_decay=None, name=None):
        self._lr = None
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else _check_float("weight_decay", weight_decay, 0.0)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = None  # list (per variable) of dict slot name -> float32 array

    @property
    def learning_rate(self):
        if isinstance(self._lr, LearningRateSchedule):
            return float(self._lr(self.iterations))
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule):
            self._lr = value
        else:
            self._lr = _check_float("learning_rate", value, 0.0)

    def build(self, variables):
        """Creates zeroed slots for `variables` (list of float32 arrays)."""
        self._slots = [{s: np.zeros_like(v) for s in self._active_slots()} for v in variables]
        self._shapes = [v.shape for v in variables]

    def _active_slots(self):
        return self._slot_names

    def apply(self, grads, variables):
        """One step: updates each float32 array of `variables` in place from `grads` (same shapes).

        Raises ValueError if the lists differ in length or shapes.
        """
        if len(grads) != len(variables):
            raise ValueError(f"`grads` and `variables` differ in length: {len(grads)} != {len(variables)}")
        if self._slots is None or [v.shape for v in variables] != self._shapes:
            self.build(variables)
        lr = self.learning_rate
        for g, v, slots in zip(grads, variables, self._slots):
            if g.shape != v.shape:
                raise ValueError(f"Gradient shape {g.shape} differs from variable shape {v.shape}.")
            g = np.ascontiguousarray(g, np.float32)
            if self.weight_decay:
                _core.weight_decay_update(v, lr, self.weight_decay)
            self._update(v, g, slots, lr)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars):
        """Keras spelling: ``apply_gradients(zip(grads, variables))``."""
        gv = list(grads_and_vars)
        self.apply([g for g, _ in gv], [v for _, v in gv])

    def get_config(self):
        lr = self._lr
        lr = {"class_name": type(lr).__name__, "config": lr.get_config()} if isinstance(lr, LearningRateSchedule) else lr
        return dict(name=self.name, learning_rate=lr, weight_decay=self.weight_decay, **self._extra_config())

    def _extra_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = {"ExponentialDecay": ExponentialDecay,
                                       "CosineDecay": CosineDecay}[lr["class_name"]](**lr["config"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} learning_rate={self._lr!r} iterations={self.iterations}>"


class SGD(Optimizer):
    """Keras ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``.

    momentum 0: ``var -= lr g``; else ``m = momentum m - lr g`` and ``var += m``
    (nesterov: ``var += momentum m - lr g``). momentum in [0, 1].
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, name="SGD"):
        super().__init__(learning_rate, weight_decay, name)
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _active_slots(self):
        return ("m",) if self.momentum else ()

    def _update(self, v, g, s, lr):
        _core.sgd_update(v, g, s.get("m"), lr, self.momentum, self.nesterov)

    def _extra_config(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov)


class Adam(Optimizer):
    """Keras ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)``.

    Step t = iterations + 1: ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``;
    ``m += (g - m)(1 - b1)``; ``v += (g^2 - v)(1 - b2)``; amsgrad uses
    ``vhat = max(vhat, v)`` for v; ``var -= alpha m / (sqrt(v) + epsilon)``.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, name="adam"):
        super().__init__(learning_rate, weight_decay, name)
        self.beta_1 = _check_float("beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _check_float("beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _check_float("epsilon", epsilon, 0.0)
        self.amsgrad = bool(amsgrad)

    def _active_slots(self):
        return ("m", "v", "vhat") if self.amsgrad else ("m", "v")

    def _update(self, v, g, s, lr):
        _core.adam_update(v, g, s["m"], s["v"], s.get("vhat"), lr, self.beta_1, self.beta_2, self.epsilon,
                          self.iterations + 1)

    def _extra_config(self):
        return dict(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, amsgrad=self.amsgrad)


class AdamW(Adam):
    """Keras ``AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
    amsgrad=False)``: Adam plus decoupled weight decay ``var -= var * weight_decay * lr`` before each
    update (Loshchilov & Hutter), on every trained variable (kernels and biases, as Keras by default)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adamw"):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, name)


class RMSprop(Optimizer):
    """Keras ``RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)``.

    ``vel = rho vel + (1 - rho) g^2``; centered: ``avg = rho avg + (1 - rho) g`` and
    ``den = vel - avg^2 + eps`` else ``den = vel + eps``; ``inc = lr g / sqrt(den)``;
    momentum: ``mom = momentum mom + inc; var -= mom`` else ``var -= inc``.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, name="rmsprop"):
        super().__init__(learning_rate, weight_decay, name)
        self.rho = _check_float("rho", rho, 0.0, 1.0)
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_float("epsilon", epsilon, 0.0)
        self.centered = bool(centered)

    def _active_slots(self):
        return ("vel",) + (("mom",) if self.momentum > 0 else ()) + (("avg",) if self.centered else ())

    def _update(self, v, g, s, lr):
        _core.rmsprop_update(v, g, s["vel"], s.get("mom"), s.get("avg"), lr, self.rho, self.momentum,
                             self.epsilon)

    def _extra_config(self):
        return dict(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier):
    """An Optimizer from an Optimizer, a name ("sgd", "adam", "adamw", "rmsprop") or
    {"class_name", "config"}. ValueError naming `optimizer` otherwise."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict):
        cls = {c.__name__: c for c in _BY_NAME.values()}.get(identifier.get("class_name"))
        if cls is not None:
            return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"`optimizer` must be one of {sorted(_BY_NAME)} or an Optimizer instance. "
                     f"Received: optimizer={identifier!r}")


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
