"""``base.layers``: Keras' MobileNetV2 layers, in Keras' order with Keras' names, mapped onto the
ops of both shared .tflite models by structure; ``trainable`` Keras-style; the fine-tuning
boundary and per-op masks the C training plan reads; parameter counts.

Expected values come from Keras itself where TensorFlow is installed (CI), and otherwise from
numbers written down from Keras 3.15 (``keras.applications.MobileNetV2(weights=None,
include_top=False)``: 154 layers, 2,257,984 params of which 2,223,872 trainable).
"""
import numpy as np
import pytest

import conftest
from tflite_transfer import applications
from tflite_transfer.applications import mobilenet_v2_layers as mvl

WEIGHTS = ["imagenet_ptq", "imagenet_quant"]
FOLDED_PARAMS = 2206816  # 52 folded kernels + 52 biases, MobileNetV2 1.0 without the top
BN_CHANNELS = 17056      # sum of the 52 batch norms' widths (= Keras' 34,112 non-trainable / 2)


def _keras():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow", reason="TensorFlow/Keras not installed")
    return pytest.importorskip("keras", reason="TensorFlow/Keras not installed")


@pytest.fixture(scope="module")
def keras_model():
    keras = _keras()
    return keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))


@pytest.fixture(scope="module", params=WEIGHTS)
def base(request):
    return applications.MobileNetV2(include_top=False, weights=request.param)


# ------------------------------------------------------------------------------------- names
def test_154_layers_with_keras_names_in_keras_order_without_tf(base):
    names = [l.name for l in base.layers]
    assert len(names) == mvl.NUM_LAYERS_NO_TOP == 154
    assert names[:8] == ["input_layer", "Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise",
                         "expanded_conv_depthwise_BN", "expanded_conv_depthwise_relu", "expanded_conv_project"]
    assert names[12] == "block_1_pad" and names[26] == "block_2_add"
    assert names[98:101] == ["block_11_expand", "block_11_expand_BN", "block_11_expand_relu"]
    assert names[-4:] == ["block_16_project_BN", "Conv_1", "Conv_1_bn", "out_relu"]
    assert len(set(names)) == 154


def test_layer_names_and_classes_equal_keras(base, keras_model):
    assert [l.name for l in base.layers] == [l.name for l in keras_model.layers]
    assert [type(l).__name__ for l in base.layers] == [type(l).__name__ for l in keras_model.layers]


@pytest.mark.parametrize("kwargs", [dict(include_top=True), dict(include_top=False, pooling="avg"),
                                    dict(include_top=False, pooling="max")])
def test_layer_names_with_top_or_pooling_equal_keras(kwargs):
    keras = _keras()
    theirs = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), **kwargs)
    ours = applications.MobileNetV2(**kwargs)
    # Keras numbers auto-named layers per process ("global_average_pooling2d_3"): compare the stem.
    strip = lambda n: n.rsplit("_", 1)[0] if n.split("_")[-1].isdigit() and n.startswith(("global", "input")) else n
    assert [l.name for l in ours.layers] == [strip(l.name) for l in theirs.layers]
    assert len(ours.layers) == len(theirs.layers)


