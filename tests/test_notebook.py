"""The notebook runs top to bottom (its code cells, in order, in one namespace) on a tiny
folder of real flower photos with EPOCHS = 1, so its API calls stay true."""
import json
import os
import pathlib

import conftest
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "flowers_transfer_learning.ipynb"


@pytest.fixture
def tiny_flowers(tmp_path):
    # 2 classes x 12 photos, linked (not copied) from the shared folder.
    for cls in ("daisy", "roses"):
        (tmp_path / cls).mkdir()
        for f in sorted((conftest.FLOWERS / cls).iterdir())[:12]:
            os.symlink(f, tmp_path / cls / f.name)
    return str(tmp_path)


def test_notebook_code_cells_run(tiny_flowers, monkeypatch):
    import matplotlib  # in the 'test' extra: the notebook plots

    matplotlib.use("Agg")
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    ns = {}
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        if "parameters" in cell["metadata"].get("tags", []):
            src += f"\nEPOCHS = 1\nDATA_DIR = {tiny_flowers!r}\n"
        exec(compile(src, f"{NOTEBOOK.name}[cell {i}]", "exec"), ns)
    assert ns["model"].last_fit_path == "feature_cache"
    assert ns["aug_model"].last_fit_path == "per_batch"
    assert len(ns["history"].history["val_accuracy"]) == 1
    assert ns["probs"].shape == (min(5, len(ns["x_val"])), 2)
