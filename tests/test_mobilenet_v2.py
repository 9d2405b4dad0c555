"""MobileNetV2 on the shared pretrained models: real photos, parity with the
float64 reference, output shapes, Keras-compatible helpers, weights registry.

Photos are loaded with Pillow and resized to 224x224 with Pillow's BILINEAR
filter: not bit-identical to TF's resize, but the expected top-1 classes of
../shared/README.md hold with it (they are far from their runners-up), which is
all these tests need.

Parity tolerance (stated in the issue): ``max|ours - ref| <= 1e-4 * max|ref|``
for the pooled features, the logits and the probabilities, float32 engine vs
float64 reference over 66 ops.
"""
import hashlib
import os
import shutil

import numpy as np
import pytest

import conftest
import reference
import tflite_transfer
from tflite_transfer import applications
from tflite_transfer.applications import mobilenet_v2 as mv
from tflite_transfer.layers.base import Layer

MODELS = {"quant": conftest.QUANT_MODEL, "ptq": conftest.PTQ_MODEL}
WEIGHTS_KEY = {"quant": "imagenet_quant", "ptq": "imagenet_ptq"}
# ../shared/README.md: expected top-1 index in imagenet_labels.txt (1001 classes).
PHOTOS = conftest.PHOTO_TOP1
PARITY = 1e-4


@pytest.fixture(scope="module")
def photos():
    """The 5 shared photos, uint8 (5, 224, 224, 3), in PHOTOS order."""
    return conftest.shared_photos_224()


@pytest.fixture(scope="module")
def random_batch():
    """32 random preprocessed images, float32 in [-1, 1]."""
    return np.random.default_rng(0).uniform(-1, 1, size=(32, 224, 224, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=["ptq", "quant"])
def which(request):
    return request.param


@pytest.fixture(scope="module")
def ref_results(which, photos, random_batch):
    """Reference outputs (float64), computed once per model for the whole module:
    {"photos"|"random": {"pooled", "logits", "probs"}}. The float64 reference
    takes ~0.5 s per image on the shared 2-core machine, so the batch of 32
    random images is run for the default model only; the other gets 3."""
    ref = reference.ReferenceModel(MODELS[which])
    pooled, logits, probs = reference.pooled_feature_tensor(ref), reference.logits_tensor(ref), ref.outputs[0]
    out = {}
    n_random = 32 if MODELS[which].name == mv.DEFAULT_IMAGENET_MODEL else 3
    for key, x in (("photos", mv.preprocess_input(photos)), ("random", random_batch[:n_random])):
        r = ref.run(x, [pooled, logits, probs])
        out[key] = dict(pooled=r[pooled].reshape(len(x), -1), logits=r[logits].reshape(len(x), -1),
                        probs=r[probs])
    return out


def _assert_parity(ours, ref, what):
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    assert np.isfinite(ours).all(), f"{what}: non-finite values (an unwritten element?)"
    err = np.abs(ours.astype(np.float64) - ref).max()
    scale = np.abs(ref).max()
    assert err <= PARITY * scale, f"{what}: max|ours - ref| = {err:.3g} > {PARITY} * {scale:.3g}"


# -- real photos ------------------------------------------------------------------------
def test_top1_on_shared_photos(which, photos):
    model = applications.MobileNetV2(weights=WEIGHTS_KEY[which])
    probs = model.predict(photos)
    assert probs.shape == (5, 1001) and probs.dtype == np.float32
    assert list(probs.argmax(axis=1)) == list(PHOTOS.values())
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_decode_predictions_names_the_photos(photos):
    probs = applications.MobileNetV2().predict(photos)
    top = mv.decode_predictions(probs, top=3)
    assert [t[0][1] for t in top] == ["military uniform", "Egyptian cat", "chickadee",
                                      "dragonfly, darning needle, devil's darning needle, sewing needle, "
                                      "snake feeder, snake doctor, mosquito hawk, skeeter hawk", "daisy"]
    assert [t[0][0] for t in top] == [str(i) for i in PHOTOS.values()]


# -- parity with the float64 reference -------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3])
def test_parity_photos(which, photos, ref_results, batch_size):
    """Public API, engine batches of 1 and 3 (5 photos: 3 + a partial 2)."""
    want = ref_results["photos"]
    base = applications.MobileNetV2(weights=WEIGHTS_KEY[which], include_top=False, pooling="avg")
    top = applications.MobileNetV2(weights=WEIGHTS_KEY[which])
    _assert_parity(base.predict(photos, batch_size=batch_size), want["pooled"], "pooled")
    _assert_parity(top.predict(photos, batch_size=batch_size), want["probs"], "probabilities")


def test_parity_photos_logits_per_image(which, photos, ref_results):
    """The engine's own run() on the logits tensor, one image at a time into a
    NaN-filled output."""
    model = applications.MobileNetV2(weights=WEIGHTS_KEY[which])
    x = mv.preprocess_input(photos)
    out = np.full((5, 1001), np.nan, np.float32)
    for i in range(5):
        out[i] = model.model.run(np.ascontiguousarray(x[i:i + 1]), model.logits_tensor).reshape(-1)
    _assert_parity(out, ref_results["photos"]["logits"], "logits")


def test_parity_random_batch(which, random_batch, ref_results):
    """One engine run over the whole random batch: 32 images (default model) or 3."""
    want = ref_results["random"]
    n = len(want["probs"])
    x = random_batch[:n]
    model = applications.MobileNetV2(weights=WEIGHTS_KEY[which])
    out = {k: np.full(want[k].shape, np.nan, np.float32) for k in want}
    out["probs"][:] = model.predict(x, batch_size=n)
    base = applications.MobileNetV2(weights=WEIGHTS_KEY[which], include_top=False)
    out["pooled"][:] = base.predict(x, batch_size=n, pooling="avg")
    out["logits"][:] = model.model.run(x, model.logits_tensor).reshape(n, -1)
    for k in ("pooled", "logits", "probs"):
        _assert_parity(out[k], want[k], k)


def test_batches_agree(random_batch):
    """Batch composition does not change results: 4 at once == 3 + a partial 1."""
    model = applications.MobileNetV2(include_top=False, pooling="avg")
    a = model.predict(random_batch[:4], batch_size=4)
    b = model.predict(random_batch[:4], batch_size=3)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max())


