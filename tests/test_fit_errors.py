"""Bad input gives clear errors that name the argument, and leaves the model untouched."""
import numpy as np
import pytest

import tflite_transfer as tt
from tflite_transfer import layers as L


def _model(units=3, activation="softmax"):
    L.set_random_seed(0)
    return tt.Sequential([L.Dense(units, activation=activation)])


def _compiled(loss="sparse_categorical_crossentropy", **kw):
    m = _model(**kw)
    m.compile("adam", loss, ["accuracy"])
    return m


X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
Y = np.arange(10) % 3


def test_fit_before_compile_raises_runtime_error():
    with pytest.raises(RuntimeError, match="compile"):
        _model().fit(X, Y, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        _model().evaluate(X, Y, verbose=0)


@pytest.mark.parametrize("y,match", [
    (np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]), r"outside \[0, 3\).*max=3"),
    (np.array([0, 1, -1, 0, 0, 1, 2, 0, 1, 2]), r"outside \[0, 3\).*min=-1"),
    (Y.astype(np.float32), "integer class indices.*float32"),
])
def test_bad_sparse_labels(y, match):
    with pytest.raises(ValueError, match=match):
        _compiled().fit(X, y, verbose=0)


def _built_compiled():
    """A compiled model that has weights (compile alone builds nothing: fit builds lazily)."""
    m = _compiled()
    m.build((None, 4))
    assert m.built and len(m.get_weights()) == 2
    return m


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2])), r"outside \[0, 3\)"),
    (dict(y=Y.astype(np.float32)), "integer class indices"),
    (dict(y=Y[:9]), "same length"),
    (dict(x=np.where(np.arange(40).reshape(10, 4) == 13, np.nan, X).astype(np.float32)), "NaN"),
    (dict(class_weight={0: 1.0, 5: 2.0}), "class_weight"),
    (dict(validation_split=0.95), "validation_split"),
    (dict(x=X[:, :3]), r"shape \(N,\) \+ \(4,\)"),
])
def test_bad_input_to_fit_leaves_a_built_model_untouched(kwargs, match):
    m = _built_compiled()
    weights, iterations = [w.copy() for w in m.get_weights()], m.optimizer.iterations
    args = {"x": X, "y": Y, **kwargs}
    with pytest.raises(ValueError, match=match):
        m.fit(args.pop("x"), args.pop("y"), verbose=0, **args)
    assert m.optimizer.iterations == iterations
    for a, b in zip(weights, m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # and the model still trains afterwards
    m.fit(X, Y, epochs=1, verbose=0)
    assert m.optimizer.iterations > iterations


def test_x_and_y_of_different_lengths():
    with pytest.raises(ValueError, match=r"same length.*len\(x\)=10, len\(y\)=9"):
        _compiled().fit(X, Y[:9], verbose=0)


def test_empty_arrays():
    with pytest.raises(ValueError, match="`x` is empty"):
        _compiled().fit(X[:0], Y[:0], verbose=0)


def test_nan_in_x():
    x = X.copy()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        _compiled().fit(x, Y, verbose=0)
    with pytest.raises(ValueError, match="`x` contains"):
        _compiled().predict(x, verbose=0)


@pytest.mark.parametrize("cw", [{0: 1.0, 5: 2.0}, {"a": 1.0}, {0: -1.0}])
def test_class_weight_keys_must_be_classes(cw):
    with pytest.raises(ValueError, match="class_weight"):
        _compiled().fit(X, Y, class_weight=cw, verbose=0)


@pytest.mark.parametrize("split", [1e-18, 0.95])  # no validation sample / no training sample
def test_validation_split_leaving_an_empty_side(split):
    with pytest.raises(ValueError, match="validation_split.*empty"):
        _compiled().fit(X, Y, validation_split=split, verbose=0)


def test_validation_split_out_of_range_and_on_a_dataset():
    with pytest.raises(ValueError, match="validation_split"):
        _compiled().fit(X, Y, validation_split=1.0, verbose=0)

    class DS:
        def __len__(self):
            return 1

        def __iter__(self):
            yield X, Y

    with pytest.raises(ValueError, match="validation_split.*NumPy arrays"):
        _compiled().fit(DS(), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="`y` must be None"):
        _compiled().fit(DS(), Y, verbose=0)


def test_bad_validation_data_labels():
    with pytest.raises(ValueError, match="validation_data\\[1\\]"):
        _compiled().fit(X, Y, validation_data=(X, Y + 5), verbose=0)


@pytest.mark.parametrize("kw,match", [
    (dict(batch_size=0), "batch_size"), (dict(epochs=0), "epochs"), (dict(verbose=3), "verbose"),
    (dict(epochs=2, initial_epoch=2), "initial_epoch"),
])
def test_bad_fit_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _compiled().fit(X, Y, **kw)


def test_one_hot_labels_with_a_sparse_loss_and_vice_versa():
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        _compiled().fit(X, np.eye(3)[Y], verbose=0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        _compiled("categorical_crossentropy").fit(X, Y, verbose=0)


def test_output_activation_must_match_the_loss():
    m = _model(activation=None)
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="from_logits=True"):
        m.fit(X, Y, verbose=0)
    m = tt.Sequential([L.Dense(3, activation="softmax"), L.Flatten()])
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="must end with a Dense"):
        m.fit(X, Y, verbose=0)


def test_bad_compile_and_layer_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        _model().compile("adagrad", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="loss"):
        _model().compile("adam")
    with pytest.raises(ValueError, match="units"):
        L.Dense(0)
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="kernel_regularizer"):
        L.Dense(2, kernel_regularizer="l3")


def test_arrays_of_another_feature_shape_name_the_argument_and_both_shapes():
    import numpy as np
    import pytest

    import tflite_transfer as tt

    x = np.zeros((40, 8), np.float32)
    y = np.arange(40) % 3
    m = tt.Sequential([tt.layers.Dense(3, activation="softmax", seed=0)])
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"`validation_data\[0\]` must have shape .*\(None, 8\).*shape=\(40, 4\)"):
        m.fit(x, y, validation_data=(x[:, :4], y), verbose=0)
    m.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"`x` must have shape .*Received: x.shape=\(40, 5\)"):
        m.predict(x[:, :5], verbose=0)
