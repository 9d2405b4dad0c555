"""Listing a folder of images the way Keras' ``image_dataset_from_directory`` does: which files
are read, in which order, and their inferred labels (``data.image_dataset_from_directory`` and the
CLI build on it). Split out of ``data.py``.
"""
import os

import numpy as np

#: Extensions decoded by the C pipeline (stb_image), as Keras' ``ALLOWLIST_FORMATS``.
ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

#: Image-like extensions that are not decoded: counted (and named) in the "Found N files" line.
UNREAD_IMAGE_FORMATS = (".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jfif", ".jp2", ".ico", ".svg")


def _list_valid_files(directory, follow_links, unread=None):
    """Image files under `directory`, Keras' order: walk roots sorted, then file names sorted.

    Hidden entries (names starting with ".") are skipped at every level: macOS' ``._name.jpg``
    resource forks, ``.ipynb_checkpoints/``, ``.DS_Store`` (Keras skips them only at the top).
    `unread` (dict | None): counts of skipped image-like extensions (UNREAD_IMAGE_FORMATS) are added.
    """
    out = []
    walk = []
    for root, dirs, files in os.walk(directory, followlinks=follow_links):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders (topdown walk)
        walk.append((root, files))
    for root, files in sorted(walk, key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.startswith("."):
                continue
            low = fname.lower()
            if low.endswith(ALLOWLIST_FORMATS):
                out.append(os.path.join(root, fname))
            elif unread is not None and low.endswith(UNREAD_IMAGE_FORMATS):
                ext = os.path.splitext(low)[1]
                unread[ext] = unread.get(ext, 0) + 1
    return out


def _unread_note(unread):
    """' (and N image files not read: 2 .webp, 1 .heic; readable: .bmp .gif .jpeg .jpg .png)' or ''."""
    if not unread:
        return ""
    parts = ", ".join(f"{k} {ext}" for ext, k in sorted(unread.items(), key=lambda t: (-t[1], t[0])))
    return (f" ({sum(unread.values())} image file(s) with other formats not read: {parts}; readable: "
            f"{' '.join(ALLOWLIST_FORMATS)})")


def _index_directory(directory, labels, class_names, follow_links, unread=None):
    """(file_paths, labels int32 | None, class_names) in Keras' listing order (before shuffling).
    `unread`: see `_list_valid_files`."""
    if labels == "inferred":
        subdirs = sorted(
            d for d in os.listdir(directory)
            if not d.startswith(".") and os.path.isdir(os.path.join(directory, d))
        )
        if class_names is None:
            class_names = subdirs
        else:
            class_names = [str(c) for c in class_names]
            if set(class_names) != set(subdirs) or len(class_names) != len(subdirs):
                raise ValueError(
                    "The `class_names` passed did not match the names of the subdirectories of the target "
                    f"directory. Expected: {subdirs} (or a permutation), but received: class_names={class_names}"
                )
        index = {c: i for i, c in enumerate(class_names)}
        paths, labs, empty = [], [], []
        for d in subdirs:
            found = _list_valid_files(os.path.join(directory, d), follow_links, unread)
            if not found:
                empty.append(d)
            paths += found
            labs += [index[d]] * len(found)
        if empty and paths:
            raise ValueError(
                f"Class folder(s) {empty} in {directory!r} contain no images with extensions "
                f"{ALLOWLIST_FORMATS}. Every class needs at least one image: remove the empty folder(s) or add images."
            )
        return paths, np.asarray(labs, dtype=np.int32), list(class_names)
    paths = _list_valid_files(directory, follow_links, unread)
    if labels is None:
        return paths, None, None
    labs = list(labels)
    if len(labs) != len(paths):
        raise ValueError(
            "Expected the lengths of `labels` to match the number of files in the target directory. "
            f"len(labels) is {len(labs)} while we found {len(paths)} files in directory {directory!r}."
        )
    arr = np.asarray(labs)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise ValueError("`labels` must be a list/tuple of non-negative ints (one per image file, in alphanumeric order).")
    names = [str(i) for i in range(int(arr.max()) + 1 if arr.size else 0)]
    return paths, arr.astype(np.int32), names
