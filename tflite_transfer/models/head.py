"""The classifier head of a ``Sequential``: trailing Dense / Dropout layers run
and trained with the C kernels (oneDNN inner products, fused softmax or sigmoid
cross-entropy, dropout, L2); the optimizer update is the Optimizer's ``apply``.
Used by the training loop (``trainer.py``).
"""
import numpy as np

from .. import _core
from ..layers.core import Dense, Dropout, _PlanCache

class _Head:
    """Runs the trailing Dense / Dropout layers with the C kernels."""

    def __init__(self, layers, loss):
        self.layers = layers
        self.loss = loss
        last = layers[-1]
        act = last.activation
        kind = loss.kind
        ok = ((kind in ("sparse_categorical", "categorical") and
               ((act == "softmax" and not loss.from_logits) or (act is None and loss.from_logits))) or
              (kind == "binary" and ((act == "sigmoid" and not loss.from_logits) or (act is None and loss.from_logits))))
        if not ok:
            want = "softmax" if kind != "binary" else "sigmoid"
            raise ValueError(f"The last Dense layer {last.name!r} has activation={act!r} but the loss is "
                             f"{loss.name}(from_logits={loss.from_logits}). Use activation='{want}' with "
                             f"from_logits=False, or activation=None with from_logits=True.")
        for l in layers[:-1]:
            if isinstance(l, Dense) and l.activation not in (None, "relu"):
                raise ValueError(f"Hidden Dense layer {l.name!r}: activation must be None or 'relu' for training. "
                                 f"Received: {l.activation!r}")
        self._loss_fwd = _core.sigmoid_bce_forward if kind == "binary" else _core.softmax_xent_forward
        self._loss_bwd = _core.sigmoid_bce_backward if kind == "binary" else _core.softmax_xent_backward
        self._plans = {}

    def _plan(self, l, n):
        cache = self._plans.get(id(l))
        if cache is None:
            cache = self._plans[id(l)] = _PlanCache(limit=6)
        return cache.get(n, l.kernel.shape[0], l.units)

    def forward(self, x, training):
        """(logits before the final activation (n, C) float32, tape for backward)."""
        x = np.ascontiguousarray(x, np.float32)
        tape = []
        last = self.layers[-1]
        for l in self.layers:
            if isinstance(l, Dense):
                z = np.empty((len(x), l.units), np.float32)
                self._plan(l, len(x)).forward(x, l.kernel, l.bias, z)
                if l.activation == "relu" and l is not last:
                    _core.relu_forward(z, z)
                tape.append(("dense", l, x, z))
                x = z
            elif isinstance(l, Dropout) and training and l.rate > 0:
                y = np.empty_like(x)
                mask = np.empty(x.shape, np.uint8)
                _core.dropout_forward(x, l.rate, l.next_seed(), y, mask)
                tape.append(("dropout", l, mask))
                x = y
        return x, tape

    def outputs(self, logits):
        """Model outputs from logits: the final activation applied (a new array)."""
        out = logits.copy()
        act = self.layers[-1].activation
        if act == "softmax":
            _core.softmax_forward(out, out)
        elif act == "sigmoid":
            _core.sigmoid_forward(out, out)
        return out

    def regularization(self):
        total = 0.0
        for l in self.layers:
            if isinstance(l, Dense) and l.kernel_regularizer is not None:
                total += _core.l2_forward(l.kernel, l.kernel_regularizer.l2)
        return total

    def loss_value(self, logits, targets, sample_weight):
        """(mean loss + regularization (float), probabilities/sigmoids (n, C))."""
        probs = np.empty_like(logits)
        s = self._loss_fwd(logits, targets, sample_weight, self.loss.label_smoothing, probs)
        return s / len(logits) + self.regularization(), probs

    def train_step(self, x, targets, sample_weight, optimizer, input_backward=None):
        """One optimizer step on a batch; returns (loss, model outputs (n, C)).

        input_backward: None, or a function dL/dx (n, F) float32 -> (grads, variables) of the
        layers before the head (fine-tuning the base): their gradients join the head's in the
        same ``optimizer.apply``, as Keras' single optimizer step over all trainable variables."""
        n = len(x)
        logits, tape = self.forward(x, training=True)
        loss, probs = self.loss_value(logits, targets, sample_weight)
        d = np.empty_like(logits)
        self._loss_bwd(probs, targets, sample_weight, self.loss.label_smoothing, 1.0 / n, d)
        grads, variables = [], []
        first_dense = next(i for i, t in enumerate(tape) if t[0] == "dense")
        for i in range(len(tape) - 1, -1, -1):
            t = tape[i]
            if t[0] == "dropout":
                _core.dropout_backward(d, t[2], t[1].rate, d)
                continue
            _, l, xin, z = t
            if l.activation == "relu" and l is not self.layers[-1]:
                _core.relu_backward(d, z, d)
            dk = np.empty_like(l.kernel)
            db = np.empty_like(l.bias)
            dx = np.empty_like(xin) if (i > first_dense or input_backward is not None) else None
            self._plan(l, n).backward(d, xin, l.kernel, dx, dk, db)
            if l.kernel_regularizer is not None:
                _core.l2_backward(l.kernel, l.kernel_regularizer.l2, dk)
            if l.trainable:
                grads.append(dk)
                variables.append(l.kernel)
                if l.use_bias:
                    grads.append(db)
                    variables.append(l.bias)
            d = dx
            if d is None:
                break  # nothing before the first Dense needs a gradient
        if input_backward is not None:
            more_grads, more_vars = input_backward(d)
            grads += more_grads
            variables += more_vars
        if variables:
            optimizer.apply(grads, variables)
        return loss, probs

