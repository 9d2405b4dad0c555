"""File download and cache, like ``keras.utils.get_file``.

Cache layout: ``<cache_dir>/<cache_subdir>/<fname>``, where ``cache_dir`` defaults
to ``$TFLITE_TRANSFER_HOME`` or ``~/.cache/tflite_transfer``. A file already in
the cache is used as is (after its SHA-256 is checked, when one is given); a missing
file is downloaded from ``origin`` with a tqdm progress bar into a temporary file,
verified, then renamed into place atomically.

Offline machines: ``$TFLITE_TRANSFER_MIRROR`` may list folders (separated by
``os.pathsep``) that already hold files by their file names, e.g. a read-only copy
of the release files. A file found there (with the right SHA-256) is used in place,
before the cache is consulted; nothing is copied.
"""
import contextlib
import hashlib
import os
import tempfile
import uuid
import urllib.request


@contextlib.contextmanager
def atomic_write(path, suffix=".tmp"):
    """Context manager: yields a binary file in `path`'s folder, then renames it to `path`.

    Readers never see a half-written file: the data goes to a temporary file in the same
    folder (created if missing), which replaces `path` only when the block ends without an
    exception; on any exception the temporary file is removed and `path` is untouched.
    The file gets the mode `open(path, "wb")` would give it (0o666 less the umask), not
    mkstemp's private 0o600.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # A unique name opened with O_EXCL and mode 0o666, so that the kernel applies the umask
    # as for any new file (tempfile.mkstemp would make it 0o600, private to the user).
    tmp = os.path.join(folder, f".tmp_{os.getpid()}_{uuid.uuid4().hex}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cache_dir():
    """The cache root: ``$TFLITE_TRANSFER_HOME`` if set, else ``~/.cache/tflite_transfer`` (str)."""
    env = os.environ.get("TFLITE_TRANSFER_HOME")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "tflite_transfer")


def mirror_dirs():
    """Folders listed in ``$TFLITE_TRANSFER_MIRROR`` (``os.pathsep``-separated), absolute (list of str)."""
    env = os.environ.get("TFLITE_TRANSFER_MIRROR", "")
    return [os.path.abspath(os.path.expanduser(d)) for d in env.split(os.pathsep) if d]


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of the file at `path` (str)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def get_file(fname, origin, file_hash=None, cache_subdir="models", cache_dir_=None, file_size=None,
             progress=True, timeout=60):
    """Returns the local path of `fname`, downloading it from `origin` if absent.

    Args:
      fname (str): file name inside the cache folder (and the mirror folders); may
        contain "/"-separated sub-folders.
      origin (str): URL to download from.
      file_hash (str | None): expected SHA-256 (hex). A cached or downloaded file
        that does not match raises ValueError (a cached one is not deleted).
      cache_subdir (str): folder under the cache root ("models", "datasets").
      cache_dir_ (str | None): cache root; default `cache_dir()`.
      file_size (int | None): expected size in bytes, for the progress bar.
      progress (bool): show a tqdm progress bar while downloading.
      timeout (float): seconds for the connection.

    Returns:
      str: absolute path of the file.

    Raises:
      OSError: the download failed; the message names the URL and the folder in
        which to place the file by hand.
      ValueError: the SHA-256 does not match.
    """
    for mirror in mirror_dirs():
        candidate = os.path.join(mirror, fname)
        if os.path.isfile(candidate):
            if file_hash and sha256_of(candidate) != file_hash.lower():
                raise ValueError(f"{candidate} (from TFLITE_TRANSFER_MIRROR) does not have SHA-256 {file_hash}.")
            return candidate
    root = os.path.abspath(os.path.expanduser(cache_dir_)) if cache_dir_ else cache_dir()
    folder = os.path.join(root, cache_subdir)
    path = os.path.join(folder, fname)  # fname may hold sub-folders ("a/b/c.npy")
    if os.path.exists(path):
        if file_hash and sha256_of(path) != file_hash.lower():
            raise ValueError(
                f"{path} exists but its SHA-256 is not {file_hash}: the file is corrupt or a different "
                f"version. Delete it to download it again from {origin}."
            )
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(fname) + ".", suffix=".part", dir=os.path.dirname(path))
    except OSError as e:
        raise OSError(f"Cannot create the cache folder {folder} for {fname}: {e}") from e
    try:
        with os.fdopen(fd, "wb") as out:
            _download(origin, out, fname, file_size, progress, timeout)
        if file_hash:
            got = sha256_of(tmp)
            if got != file_hash.lower():
                raise ValueError(f"Downloaded {origin} but its SHA-256 is {got}, expected {file_hash}.")
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError,)) and not isinstance(e, ValueError):
            raise OSError(
                f"Could not download {fname} from {origin} ({e}). Without network access, download it "
                f"elsewhere and place it at {path} (set TFLITE_TRANSFER_HOME to use another cache folder)."
            ) from e
        raise
    return path


def _download(url, out, desc, total, progress, timeout):
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else total
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))


def set_random_seed(seed):
    """``keras.utils.set_random_seed``: seeds Python's ``random``, NumPy's global generator and
    the package generator behind every random draw made without an explicit `seed` (weight
    initializers, Dropout, augmentation layers, fit's shuffling). See
    ``tflite_transfer.layers.set_random_seed`` (the same function). Raises ValueError unless
    `seed` is an int in [0, 2**32)."""
    from .layers.core import set_random_seed as _set

    _set(seed)