# -- graph analysis ---------------------------------------------------------------------
def test_feature_tensors_found_by_graph_analysis(which):
    model = applications.MobileNetV2(weights=WEIGHTS_KEY[which])
    ref = reference.ReferenceModel(MODELS[which])
    assert model.feature_tensor == reference.pooled_feature_tensor(ref)
    # The softmax's input is the classifier's output, or a RESHAPE of it.
    ref_logits = reference.logits_tensor(ref)
    ref_producer = {op["outputs"][0]: op for op in ref.ops}
    assert model.logits_tensor in (ref_logits, ref_producer[ref_logits]["inputs"][0])
    assert ref_producer[model.logits_tensor]["type"] == "CONV_2D"
    t = model.model.tensors
    assert tuple(t[model.feature_tensor]["shape"])[-1] == 1280
    assert tuple(t[model.feature_map_tensor]["shape"]) == (1, 7, 7, 1280)
    info = model.inspect()
    assert info["model"] is model.model and info["feature_tensor"] == model.feature_tensor
    producer = {op["outputs"][0]: op for op in info["ops"]}
    assert producer[model.feature_tensor]["type"] in ("MEAN", "AVERAGE_POOL_2D")
    assert producer[model.feature_tensor]["inputs"][0] == model.feature_map_tensor


def test_dequantized_constants_match_reference(which):
    """Every constant the C reader dequantizes equals the reference's own dequantization."""
    core = tflite_transfer._core.Model(MODELS[which].read_bytes(), name=str(MODELS[which]))
    ref = reference.ReferenceModel(MODELS[which])
    n = 0
    for t in core.tensors:
        want = ref.constant(t["index"])
        assert t["is_constant"] == (want is not None), t["name"]
        if want is None:
            continue
        got = np.asarray(core.get_tensor(t["index"]), np.float64)
        assert got.shape == want.shape, t["name"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), err_msg=t["name"])
        n += 1
    assert n > 100


# -- shapes, include_top / pooling ----------------------------------------------------
@pytest.mark.parametrize("kwargs,shape", [
    (dict(), (None, 1001)),
    (dict(include_top=False), (None, 7, 7, 1280)),
    (dict(include_top=False, pooling="avg"), (None, 1280)),
    (dict(include_top=False, pooling="max"), (None, 1280)),
    (dict(include_top=True, pooling="avg"), (None, 1001)),   # pooling ignored with the top, as in Keras
])
def test_output_shapes(kwargs, shape, random_batch):
    model = applications.MobileNetV2(**kwargs)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == shape
    assert model.compute_output_shape((None, 224, 224, 3)) == shape
    y = model.predict(random_batch[:2])
    assert y.shape == (2,) + shape[1:] and y.dtype == np.float32


