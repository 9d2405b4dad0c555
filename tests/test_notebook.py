"""The tutorial notebook: executed top to bottom in a Jupyter kernel (nbclient) on a tiny folder of
real flower photos with 1 epoch per stage, where any cell error fails the test; and the committed
copy is checked to render on GitHub (figures present, no error outputs)."""
import os
import pathlib
import sys

import conftest
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "flowers_transfer_learning.ipynb"


def _outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o["output_type"] == kind]


def _images(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if {"image/png", "image/jpeg"} & set(o.get("data", {}))]


@pytest.fixture
def tiny_flowers(tmp_path):
    # 2 classes x 12 photos, linked (not copied) from the shared folder.
    for cls in ("daisy", "roses"):
        (tmp_path / cls).mkdir()
        for f in sorted((conftest.FLOWERS / cls).iterdir())[:12]:
            os.symlink(f, tmp_path / cls / f.name)
    return str(tmp_path)


def test_notebook_executes_without_errors(tiny_flowers, monkeypatch, tmp_path):
    monkeypatch.setenv("TT_NB_EPOCHS", "1")
    monkeypatch.setenv("TT_NB_FINE_TUNE_EPOCHS", "1")
    monkeypatch.setenv("TT_NB_DATA_DIR", tiny_flowers)
    monkeypatch.setenv("TT_NB_NEW_PHOTO", str(conftest.IMAGES / "sunflower.bmp"))
    # The kernel imports this checkout's package (not another install) and writes no GUI windows.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # jupyter_client starts a kernelspec whose argv[0] is "python" with this interpreter (sys.executable).
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the traceback) on the first cell that fails
    assert _outputs(nb, "error") == []
    stdout = "".join(o.get("text", "") for o in _outputs(nb, "stream") if o.get("name") == "stdout")
    assert "['daisy', 'roses']" in stdout
    assert "path taken by fit: per_batch" in stdout
    assert "validation accuracy" in stdout
    assert len(_images(nb)) >= 8  # every plotting cell drew its figure


def test_committed_notebook_has_outputs_and_no_errors():
    """The committed copy renders on GitHub: executed in order, >= 5 figures, no errors, a full run."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert _outputs(nb, "error") == []
    assert len(_images(nb)) >= 5
    stdout = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert "2349 training and 587 validation images" in stdout  # the shared photos, not the CI subset