# ----------------------------------------------------------------------------------- mapping
def test_each_layer_maps_to_the_op_it_was_folded_into(base):
    ops = base.model.ops
    layers = base.layers
    assert layers[0].op_index is None
    for l in layers[1:]:
        op = ops[l.op_index]
        assert op["type"] == l.op_type
        kind = type(l).__name__
        if kind == "DepthwiseConv2D":
            assert op["type"] == "DEPTHWISE_CONV_2D"
        elif kind == "Conv2D":
            assert op["type"] == "CONV_2D"
        elif kind == "Add":
            assert op["type"] == "ADD"
        elif kind == "ZeroPadding2D":  # Keras pads explicitly before the stride-2 depthwise convs
            assert op["type"] == "DEPTHWISE_CONV_2D" and op["options"]["stride_h"] == 2
            assert op["options"]["padding"] == "SAME"
        elif kind == "ReLU":  # ReLU(6.) fused into the op
            assert op["options"]["activation"] == "RELU6"
        elif kind == "BatchNormalization":
            assert l.bias_tensor == op["inputs"][2]
    # conv, BN (and ReLU) of one unit share its op; 52 conv ops, 10 ADDs, 4 paddings.
    by_kind = {}
    for l in layers[1:]:
        by_kind.setdefault(type(l).__name__, []).append(l)
    assert len(by_kind["Conv2D"]) + len(by_kind["DepthwiseConv2D"]) == 52
    assert (len(by_kind["Add"]), len(by_kind["ZeroPadding2D"]), len(by_kind["ReLU"])) == (10, 4, 35)
    for l in layers:
        if type(l).__name__ in ("Conv2D", "DepthwiseConv2D"):
            bn = layers[layers.index(l) + 1]
            assert type(bn).__name__ == "BatchNormalization" and bn.op_index == l.op_index
    conv_ops = [op["index"] for op in ops if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D")][:52]
    assert sorted(l.op_index for l in layers if type(l).__name__ in ("Conv2D", "DepthwiseConv2D")) == conv_ops


def test_both_models_map_to_the_same_structure_with_different_op_indices():
    ptq = applications.MobileNetV2(include_top=False, weights="imagenet_ptq").layers
    quant = applications.MobileNetV2(include_top=False, weights="imagenet_quant").layers
    assert [l.name for l in ptq] == [l.name for l in quant]
    assert [l.op_type for l in ptq] == [l.op_type for l in quant]
    assert ptq[1].op_index == 1 and quant[1].op_index == 0  # ptq starts with a QUANTIZE op


def test_weights_are_the_ops_tensors_in_keras_layout(base, keras_model):
    layers = base.layers
    for ours, theirs in zip(layers, keras_model.layers):
        w = ours.get_weights()
        if type(ours).__name__ in ("Conv2D", "DepthwiseConv2D"):
            assert len(w) == 1 and w[0].shape == tuple(theirs.kernel.shape), ours.name
            np.testing.assert_array_equal(w[0], base.model.get_tensor(ours.kernel_tensor).transpose(1, 2, 3, 0))
        elif type(ours).__name__ == "BatchNormalization":
            assert len(w) == 1 and w[0].shape == tuple(theirs.beta.shape), ours.name
        else:
            assert w == [] and ours.count_params() == 0


def test_classifier_is_the_dense_predictions_layer():
    top = applications.MobileNetV2(include_top=True)
    dense = top.layers[-1]
    assert dense.name == "predictions" and type(dense).__name__ == "Dense"
    kernel, bias = dense.get_weights()
    assert kernel.shape == (1280, 1001) and bias.shape == (1001,)
    np.testing.assert_array_equal(kernel.T, top.model.get_tensor(dense.kernel_tensor).reshape(1001, 1280))


def test_a_graph_without_mobilenet_v2_structure_names_the_file(tmp_path):
    from tflite_builder import build_model
    rng = np.random.default_rng(0)
    data = build_model(
        tensors=[dict(name="x", shape=[1, 32, 32, 3], dtype="float32"),
                 dict(name="w", shape=[8, 3, 3, 3], dtype="float32", data=rng.normal(size=(8, 3, 3, 3))),
                 dict(name="b", shape=[8], dtype="float32", data=np.zeros(8)),
                 dict(name="f", shape=[1, 16, 16, 8], dtype="float32"),
                 dict(name="axes", shape=[2], dtype="int32", data=np.array([1, 2])),
                 dict(name="p", shape=[1, 1, 1, 8], dtype="float32"),
                 dict(name="wc", shape=[1001, 1, 1, 8], dtype="float32", data=rng.normal(size=(1001, 1, 1, 8))),
                 dict(name="bc", shape=[1001], dtype="float32", data=np.zeros(1001)),
                 dict(name="l", shape=[1, 1, 1, 1001], dtype="float32")],
        operators=[dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                        options=dict(padding="SAME", stride_w=2, stride_h=2, fused_activation_function="RELU")),
                   dict(op="MEAN", inputs=[3, 4], outputs=[5], options=dict(keep_dims=True)),
                   dict(op="CONV_2D", inputs=[5, 6, 7], outputs=[8],
                        options=dict(padding="SAME", stride_w=1, stride_h=1, fused_activation_function="NONE"))],
        inputs=[0], outputs=[8])
    path = tmp_path / "tiny.tflite"
    path.write_bytes(data)
    tiny = applications.MobileNetV2(weights=str(path), include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="tiny.tflite.*MobileNetV2 structure.*Conv1"):
        tiny.layers


