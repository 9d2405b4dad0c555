"""Keras .h5 weights: MobileNetV2(weights="file.h5", alpha=...) builds the network from the
architecture with batch norm folded, and gives Keras' own pooled features.

Reference: Keras 3 (TensorFlow backend) ``keras.applications.MobileNetV2(weights=None,
alpha=a, input_shape=s, include_top=False, pooling="avg")`` with random, non-trivial
batch-norm statistics (gamma, beta, moving mean, moving variance), run in inference mode.
Tolerance: 1e-4 relative to the largest feature (float32 accumulation order differs).
"""
import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

import tflite_transfer as tt

keras = pytest.importorskip("keras", reason="needs TensorFlow / Keras (CI installs it)")
pytest.importorskip("tensorflow")


def _keras_model(alpha, size, include_top=False, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.applications.MobileNetV2(weights=None, alpha=alpha, input_shape=(size, size, 3),
                                       include_top=include_top, pooling=None if include_top else "avg")
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c).astype(np.float32),
                               rng.normal(0, 0.2, c).astype(np.float32),
                               rng.normal(0, 0.2, c).astype(np.float32),
                               rng.uniform(0.5, 2.0, c).astype(np.float32)])
    return m


def _images(size, n=3, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
@pytest.mark.parametrize("size", [96, 160])
def test_keras3_save_weights_gives_keras_features(tmp_path, alpha, size):
    km = _keras_model(alpha, size)
    path = tmp_path / "m.weights.h5"
    km.save_weights(str(path))
    x = _images(size)
    expected = km.predict(keras.applications.mobilenet_v2.preprocess_input(x.astype(np.float32)), verbose=0)
    ours = tt.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=str(path),
                                       include_top=False, pooling="avg")
    got = np.full(expected.shape, np.nan, np.float32)
    got[...] = ours.predict(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("alpha,size", [(0.5, 128), (1.0, 224)])
def test_legacy_h5_with_top_gives_keras_probabilities(tmp_path, alpha, size):
    """The Keras 2 / applications-download layout (one group per layer name), with the classifier."""
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    km = _keras_model(alpha, size, include_top=True, seed=3)
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, km)
    x = _images(size, seed=4)
    expected = km.predict(keras.applications.mobilenet_v2.preprocess_input(x.astype(np.float32)), verbose=0)
    ours = tt.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=str(path), include_top=True)
    assert ours.output_shape == (None, 1000)
    np.testing.assert_allclose(ours.predict(x), expected, rtol=0, atol=1e-5)


def test_wrong_alpha_names_the_layer(tmp_path):
    km = _keras_model(0.5, 96)
    path = tmp_path / "m.weights.h5"
    km.save_weights(str(path))
    with pytest.raises(ValueError, match="Conv1"):
        tt.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.75, weights=str(path), include_top=False)


def test_missing_layer_is_named(tmp_path):
    import h5py

    km = _keras_model(0.35, 96)
    path = tmp_path / "m.h5"
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, km)
    with pytest.raises(ValueError, match="predictions"):  # saved without the top
        tt.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=str(path), include_top=True)
    with h5py.File(path, "a") as f:
        names = [n for n in f.attrs["layer_names"] if n not in (b"block_5_project_BN", "block_5_project_BN")]
        f.attrs["layer_names"] = names
    with pytest.raises(ValueError, match="block_5_project_BN"):
        tt.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=str(path), include_top=False)
