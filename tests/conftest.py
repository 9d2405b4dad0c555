"""Shared fixtures: where ../shared is, and a model cache pointing at it.

``TFLITE_TRANSFER_SHARED`` overrides the location of the shared data (default:
``../shared`` next to the repository). ``TFLITE_TRANSFER_HOME`` is pointed, for
the whole test session, at a temporary cache whose ``models/`` links to the
shared ``.tflite`` files, so ``weights="imagenet"`` resolves without network.
"""
import os
import pathlib
import tempfile

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


@pytest.fixture(scope="session")
def shared_dir():
    return SHARED