# --------------------------------------------------------------------------------- trainable
def test_base_trainable_sets_every_layer_keras_style():
    base = applications.MobileNetV2(include_top=False)
    assert base.trainable and all(l.trainable for l in base.layers)
    base.trainable = False
    assert not any(l.trainable for l in base.layers)
    assert base.first_trainable_op() is None and base.trainable_weights == []
    base.trainable = True
    assert all(l.trainable for l in base.layers)
    assert base.first_trainable_op() == base.layers[1].op_index  # Conv1: the whole network
    assert base._trainable_param_count() == FOLDED_PARAMS


def test_layers_set_before_trainable_is_read_start_from_the_base_state():
    base = applications.MobileNetV2(include_top=False, trainable=False)
    assert not any(l.trainable for l in base.layers)


def test_tutorial_loop_and_fine_tune_from_agree(base):
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    loop = [l.trainable for l in base.layers]
    masks = base.trainable_op_masks()
    base.trainable = False
    base.fine_tune_from(100)
    assert [l.trainable for l in base.layers] == loop and base.trainable
    assert base.trainable_op_masks() == masks
    # Layer 100 is block_11_expand_relu: block 11's expand conv stays frozen, its depthwise trains.
    assert base.layers[100].name == "block_11_expand_relu"
    assert base.first_trainable_op() == base.get_layer("block_11_depthwise").op_index
    assert masks[base.get_layer("block_11_expand").op_index] == (False, False)
    assert masks[base.get_layer("block_11_depthwise").op_index] == (True, True)
    assert len(masks) == 52
    assert sum(k + b for k, b in masks.values()) == 2 * sum(1 for l in base.layers[100:]
                                                            if type(l).__name__ in ("Conv2D", "DepthwiseConv2D"))


def test_masks_separate_kernel_and_bias():
    base = applications.MobileNetV2(include_top=False)
    base.fine_tune_from(99)  # block_11_expand_BN trains, block_11_expand (kernel) does not
    op = base.get_layer("block_11_expand").op_index
    assert base.trainable_op_masks()[op] == (False, True)
    assert base.first_trainable_op() == op
    base.get_layer("block_11_expand_BN").trainable = False
    base.get_layer("block_11_expand").trainable = True
    assert base.trainable_op_masks()[op] == (True, False)
    base.trainable = False  # the base's own flag wins
    base.get_layer("Conv1").trainable = True
    assert base.trainable_op_masks()[op] == (False, False) and base.first_trainable_op() is None


@pytest.mark.parametrize("bad", [-1, 154, 1000, 1.5, True, "100", None])
def test_fine_tune_at_out_of_range_or_wrong_type(bad):
    base = applications.MobileNetV2(include_top=False)
    with pytest.raises(ValueError, match=r"`fine_tune_at` must be an int in \[0, 154\).*Received: fine_tune_at="):
        base.fine_tune_from(bad)


# ------------------------------------------------------------------------------------- counts
def test_folded_parameter_counts_without_tf(base):
    assert base.count_params() == FOLDED_PARAMS == sum(l.count_params() for l in base.layers)
    # Keras: kernels + 4 BN vectors; folded: kernels + 1 bias per BN channel.
    total, trainable, non_trainable = mvl.KERAS_PARAMS_NO_TOP
    assert total == FOLDED_PARAMS + 3 * BN_CHANNELS and non_trainable == 2 * BN_CHANNELS
    assert sum(l.count_params() for l in base.layers if type(l).__name__ == "BatchNormalization") == BN_CHANNELS


