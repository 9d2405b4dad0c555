"""Shared fixtures: where ../shared is, and a model cache pointing at it.

``TFLITE_TRANSFER_SHARED`` overrides the location of the shared data (default:
``../shared`` next to the repository). ``TFLITE_TRANSFER_HOME`` is pointed, for
the whole test session, at a temporary cache whose ``models/`` links to the
shared ``.tflite`` files, so ``weights="imagenet"`` resolves without network.
"""
import os
import pathlib
import tempfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("TFLITE_TRANSFER_SHARED", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
IMAGES = SHARED / "images"
FLOWERS = SHARED / "flower_photos"
QUANT_MODEL = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
PTQ_MODEL = MODELS / "tf2_mobilenet_v2_1.0_224_ptq.tflite"

if not SHARED.is_dir():
    raise RuntimeError(f"Shared test data not found at {SHARED}; set TFLITE_TRANSFER_SHARED.")

_home = tempfile.mkdtemp(prefix="tt_home_")
os.makedirs(os.path.join(_home, "models"))
for _f in MODELS.iterdir():
    os.symlink(_f, os.path.join(_home, "models", _f.name))
# The ImageNet class names that the weights registry names (decode_predictions).
os.symlink(IMAGES / "imagenet_labels.txt", os.path.join(_home, "models", "imagenet_labels.txt"))
os.environ["TFLITE_TRANSFER_HOME"] = _home
# The tests resolve weights through this cache; a mirror set in the shell for the flowers job
# (README) would be searched first and hide what the download tests check. Tests that want a
# mirror set their own.
os.environ.pop("TFLITE_TRANSFER_MIRROR", None)


# ../shared/README.md: each shared photo's expected top-1 index in imagenet_labels.txt (1001 classes).
PHOTO_TOP1 = {"grace_hopper": 653, "cat": 286, "bird": 20, "dragonfly": 320, "sunflower": 986}


def shared_photos_224():
    """The 5 shared photos in PHOTO_TOP1 order, Pillow-decoded and bilinear-resized to 224x224:
    uint8 (5, 224, 224, 3). Pillow, not our decoder, so engine tests do not depend on it."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(IMAGES / f"{n}.bmp").convert("RGB").resize((224, 224), Image.BILINEAR))
                     for n in PHOTO_TOP1])


def gradient_batch(classes=5):
    """The batch of the fine-tuning gradient tests (ours vs NumPy and vs Keras): the shared .bmp
    photos loaded with our `load_img` at 224x224, uint8 (N, 224, 224, 3); labels
    arange(N) % classes; a random head kernel float32 (1280, classes) ~ N(0, 0.05) and bias
    (classes,) ~ N(0, 0.1) from seed 0."""
    from tflite_transfer import data as ttdata

    photos = np.stack([ttdata.load_img(p, target_size=(224, 224)) for p in sorted(IMAGES.glob("*.bmp"))])
    rng = np.random.default_rng(0)
    head_kernel = rng.normal(0, 0.05, (1280, classes)).astype(np.float32)
    head_bias = rng.normal(0, 0.1, classes).astype(np.float32)
    return photos, np.arange(len(photos)) % classes, head_kernel, head_bias


@pytest.fixture(scope="session")
def shared_dir():
    return SHARED


# ------------------------------------------------------------------ skips of TensorFlow tests in CI
# The Keras-parity tests (and the TensorFlow cases in other modules) skip when TensorFlow is
# missing. Where TensorFlow is meant to be installed -- CI sets TT_WITH_TF=1 (``.ci/run``), and
# TT_REQUIRE_TF=1 asks for the same anywhere -- such a skip is turned into a failure, so that the
# only exact checks against Keras cannot vanish into one line of the summary. A skip counts as a
# TensorFlow skip when its reason names TensorFlow, Keras or ``tf`` (pytest.importorskip's default
# reason names the module) or when it comes from tests/test_keras_parity.py.
import re  # noqa: E402

REQUIRE_TF = os.environ.get("TT_REQUIRE_TF", os.environ.get("TT_WITH_TF", "0")) == "1"
_TF_REASON = re.compile(r"tensorflow|keras|\btf\b", re.IGNORECASE)


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _is_tf_skip(report):
    return bool(_TF_REASON.search(_skip_reason(report))) or "test_keras_parity.py" in report.nodeid


def _fail_tf_skip(report):
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"{report.nodeid}: skipped with TensorFlow required ({reason}). TT_WITH_TF / "
                       f"TT_REQUIRE_TF is set (CI), so a skipped TensorFlow/Keras-parity test fails the run; "
                       f"install the 'tf' extra (pip install '.[tf]') or unset the variable.")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped at import (``pytest.importorskip("tensorflow")``) fails collection in CI."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_TF and report.skipped and _is_tf_skip(report):
        _fail_tf_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped at run time (``importorskip`` / ``pytest.skip`` inside it) fails in CI."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_TF and report.skipped and not hasattr(report, "wasxfail") and _is_tf_skip(report):
        _fail_tf_skip(report)


def pytest_report_header(config):
    return (f"TensorFlow tests: {'required (a skip fails the run)' if REQUIRE_TF else 'optional (may skip)'}"
            f" -- TT_WITH_TF={os.environ.get('TT_WITH_TF', '')!r} TT_REQUIRE_TF={os.environ.get('TT_REQUIRE_TF', '')!r}")
