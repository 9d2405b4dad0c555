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
                   "--output", str(out), "--verbose", "0", "--no-fine-tune"])
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
                   "--verbose", "0", "--no-fine-tune"])
    assert rc == 0
    with open(out / "summary.json") as f:
        run = json.load(f)["augmented"]
    assert run["fit_path"] == "per_batch" and len(run["history"]["val_accuracy"]) == 1
    assert os.path.exists(run["model_path"])


# The fine-tuning stage needs the backward pass through the base (issue 8, the C engine). Until it
# lands, stage 2's fit raises exactly the NotImplementedError below; this test accepts that one
# error only (as an xfail, visible in the test summary) and checks everything up to it.
_NO_BACKWARD = "Fine-tuning layers before the head is not supported yet"


def test_default_job_fine_tunes_after_the_frozen_stage(subset, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["flowers", "--data-dir", str(subset), "--no-augment", "--epochs", "1", "--fine-tune-epochs", "1",
            "--fine-tune-at", "140", "--batch-size", "8", "--output", str(out), "--verbose", "0"]
    try:
        rc = cli.main(argv)
    except NotImplementedError as e:
        assert _NO_BACKWARD in str(e)
        printed = capsys.readouterr().out
        # Stage 1 finished and reported; stage 2 started with the tutorial's recipe.
        assert "Final validation accuracy (no_augmentation)" in printed and "Confusion matrix" in printed
        assert (out / "no_augmentation.ttz").exists()
        assert "fine-tuning from layer 140 (block_15_project)" in printed
        pytest.xfail("no backward pass through the base yet (issue 8, C engine)")
    assert rc == 0
    printed = capsys.readouterr().out
    with open(out / "summary.json") as f:
        run = json.load(f)["no_augmentation"]
    fine = run["fine_tuned"]
    # fit(epochs=1 + 1, initial_epoch=history.epoch[-1] = 0): the tutorial's numbering.
    assert run["epochs"] == [0] and fine["epochs"] == [0, 1]
    assert fine["fine_tune_at"] == 140 and fine["trainable_params"] > 1280 * 2 + 2
    assert "Final validation accuracy (no_augmentation fine-tuned)" in printed
    assert printed.count("Classification report") == 2 and printed.count("Confusion matrix") == 2
    assert fine["classification_report"] in printed
    assert os.path.exists(fine["model_path"])
    assert (out / "no_augmentation_fine_tuned_training_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad", ["154", "-1"])
def test_fine_tune_at_out_of_range_fails_before_any_training(subset, tmp_path, capsys, bad):
    rc = cli.main(["flowers", "--data-dir", str(subset), "--no-augment", "--epochs", "1", "--output",
                   str(tmp_path / "out"), "--verbose", "0", "--fine-tune-at", bad])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"`fine_tune_at` must be an int in [0, 154)" in captured.err and f"fine_tune_at={bad}" in captured.err
    assert "Final validation accuracy" not in captured.out


def test_fine_tune_epochs_below_one_is_a_usage_error(subset, tmp_path, capsys):
    assert cli.main(["flowers", "--data-dir", str(subset), "--fine-tune-epochs", "0"]) == 2
    assert "--fine-tune-epochs" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["int8", "mixed_bfloat16"])
def test_frozen_stage_runs_in_another_precision(subset, tmp_path, dtype):
    """--dtype runs the frozen base's features in that precision; the head still separates the classes."""
    if dtype == "mixed_bfloat16" and not __import__("tflite_transfer")._core.has_bf16():
        pytest.skip("no bfloat16 instructions on this CPU")
    if dtype == "int8" and not __import__("tflite_transfer")._core.has_vnni():
        pytest.skip("no VNNI instructions on this CPU (int8 raises)")
    out = tmp_path / "out"
    rc = cli.main(["flowers", "--data-dir", str(subset), "--no-augment", "--epochs", "5", "--batch-size", "8",
                   "--output", str(out), "--verbose", "0", "--no-fine-tune", "--dtype", dtype,
                   "--weights", "imagenet_ptq"])
    assert rc == 0
    with open(out / "summary.json") as f:
        run = json.load(f)["no_augmentation"]
    assert run["fit_path"] == "feature_cache" and run["val_accuracy"] >= 0.8


def test_dtype_the_cpu_lacks_is_a_cli_error_before_any_photo_is_read(tmp_path, capsys, monkeypatch):
    # A folder that does not exist: had the photos been listed first, that would be the error.
    from tflite_transfer import _native
    monkeypatch.setattr(_native._core, "has_vnni", lambda: False)
    rc = cli.main(["flowers", "--data-dir", str(tmp_path / "missing"), "--no-fine-tune", "--dtype", "int8",
                   "--output", str(tmp_path / "o"), "--verbose", "0"])
    err = capsys.readouterr().err
    assert rc == 1 and "--dtype int8 needs a CPU with VNNI" in err and "Use --dtype float32." in err, err
    assert "Traceback" not in err


def test_dtype_with_fine_tuning_is_an_error(subset, tmp_path, capsys):
    rc = cli.main(["flowers", "--data-dir", str(subset), "--no-augment", "--epochs", "1", "--output",
                   str(tmp_path / "o"), "--verbose", "0", "--dtype", "int8"])
    assert rc != 0 and "--no-fine-tune" in capsys.readouterr().err