def test_pooling_matches_the_feature_map(random_batch):
    x = random_batch[:2]
    fmap = applications.MobileNetV2(include_top=False).predict(x)
    avg = applications.MobileNetV2(include_top=False, pooling="avg").predict(x)
    mx = applications.MobileNetV2(include_top=False, pooling="max").predict(x)
    np.testing.assert_allclose(avg, fmap.mean(axis=(1, 2)), rtol=0, atol=1e-5 * np.abs(avg).max())
    np.testing.assert_array_equal(mx, fmap.max(axis=(1, 2)))


def test_predict_pooling_override(random_batch):
    """predict(pooling=...) gives pooled features from a pooling=None base (Sequential's feature cache)."""
    x = random_batch[:2]
    base = applications.MobileNetV2(include_top=False)
    pooled = applications.MobileNetV2(include_top=False, pooling="avg").predict(x)
    np.testing.assert_array_equal(base.predict(x, pooling="avg"), pooled)
    assert base.predict(x, pooling="max").shape == (2, 1280)
    assert base.predict(x).shape == (2, 7, 7, 1280)


def test_other_input_size_without_top():
    model = applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False, pooling="avg")
    assert model.input_shape == (None, 160, 160, 3)
    fmap = applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False)
    assert fmap.output_shape == (None, 5, 5, 1280)
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 160, 160, 3)).astype(np.float32)
    ref = reference.ReferenceModel(conftest.PTQ_MODEL)
    want = ref.run(x, fmap.feature_map_tensor)
    _assert_parity(fmap.predict(x), want, "feature map at 160x160")
    _assert_parity(model.predict(x), want.mean(axis=(1, 2)), "avg pooled at 160x160")


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_shape=(160, 160, 3)), "224"),
    (dict(classes=1000), "classes"),
    (dict(weights=None), "random"),
    (dict(include_top=False, pooling="sum"), "pooling"),
    (dict(include_top=False, input_shape=(224, 224, 1)), "input_shape"),
    (dict(include_top=False, input_shape=(16, 16, 3)), "input_shape"),
    (dict(include_top=False, input_shape=(224, 224)), "input_shape"),
    (dict(weights=3), "weights"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        applications.MobileNetV2(**kwargs)


def test_missing_weights_path(tmp_path):
    missing = tmp_path / "nope.tflite"
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        applications.MobileNetV2(weights=missing)


def test_corrupt_weights_path(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(tflite_transfer.ModelFormatError):
        applications.MobileNetV2(weights=str(bad))


def test_weights_path_and_aliases():
    assert os.path.basename(applications.MobileNetV2(weights=conftest.QUANT_MODEL).weights_path) == \
        conftest.QUANT_MODEL.name
    assert os.path.basename(applications.MobileNetV2(weights="imagenet").weights_path) == mv.DEFAULT_IMAGENET_MODEL
    assert os.path.basename(mv.weights_path("imagenet_quant")) == "mobilenet_v2_1.0_224_quant.tflite"
    assert os.path.basename(mv.weights_path("imagenet_ptq")) == "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    assert os.path.dirname(mv.weights_path()) == os.path.join(os.environ["TFLITE_TRANSFER_HOME"], "models")


# -- the Layer interface (Sequential uses it) -----------------------------------------
def test_layer_interface(random_batch):
    model = applications.MobileNetV2(include_top=False, pooling="avg")
    assert isinstance(model, Layer) and isinstance(model, applications.MobileNetV2Model)
    assert model.trainable is True and model.include_top is False and model.pooling == "avg"
    assert model.name == "mobilenetv2_1.00_224"
    weights = model.get_weights()
    assert all(w.dtype == np.float32 for w in weights)
    # 35 CONV_2D + 17 DEPTHWISE_CONV_2D before the classifier, weight + bias each.
    assert len(weights) == 2 * (35 + 17)
    assert weights[0].shape == (32, 3, 3, 3) and weights[1].shape == (32,)
    assert model.count_params() == sum(w.size for w in weights)
    top = applications.MobileNetV2()
    assert top.count_params() == model.count_params() + 1280 * 1001 + 1001
    cfg = model.get_config()
    assert cfg["include_top"] is False and cfg["pooling"] == "avg" and cfg["weights"] == "imagenet"
    assert cfg["input_shape"] == (224, 224, 3)
    x = random_batch[:2]
    np.testing.assert_array_equal(model(x), model.predict(x))
    np.testing.assert_array_equal(model.call(x, training=True), model.predict(x))
    frozen = applications.MobileNetV2(include_top=False, trainable=False)
    assert frozen.trainable is False
    model.build((None, 224, 224, 3))
    with pytest.raises(ValueError, match="input_shape"):
        model.build((None, 160, 160, 3))


def test_weights_of_the_base_are_fixed():
    model = applications.MobileNetV2(include_top=False)
    w = model.get_weights()
    model.set_weights(w)  # its own weights: accepted
    w[0] = w[0] + 1
    with pytest.raises(ValueError, match="cannot be changed"):
        model.set_weights(w)


# -- preprocess_input / decode_predictions (Keras' behaviour) ---------------------------
def test_preprocess_input_uint8():
    x = np.array([[0, 127, 255]], np.uint8)
    y = mv.preprocess_input(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[-1.0, 127 / 127.5 - 1, 1.0]], rtol=0, atol=1e-7)


def test_preprocess_input_float_keeps_dtype_and_input():
    x = np.array([0.0, 127.5, 255.0])
    y = mv.preprocess_input(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(x, [0.0, 127.5, 255.0])  # not modified in place
    assert mv.preprocess_input(x.astype(np.float32)).dtype == np.float32
    assert mv.preprocess_input([[1, 2]]).dtype == np.float32
    np.testing.assert_array_equal(mv.preprocess_input(x, data_format="channels_first"), y)


def test_preprocess_input_rejects_non_numeric():
    with pytest.raises(ValueError, match="x.dtype=bool"):
        mv.preprocess_input(np.zeros(3, bool))
    with pytest.raises(ValueError, match="data_format"):
        mv.preprocess_input(np.zeros(3), data_format="nhwc")


def test_decode_predictions_format():
    preds = np.zeros((2, 1001), np.float32)
    preds[0, [653, 1, 5]] = [0.7, 0.2, 0.1]
    preds[1, 0] = 1.0
    out = mv.decode_predictions(preds, top=3)
    assert len(out) == 2 and all(len(r) == 3 for r in out)
    assert out[0] == [("653", "military uniform", pytest.approx(0.7)), ("1", "tench, Tinca tinca", pytest.approx(0.2)),
                      ("5", "hammerhead, hammerhead shark", pytest.approx(0.1))]
    assert out[1][0][:2] == ("0", "background")
    assert all(isinstance(c, str) and isinstance(n, str) and isinstance(s, float) for c, n, s in out[0])
    assert len(mv.decode_predictions(preds)[0]) == 5  # Keras' default top=5


def test_decode_predictions_1000_columns_skip_background():
    preds = np.zeros((1, 1000), np.float32)
    preds[0, 652] = 1.0  # Keras' index 652 = our 653
    assert mv.decode_predictions(preds, top=1)[0][0][:2] == ("653", "military uniform")


@pytest.mark.parametrize("shape", [(1001,), (2, 10), (2, 1001, 1)])
def test_decode_predictions_bad_shape(shape):
    with pytest.raises(ValueError, match="decode_predictions"):
        mv.decode_predictions(np.zeros(shape))


# -- weights registry ------------------------------------------------------------------------
def test_registry_matches_shared_files():
    sums = dict(line.split()[::-1] for line in (conftest.MODELS / "SHA256SUMS").read_text().splitlines() if line)
    for fname, e in mv.WEIGHTS_REGISTRY.items():
        assert e["sha256"] == sums[fname]
        assert e["size"] == (conftest.MODELS / fname).stat().st_size
        assert e["origin"] == "https://github.com/google-coral/test_data/raw/master/" + fname
        assert e["labels"] in mv.LABELS_REGISTRY
    assert mv.DEFAULT_IMAGENET_MODEL in mv.WEIGHTS_REGISTRY
    labels = conftest.IMAGES / "imagenet_labels.txt"
    e = mv.LABELS_REGISTRY["imagenet_labels.txt"]
    assert e["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    assert e["size"] == labels.stat().st_size


def test_missing_file_and_failed_download_names_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/tf2_mobilenet_v2_1.0_224_ptq.tflite"
    entry = dict(mv.WEIGHTS_REGISTRY[mv.DEFAULT_IMAGENET_MODEL], origin=url)
    monkeypatch.setitem(mv.WEIGHTS_REGISTRY, mv.DEFAULT_IMAGENET_MODEL, entry)
    with pytest.raises(OSError) as e:
        applications.MobileNetV2()
    assert url in str(e.value)
    assert str(tmp_path / "models") in str(e.value)
    assert not any(p.name.endswith(".part") for p in (tmp_path / "models").iterdir())


def test_corrupt_cached_file_fails_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    bad = tmp_path / "models" / mv.DEFAULT_IMAGENET_MODEL
    shutil.copyfile(conftest.PTQ_MODEL, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="SHA-256"):
        applications.MobileNetV2()
