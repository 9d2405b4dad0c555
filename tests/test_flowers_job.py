"""The flowers job end to end on a small real subset of ../shared/flower_photos
(2 classes x 40 photos), through the CLI entry function, with the real engine
(applications.MobileNetV2, ImageNet weights from ../shared/models) and the real
folder dataset. The printed/saved report must be scikit-learn's."""
import json
import os

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix

from conftest import FLOWERS
from tflite_transfer import cli
from tflite_transfer.data import image_dataset_from_directory
from tflite_transfer.models import load_model

CLASSES = ("daisy", "sunflowers")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers_subset")
    for c in CLASSES:
        os.makedirs(root / c)
        for name in sorted(os.listdir(FLOWERS / c))[:40]:
            os.symlink(FLOWERS / c / name, root / c / name)
    return root


def test_flowers_command_end_to_end_matches_sklearn(subset, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["flowers", "--data-dir", str(subset), "--no-augment", "--epochs", "5", "--batch-size", "8",
                   "--output", str(out), "--verbose", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    with open(out / "summary.json") as f:
        run = json.load(f)["no_augmentation"]
    y_true, y_pred = np.array(run["y_true"]), np.array(run["y_pred"])
    assert len(y_true) == 16 and run["class_names"] == list(CLASSES)  # 20% of 80
    want = classification_report(y_true, y_pred, labels=[0, 1], target_names=list(CLASSES), digits=4,
                                  zero_division=0)
    assert run["classification_report"] == want and want in printed
    assert run["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist()
    assert run["val_accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert run["fit_path"] == "feature_cache"
    assert run["val_accuracy"] >= 0.8  # ImageNet features separate daisies from sunflowers
    assert set(run["times_s"]) >= {"load", "features", "train", "evaluate"}
    assert "Final validation accuracy" in printed and "Confusion matrix" in printed
    # The figures are written next to the model, and the job says where.
    for fig in ("training_curves", "confusion_matrix", "precision_recall", "misclassified"):
        assert (out / f"no_augmentation_{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert f"written to {out / 'no_augmentation_*.png'}" in printed
    # The saved model (base by reference) reloads and predicts the same classes.
    _, val = image_dataset_from_directory(str(subset), validation_split=0.2, subset="both", seed=123,
                                          image_size=(224, 224), batch_size=8)
    x_val, y_val = val.as_numpy()
    assert sorted(y_val.tolist()) == sorted(y_true.tolist())
    back = load_model(run["model_path"])
    assert np.mean(np.argmax(back.predict(x_val, verbose=0), 1) == y_val) == pytest.approx(run["val_accuracy"])


def test_train_command_with_augmentation_runs_per_batch(subset, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["train", str(subset), "--augment", "--epochs", "1", "--batch-size", "16", "--output", str(out),
                   "--verbose", "0"])
    assert rc == 0
    with open(out / "summary.json") as f:
        run = json.load(f)["augmented"]
    assert run["fit_path"] == "per_batch" and len(run["history"]["val_accuracy"]) == 1
    assert os.path.exists(run["model_path"])
