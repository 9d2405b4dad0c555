"""Keras' MobileNetV2 carrying a .tflite model's weights: loss and gradients of one batch, the
reference for the C backward pass of fine-tuning (needs TensorFlow; tests skip without it).

The .tflite graphs fold batch norm into each convolution (kernel and bias). Loaded into
``keras.applications.MobileNetV2`` (Keras' own graph: explicit ZeroPadding2D, ReLU(6.),
linear bottlenecks, residual adds), every BatchNormalization becomes ``x + bias``: gamma 1,
beta = the folded bias, moving mean 0, moving variance ``1 - epsilon``; in inference mode
(``training=False``, the Keras-recommended setting for fine-tuning) the gradient w.r.t. beta is
then the gradient w.r.t. the folded bias, and the gradient w.r.t. a conv kernel the gradient
w.r.t. the folded kernel. Layers are matched by Keras name through our ``base.layers`` (so a
wrong mapping shows up as different features; ``tests/test_keras_grad.py``).

Typical use (core's tests)::

    import keras_grad
    ref = keras_grad.loss_and_grads(base, x, y, head_kernel, head_bias, fine_tune_at=100)
    ref["loss"]                       # float, mean sparse categorical cross-entropy
    ref["grads"]["block_16_project"]  # {"kernel": (1, 1, 960, 320)} Keras layout
    ref["grads"]["block_16_project_BN"]  # {"beta": (320,)} = d loss / d folded bias
    ref["by_op"][op_index]            # (d kernel, d bias) in .tflite layout, None if frozen
    ref["head"]                       # {"kernel": (1280, C), "bias": (C,)}
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

__all__ = ["keras_mobilenet_v2", "loss_and_grads", "to_tflite_layout"]


def _keras():
    import keras  # noqa: F401  (TensorFlow backend)
    return keras


def keras_mobilenet_v2(base, dtype="float32"):
    """keras.applications.MobileNetV2(include_top=False, weights=None) at `base`'s input size,
    carrying `base`'s folded weights (see the module docstring).

    Args:
      base: tflite_transfer MobileNetV2Model (include_top=False).
      dtype: "float32" or "float64" (Keras' floatx while building; float64 gives a more exact
        reference).
    Returns: the Keras functional model (154 layers).
    Raises: ValueError when a layer name or kernel shape does not match.
    """
    keras = _keras()
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=base.input_shape[1:])
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(old_policy)
    names = [l.name for l in model.layers]
    ours = base.layers
    # The input layer is auto-named per process ("input_layer_3"); the others are fixed.
    if names[1:] != [l.name for l in ours][1:]:
        raise ValueError("Keras' MobileNetV2 layer names differ from base.layers")
    for mine, theirs in zip(ours, model.layers):
        kind = type(mine).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            (kernel,) = mine.get_weights()
            if kernel.shape != tuple(theirs.kernel.shape):
                raise ValueError(f"{mine.name}: kernel {kernel.shape} vs Keras {tuple(theirs.kernel.shape)}")
            theirs.set_weights([kernel.astype(dtype)])
        elif kind == "BatchNormalization":
            (bias,) = mine.get_weights()
            bias = bias.astype(dtype)
            theirs.set_weights([np.ones_like(bias), bias, np.zeros_like(bias),
                                np.full_like(bias, 1.0 - theirs.epsilon)])
    return model


def to_tflite_layout(kernel):
    """Keras conv kernel (KH, KW, I, O) / depthwise (KH, KW, C, 1) -> .tflite (O, KH, KW, I) /
    (1, KH, KW, C)."""
    return np.ascontiguousarray(np.asarray(kernel).transpose(3, 0, 1, 2))


def loss_and_grads(base, x, y, head_kernel, head_bias, fine_tune_at=100, dtype="float32", model=None):
    """Loss and gradients of one batch through Keras: base -> GlobalAveragePooling2D -> Dense(softmax)
    -> SparseCategoricalCrossentropy (mean over the batch), batch norm in inference mode.

    Args:
      base: tflite_transfer MobileNetV2Model, include_top=False (its trainable flags are not used).
      x: (N, H, W, 3) float, preprocessed to [-1, 1] (``preprocess_input``).
      y: (N,) int class indices in [0, C).
      head_kernel, head_bias: the Dense head, (1280, C) and (C,) (our Dense's layout too).
      fine_tune_at (int): Keras' ``for layer in base.layers[:fine_tune_at]: layer.trainable = False``
        after ``base.trainable = True``; 0 = the whole network.
      dtype: "float32" or "float64" for Keras' computation.
      model: a model from keras_mobilenet_v2(base, dtype) to reuse (building one takes seconds).

    Returns dict:
      loss (float); features (N, 1280) pooled base output; probs (N, C);
      grads {Keras layer name: {"kernel": Keras layout} | {"beta": (C,)}} for every trainable
        conv / batch-norm layer at or after fine_tune_at (gamma's gradient is left out: folded,
        gamma has no counterpart);
      by_op {op index: (d kernel in .tflite layout or None, d bias or None)} for every base op
        with a trainable kernel or bias;
      head {"kernel": (1280, C), "bias": (C,)}.
    """
    import tensorflow as tf

    keras = _keras()
    if model is None:
        model = keras_mobilenet_v2(base, dtype)
    model.trainable = True
    for l in model.layers[:fine_tune_at]:
        l.trainable = False
    x = tf.constant(np.asarray(x, dtype))
    y = tf.constant(np.asarray(y, np.int64))
    hk = tf.Variable(np.asarray(head_kernel, dtype))
    hb = tf.Variable(np.asarray(head_bias, dtype))
    want = []  # (layer, attribute, variable)
    for l in model.layers[fine_tune_at:]:
        if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            want.append((l, "kernel", l.kernel))
        elif isinstance(l, keras.layers.BatchNormalization):
            want.append((l, "beta", l.beta))
    variables = [v for _, _, v in want] + [hk, hb]
    with tf.GradientTape() as tape:
        feats = tf.reduce_mean(model(x, training=False), axis=(1, 2))
        probs = tf.nn.softmax(tf.matmul(feats, hk) + hb)
        loss = keras.losses.SparseCategoricalCrossentropy(dtype=dtype)(y, probs)
    g = tape.gradient(loss, variables)
    grads = {}
    for (l, attr, _), gv in zip(want, g):
        grads.setdefault(l.name, {})[attr] = np.asarray(gv)
    by_name = {l.name: l for l in base.layers}
    by_op = {}
    for name, d in grads.items():
        ours = by_name[name]
        k, b = by_op.get(ours.op_index, (None, None))
        if "kernel" in d:
            k = to_tflite_layout(d["kernel"])
        if "beta" in d:
            b = d["beta"]
        by_op[ours.op_index] = (k, b)
    return dict(loss=float(loss), features=np.asarray(feats), probs=np.asarray(probs), grads=grads, by_op=by_op,
                head={"kernel": np.asarray(g[-2]), "bias": np.asarray(g[-1])})