@pytest.mark.parametrize("fine_tune_at", [0, 100, 153])
def test_trainable_counts_relate_to_keras_counts(fine_tune_at, keras_model):
    """Keras' trainable count = our folded trainable count + one gamma per trainable BN channel."""
    base = applications.MobileNetV2(include_top=False)
    base.fine_tune_from(fine_tune_at)
    keras_model.trainable = True
    for l in keras_model.layers[:fine_tune_at]:
        l.trainable = False
    theirs = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    gammas = sum(l.count_params() for l in base.layers[fine_tune_at:] if type(l).__name__ == "BatchNormalization")
    assert base._trainable_param_count() == theirs - gammas
    assert sum(w.size for w in base.trainable_weights) == base._trainable_param_count()
    total = sum(int(np.prod(w.shape)) for w in keras_model.weights)
    assert (total, ) == (mvl.KERAS_PARAMS_NO_TOP[0], )


# ----------------------------------------------------------------------- summary and compile
def _model(base):
    from tflite_transfer import Sequential, layers
    return Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(5, activation="softmax")])


def test_summary_counts_trainable_base_layers_keras_style():
    base = applications.MobileNetV2(include_top=False)
    model = _model(base)
    model.build((None, 224, 224, 3))
    head = 1280 * 5 + 5
    for fine_tune_at, want_trainable in ((None, head), (0, FOLDED_PARAMS + head), (100, 1850528 + head)):
        if fine_tune_at is None:
            base.trainable = False
        else:
            base.fine_tune_from(fine_tune_at)
        lines = []
        model.summary(print_fn=lines.append)
        text = "\n".join(lines)
        assert f"Total params: {FOLDED_PARAMS + head:,}" in text
        assert f" Trainable params: {want_trainable:,}" in text
        assert f"Non-trainable params: {FOLDED_PARAMS + head - want_trainable:,}" in text


def test_summary_trainable_count_equals_keras_minus_gammas():
    keras = _keras()
    theirs_base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
    theirs_base.trainable = True
    for l in theirs_base.layers[:100]:
        l.trainable = False
    theirs = keras.Sequential([keras.Input((224, 224, 3)), theirs_base, keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(5, activation="softmax")])
    keras_trainable = sum(int(np.prod(w.shape)) for w in theirs.trainable_weights)
    base = applications.MobileNetV2(include_top=False).fine_tune_from(100)
    model = _model(base)
    model.build((None, 224, 224, 3))
    lines = []
    model.summary(print_fn=lines.append)
    gammas = sum(l.count_params() for l in base.layers[100:] if type(l).__name__ == "BatchNormalization")
    assert f" Trainable params: {keras_trainable - gammas:,}" in "\n".join(lines)


def test_changing_trainable_after_compile_warns_like_keras():
    import warnings
    base = applications.MobileNetV2(include_top=False, trainable=False)
    model = _model(base)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((2, 224, 224, 3), np.uint8), np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.evaluate(x, y, verbose=0)  # unchanged: no warning
    base.get_layer("block_16_project").trainable = True
    with pytest.warns(UserWarning, match=r"recompile.*compile\(.*block_16_project"):
        model.evaluate(x, y, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.evaluate(x, y, verbose=0)  # warned once per change, as Keras
        base.get_layer("block_16_project").trainable = False
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        base.trainable = False
        model.evaluate(x, y, verbose=0)  # recompiled, and setting the same value is no change



def test_keras_layer_classes_follow_the_names(base):
    assert mvl.keras_layer_classes() == [type(l).__name__ for l in base.layers]
    assert mvl.keras_layer_names() == [l.name for l in base.layers]


def test_save_and_load_keep_the_layers_trainable_flags(tmp_path):
    from tflite_transfer.models import load_model
    base = applications.MobileNetV2(include_top=False).fine_tune_from(100)
    model = _model(base)
    model.build((None, 224, 224, 3))
    model.save(tmp_path / "m.ttz")
    back = load_model(tmp_path / "m.ttz").layers[0]
    assert back.trainable and [l.trainable for l in back.layers] == [l.trainable for l in base.layers]
    assert back.trainable_op_masks() == base.trainable_op_masks()
