"""Datasets for the tutorials: ``tf_flowers`` (TensorFlow's flower_photos archive)."""
import os
import shutil
import tarfile
import tempfile

from . import utils

__all__ = ["tf_flowers", "safe_extract_tar", "FLOWERS_URL", "FLOWERS_SHA256", "FLOWERS_SIZE", "FLOWERS_CLASSES"]

FLOWERS_URL = "http://download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
FLOWERS_SIZE = 228_813_984
FLOWERS_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def _is_flowers(path):
    return os.path.isdir(path) and all(os.path.isdir(os.path.join(path, c)) for c in FLOWERS_CLASSES)


def _resolve(folder):
    """`folder` itself or `folder/flower_photos` if it holds the 5 class folders, else None."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(folder)))
    for cand in (folder, os.path.join(folder, "flower_photos")):
        if _is_flowers(cand):
            return cand
    return None


def tf_flowers(data_dir=None, download=True, progress=True):
    """Path of the extracted tf_flowers photos (``flower_photos/<class>/*.jpg``, 5 classes).

    Lookup order:
      1. `data_dir`: a folder holding the class sub-folders daisy, dandelion, roses, sunflowers,
         tulips, or its parent containing ``flower_photos/``;
      2. the environment variable ``TFLITE_TRANSFER_FLOWERS`` (same rule);
      3. ``$TFLITE_TRANSFER_HOME/datasets/flower_photos`` (default home ``~/.cache/tflite_transfer``);
      4. download ``flower_photos.tgz`` (228,813,984 bytes) from download.tensorflow.org with a
         progress bar into ``<home>/datasets/``, verify its SHA-256, extract it safely
         (`safe_extract_tar`) into a temporary folder and rename it to
         ``<home>/datasets/flower_photos``. The archive has 3670 photos (+ LICENSE.txt).

    Args:
      data_dir (str | os.PathLike | None): see 1.; when given and not valid, FileNotFoundError.
      download (bool): allow step 4.
      progress (bool): show the download progress bar.

    Returns:
      str: absolute path of the ``flower_photos`` folder, usable with
      ``tflite_transfer.data.image_dataset_from_directory``.

    Raises:
      FileNotFoundError: `data_dir` or ``TFLITE_TRANSFER_FLOWERS`` does not hold the photos, or
        nothing is found and download=False.
      OSError: the download failed (the message says where to place the archive by hand).
      ValueError: checksum mismatch, or an unsafe archive member.
    """
    if data_dir is not None:
        found = _resolve(data_dir)
        if found is None:
            raise FileNotFoundError(
                f"`data_dir` {os.fspath(data_dir)!r} does not contain the tf_flowers class folders "
                f"{list(FLOWERS_CLASSES)} (directly or under flower_photos/)."
            )
        return found
    env = os.environ.get("TFLITE_TRANSFER_FLOWERS")
    if env:
        found = _resolve(env)
        if found is None:
            raise FileNotFoundError(
                f"TFLITE_TRANSFER_FLOWERS={env!r} does not contain the tf_flowers class folders {list(FLOWERS_CLASSES)}."
            )
        return found
    datasets_dir = os.path.join(utils.cache_dir(), "datasets")
    target = os.path.join(datasets_dir, "flower_photos")
    if _is_flowers(target):
        return target
    if not download:
        raise FileNotFoundError(f"tf_flowers not found at {target} and download=False.")
    archive = utils.get_file("flower_photos.tgz", FLOWERS_URL, file_hash=FLOWERS_SHA256, cache_subdir="datasets",
                             file_size=FLOWERS_SIZE, progress=progress)
    tmp = tempfile.mkdtemp(prefix="flower_photos.", suffix=".extracting", dir=datasets_dir)
    try:
        safe_extract_tar(archive, tmp)
        src = _resolve(tmp)
        if src is None:
            raise ValueError(f"{archive} does not contain flower_photos/ with the class folders {list(FLOWERS_CLASSES)}.")
        try:
            os.rename(src, target)
        except OSError:
            if not _is_flowers(target):  # another process may have finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _member_problem(m):
    """Why archive member `m` is unsafe to extract, or None."""
    name = m.name.replace("\\", "/")
    if name.startswith("/") or os.path.isabs(m.name) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        return "device or FIFO"
    if m.issym() or m.islnk():
        link = m.linkname.replace("\\", "/")
        if link.startswith("/") or os.path.isabs(m.linkname):
            return f"link to an absolute path ({m.linkname})"
        # symlinks resolve relative to the member's folder, hard links relative to the archive root
        base = os.path.dirname(name) if m.issym() else ""
        resolved = os.path.normpath(os.path.join(base, link))
        if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
            return f"link pointing outside the archive ({m.linkname})"
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        return "unsupported member type"
    return None


def safe_extract_tar(archive, dest):
    """Extracts tar archive `archive` (any compression tarfile reads) into folder `dest`, refusing
    unsafe members: absolute paths, ``..`` components, links pointing outside the archive or to
    absolute paths, device files and FIFOs. Everything is checked before anything is written;
    Python's ``filter="data"`` is applied as well where available (3.11.4+, 3.12).

    Raises:
      ValueError: an unsafe member (named, with the reason); nothing is extracted then.
      tarfile.TarError / OSError: a corrupt archive or a write failure.
    """
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            why = _member_problem(m)
            if why:
                raise ValueError(f"Refusing to extract {archive}: member {m.name!r} is unsafe ({why}).")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - old Pythons; members were checked above
            tar.extractall(dest, members=members)
