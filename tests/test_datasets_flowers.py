"""tflite_transfer.datasets.tf_flowers: lookup order and safe extraction (no network: the
download step is exercised with get_file monkeypatched to a small tarball made here)."""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import FLOWERS
from tflite_transfer import datasets, utils


def test_data_dir_itself_or_parent():
    assert datasets.tf_flowers(FLOWERS) == str(FLOWERS)
    assert datasets.tf_flowers(FLOWERS.parent) == str(FLOWERS)


def test_bad_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="class folders"):
        datasets.tf_flowers(tmp_path)


def test_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("TFLITE_TRANSFER_FLOWERS", str(FLOWERS))
    assert datasets.tf_flowers() == str(FLOWERS)
    monkeypatch.setenv("TFLITE_TRANSFER_FLOWERS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="TFLITE_TRANSFER_FLOWERS"):
        datasets.tf_flowers()


def test_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLITE_TRANSFER_FLOWERS", raising=False)
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    os.symlink(FLOWERS, tmp_path / "datasets" / "flower_photos")
    assert datasets.tf_flowers() == str(tmp_path / "datasets" / "flower_photos")


def _jpeg():
    b = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 100, 50)).save(b, "JPEG")
    return b.getvalue()


def _add(tar, name, payload=b"", **attrs):
    ti = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE:
        ti.size = len(payload)
        tar.addfile(ti, io.BytesIO(payload))
    else:
        tar.addfile(ti)


def _tarball(path, extra=None):
    with tarfile.open(path, "w:gz") as tar:
        for c in datasets.FLOWERS_CLASSES:
            _add(tar, f"flower_photos/{c}/1.jpg", _jpeg())
        _add(tar, "flower_photos/LICENSE.txt", b"CC BY 2.0")
        if extra:
            extra(tar)
    return str(path)


def test_download_path_extracts_and_renames(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLITE_TRANSFER_FLOWERS", raising=False)
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path / "home"))
    archive = _tarball(tmp_path / "flower_photos.tgz")
    calls = []

    def fake_get_file(fname, origin, file_hash=None, cache_subdir="models", **kw):
        calls.append((fname, origin, file_hash, cache_subdir))
        os.makedirs(os.path.join(utils.cache_dir(), cache_subdir), exist_ok=True)
        return archive

    monkeypatch.setattr(utils, "get_file", fake_get_file)
    out = datasets.tf_flowers()
    assert out == str(tmp_path / "home" / "datasets" / "flower_photos")
    assert calls == [("flower_photos.tgz", datasets.FLOWERS_URL, datasets.FLOWERS_SHA256, "datasets")]
    assert sorted(os.listdir(out)) == ["LICENSE.txt"] + sorted(datasets.FLOWERS_CLASSES)
    assert sorted(os.listdir(tmp_path / "home" / "datasets")) == ["flower_photos"]  # temp folder removed
    from tflite_transfer import data
    np.testing.assert_array_equal(data.decode_image(os.path.join(out, "daisy", "1.jpg")).shape, (6, 8, 3))
    assert datasets.tf_flowers() == out  # second call: found in the cache, no download
    assert len(calls) == 1


UNSAFE = {
    "absolute": lambda t: _add(t, "/tmp/evil.txt", b"x"),
    "dotdot": lambda t: _add(t, "flower_photos/../../evil.txt", b"x"),
    "symlink_out": lambda t: _add(t, "flower_photos/link", type=tarfile.SYMTYPE, linkname="../../etc/passwd"),
    "symlink_abs": lambda t: _add(t, "flower_photos/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    "hardlink_out": lambda t: _add(t, "flower_photos/hard", type=tarfile.LNKTYPE, linkname="../outside"),
    "device": lambda t: _add(t, "flower_photos/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    "fifo": lambda t: _add(t, "flower_photos/fifo", type=tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_members_are_refused_and_nothing_written(tmp_path, kind):
    archive = _tarball(tmp_path / f"{kind}.tgz", UNSAFE[kind])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ValueError, match="unsafe"):
        datasets.safe_extract_tar(archive, dest)
    assert list(dest.iterdir()) == []


def test_link_inside_archive_is_allowed(tmp_path):
    archive = _tarball(tmp_path / "ok.tgz",
                       lambda t: _add(t, "flower_photos/daisy/2.jpg", type=tarfile.SYMTYPE, linkname="1.jpg"))
    datasets.safe_extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "flower_photos" / "daisy" / "2.jpg").read_bytes() == _jpeg()


def test_unsafe_download_leaves_no_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLITE_TRANSFER_FLOWERS", raising=False)
    monkeypatch.setenv("TFLITE_TRANSFER_HOME", str(tmp_path / "home"))
    archive = _tarball(tmp_path / "bad.tgz", UNSAFE["dotdot"])

    def fake_get_file(fname, origin, cache_subdir="models", **kw):
        os.makedirs(os.path.join(utils.cache_dir(), cache_subdir), exist_ok=True)
        return archive

    monkeypatch.setattr(utils, "get_file", fake_get_file)
    with pytest.raises(ValueError, match="unsafe"):
        datasets.tf_flowers()
    assert os.listdir(tmp_path / "home" / "datasets") == []
    assert not (tmp_path / "evil.txt").exists()
