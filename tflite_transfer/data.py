"""Image input pipeline: decoding, resizing and folder datasets (``keras.utils`` counterparts).

Everything heavy runs in C (``csrc/image/``): stb_image decodes JPEG
(baseline and progressive), PNG (1-16 bit, gray, palette, RGBA), BMP and GIF (first frame);
resizing follows ``tf.image.resize``; folder datasets decode and resize upcoming batches on a
pool of C threads with the GIL released.

Differences from Keras, on purpose:

* ``load_img`` returns a uint8 NumPy array (H, W, 3), not a PIL image, and resizes with
  ``tf.image.resize``'s rules (default ``"bilinear"``; Keras' ``load_img`` defaults to PIL
  ``"nearest"``).
* ``image_dataset_from_directory`` yields uint8 images (Keras yields float32 after
  ``tf.image.resize``): the same values rounded to the nearest integer, in a quarter of the memory;
  models rescale them (``x / 127.5 - 1`` for MobileNetV2) in their first layer.
* Only ``"bilinear"`` and ``"nearest"`` interpolation exist (``antialias=True`` gives TF's
  antialiased bilinear); other Keras names raise ValueError.
"""
import math
import os
import threading
import warnings

import numpy as np

from ._native import ImageDecodeError, _core

__all__ = [
    "ALLOWLIST_FORMATS",
    "ImageDataset",
    "ImageDecodeError",
    "decode_image",
    "image_dataset_from_directory",
    "load_img",
    "resize",
    "smart_resize",
    "set_max_pixels",
    "get_max_pixels",
]

#: File extensions (lower-cased) that image_dataset_from_directory picks up, as Keras.
from ._folders import ALLOWLIST_FORMATS, UNREAD_IMAGE_FORMATS, _index_directory, _list_valid_files, _unread_note  # noqa: E402,F401

_INTERPOLATIONS = {"bilinear": 0, "nearest": 1}
_KERAS_ONLY = ("bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
_STATUS_DECODE, _STATUS_IO, _STATUS_OOM = _core.TT_DECODE_ERROR, _core.TT_IO_ERROR, _core.TT_OUT_OF_MEMORY

_max_pixels = [int(_core.DEFAULT_MAX_PIXELS)]
_pool_lock = threading.Lock()
_pool = [None]


def set_max_pixels(n):
    """Sets the default decoding limit: images whose header declares more than `n` pixels
    (height * width, int >= 1) are refused before decoding. The default is 100,000,000."""
    n = int(n)
    if n < 1:
        raise ValueError(f"`max_pixels` must be a positive int. Received: max_pixels={n}")
    _max_pixels[0] = n


def get_max_pixels():
    """The current default decoding limit in pixels (int)."""
    return _max_pixels[0]


def _default_pool():
    """The process-wide C thread pool used by resize() and the augmentation layers."""
    with _pool_lock:
        if _pool[0] is None:
            _pool[0] = _core.ThreadPool(max(1, min(os.cpu_count() or 1, 8)))
        return _pool[0]


def _check_max_pixels(max_pixels):
    if max_pixels is None:
        return _max_pixels[0]
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"`max_pixels` must be a positive int or None. Received: max_pixels={max_pixels!r}")
    return int(max_pixels)


def _interp_code(interpolation):
    if not isinstance(interpolation, str) or interpolation.lower() not in _INTERPOLATIONS:
        extra = " (Keras also knows it; it is not implemented here)" if str(interpolation).lower() in _KERAS_ONLY else ""
        raise ValueError(
            f"`interpolation` must be 'bilinear' or 'nearest'{extra}. Received: interpolation={interpolation!r}"
        )
    return _INTERPOLATIONS[interpolation.lower()]


def _check_size(size, name):
    try:
        h, w = size
        # The C core takes int32 sizes: larger ones cannot be allocated anyway.
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v < 2**31 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be a tuple of 2 positive ints (height, width) below 2**31. "
                         f"Received: {name}={size!r}")
    return int(h), int(w)


def decode_image(path_or_bytes, max_pixels=None):
    """Decodes an image file or encoded bytes to an RGB array.

    Args:
      path_or_bytes: a file path (str or os.PathLike) or the encoded bytes (bytes, bytearray,
        memoryview) of a JPEG (baseline or progressive), PNG, BMP or GIF image.
      max_pixels (int | None): refuse images whose header declares more than this many pixels
        (height * width), before any pixel memory is allocated. Default: `get_max_pixels()`
        (100 megapixels).

    Returns:
      np.ndarray: uint8, shape (H, W, 3), values 0..255. Gray images are replicated to 3 channels;
      alpha is dropped without compositing (like PIL's ``convert("RGB")`` and TF's
      ``decode_image(channels=3)``); 16-bit PNG samples keep their high byte (``v >> 8``, what TF's
      ``decode_png(dtype=uint8)`` does); GIFs give their first frame.

    Raises:
      ImageDecodeError (a ValueError): the bytes are not a decodable image (truncated, empty, not an
        image, CMYK JPEG, ...) or declare more than `max_pixels`; the message names the file and
        stb_image's reason.
      FileNotFoundError / OSError: the file cannot be read.
      TypeError: `path_or_bytes` is neither a path nor bytes.
    """
    limit = _check_max_pixels(max_pixels)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return _core.decode_image(path_or_bytes, limit)
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise TypeError(
            f"`path_or_bytes` must be a file path or bytes. Received: type={type(path_or_bytes).__name__}"
        )
    path = os.fspath(path_or_bytes)
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot decode {path!r}: it is a directory, expected an image file.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    data = _core.read_file(path)  # OSError for FIFOs, devices, unreadable files
    try:
        return _core.decode_image(data, limit)
    except ImageDecodeError as e:
        raise ImageDecodeError(f"Cannot decode image file {path!r}: {e}") from None


def load_img(path, target_size=None, interpolation="bilinear", crop_to_aspect_ratio=False, max_pixels=None):
    """Loads an image file as a uint8 RGB array, optionally resized (``keras.utils.load_img``).

    Unlike Keras, returns a NumPy array (not a PIL image) and resizes with ``tf.image.resize``'s
    rules (the values ``image_dataset_from_directory`` gives), rounded to uint8.

    Args:
      path (str | os.PathLike): image file (JPEG, PNG, BMP, GIF).
      target_size (tuple[int, int] | None): (height, width); None keeps the decoded size.
      interpolation (str): "bilinear" (default) or "nearest".
      crop_to_aspect_ratio (bool): center-crop to the target aspect ratio before resizing, as Keras'
        ``smart_resize`` does, so the image is not distorted.
      max_pixels (int | None): see `decode_image`.

    Returns:
      np.ndarray: uint8 (H, W, 3) — (target_size[0], target_size[1], 3) when resized.

    Raises:
      ImageDecodeError, FileNotFoundError, OSError: as `decode_image`.
      ValueError: bad `target_size` (also one over `max_pixels` pixels) or `interpolation`.
    """
    code = _interp_code(interpolation)
    size = None if target_size is None else _check_size(target_size, "target_size")
    img = decode_image(path, max_pixels=max_pixels)  # also checks `max_pixels`
    limit = get_max_pixels() if max_pixels is None else max_pixels
    if size is not None and size[0] * size[1] > limit:
        # The decoder's limit applies to the resized output too: else NumPy fails with a
        # MemoryError that names no argument.
        raise ValueError(f"`target_size` asks for {size[0] * size[1]} pixels, over the limit of {limit} "
                         f"(`max_pixels`, `set_max_pixels`). Received: target_size={target_size!r}")
    if size is None:
        return img
    return _core.resize(_default_pool(), img[None], size[0], size[1], code, False, bool(crop_to_aspect_ratio), True)[0]


def resize(images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False):
    """Resizes an image or a batch like ``tf.image.resize`` (optionally ``smart_resize``'s crop).

    Rules (TF 2): "bilinear" samples at half-pixel centres, ``in = (out + 0.5) * in_size / out_size
    - 0.5`` clamped at the borders (``ResizeBilinear(half_pixel_centers=True)``); with
    ``antialias=True`` it is TF's ``scale_and_translate`` with a triangle kernel widened by the
    downscale factor; "nearest" takes ``min(floor((out + 0.5) * in_size / out_size), in_size - 1)``.
    Computation is float32 in C, threaded over the images of a batch.

    Args:
      images: array (H, W, C) or (N, H, W, C), uint8 or float32 (other real dtypes are converted
        to float32), H, W, C >= 1.
      size (tuple[int, int]): output (height, width).
      interpolation (str): "bilinear" or "nearest".
      antialias (bool): low-pass filter when downscaling (bilinear only; ignored by nearest, as TF).
      crop_to_aspect_ratio (bool): first center-crop to the aspect ratio of `size` (Keras'
        ``smart_resize`` box), so the content is not distorted.

    Returns:
      np.ndarray: float32 (size[0], size[1], C) or (N, size[0], size[1], C), like ``tf.image.resize``.

    Raises:
      ValueError: bad rank, empty dimensions, `size` or `interpolation`.
    """
    code = _interp_code(interpolation)
    oh, ow = _check_size(size, "size")
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"`images` must be a 3D (H, W, C) or 4D (N, H, W, C) array. Received: images.shape={x.shape}")
    if min(x.shape[-3:]) < 1:
        raise ValueError(f"`images` must have non-empty H, W, C. Received: images.shape={x.shape}")
    if x.dtype != np.uint8 and x.dtype != np.float32:
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
            raise ValueError(f"`images` must be a real numeric array. Received: dtype={x.dtype}")
        x = x.astype(np.float32)
    batch = x if x.ndim == 4 else x[None]
    y = _core.resize(_default_pool(), np.ascontiguousarray(batch), oh, ow, code, bool(antialias),
                     bool(crop_to_aspect_ratio), False)
    return y if x.ndim == 4 else y[0]


def smart_resize(x, size, interpolation="bilinear"):
    """``keras.utils.smart_resize``: center-crop to the aspect ratio of `size`, then resize.

    Same arguments and float32 result as `resize(x, size, interpolation, crop_to_aspect_ratio=True)`.
    """
    return resize(x, size, interpolation=interpolation, crop_to_aspect_ratio=True)


# ----------------------------------------------------------------------------- folder datasets


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 image_size=(256, 256), batch_size=32, shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 crop_to_aspect_ratio=False, on_error="raise", num_threads=None,
                                 follow_links=False, max_pixels=None, prefetch=2, verbose=True):
    """Dataset of images from a folder tree, like ``keras.utils.image_dataset_from_directory``.

    With ``labels="inferred"`` the layout is ``directory/<class_name>/.../<image>``: classes are the
    sorted names of the sub-folders, files with extensions .bmp .gif .jpeg .jpg .png (any case)
    count, hidden entries (names starting with ".": ``._x.jpg``, ``.ipynb_checkpoints/``) are skipped
    at every level (Keras skips them only at the top), image-like files in other formats (.webp,
    .tiff, .heic, ...) are counted in the "Found N files" line, and files are listed class by class, each class walked with its folders
    sorted and file names sorted (Keras' order). With ``shuffle=True`` the list is then shuffled with
    ``np.random.RandomState(seed)`` as Keras does (so ``file_paths`` matches Keras' for the same seed)
    before the split: the last ``int(validation_split * N)`` files form the validation subset, the
    rest the training subset.

    Args:
      directory (str | os.PathLike): the root folder.
      labels: "inferred", None (no labels), or a list/tuple of int labels, one per image file in the
        alphanumeric order of all files under `directory`.
      label_mode (str | None): "int" (int32 (B,)), "categorical" (float32 one-hot (B, num_classes)),
        "binary" (float32 (B, 1), two classes only) or None (images only).
      class_names (list[str] | None): only with labels="inferred": the class order (must be the
        sub-folder names); default their sorted order.
      image_size (tuple[int, int]): (height, width) every image is resized to.
      batch_size (int | None): images per batch; None yields single images.
      shuffle (bool): shuffle the file order (with `seed`) and reshuffle at every epoch.
      seed (int | None): shuffling seed; None draws one (``np.random.randint(1e6)``, as Keras).
      validation_split (float | None): fraction in (0, 1) held out for validation.
      subset (str | None): "training", "validation" or "both" (returns (train, val)); requires
        `validation_split`, which in turn requires `subset`.
      interpolation (str): "bilinear" or "nearest" (tf.image.resize rules).
      crop_to_aspect_ratio (bool): center-crop each image to the target aspect ratio before resizing.
      on_error (str): "raise" — an undecodable file raises ImageDecodeError naming it when its batch
        is loaded; "skip" — every file is decoded once at creation (on the C threads) and those that
        fail are left out, with one warning listing them all, so ``len()``, ``file_paths`` and
        ``labels`` are exact.
      num_threads (int | None): C decoding threads; default ``min(os.cpu_count(), 8)``. Results do not
        depend on it.
      follow_links (bool): follow symbolic links to folders while walking.
      max_pixels (int | None): decoding limit, see `decode_image`.
      prefetch (int): batches decoded ahead while the caller computes (>= 1).
      verbose (bool): print "Found N files belonging to C classes." like Keras.

    Returns:
      ImageDataset, or a tuple (train, validation) of them for ``subset="both"``.

    Raises:
      FileNotFoundError: `directory` does not exist. NotADirectoryError: it is a file.
      ValueError: bad arguments (Keras' messages), no images found, an empty class folder,
        `class_names` not matching the folders, `validation_split` without `seed` while shuffling.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"`directory` must be a path (str). Received: {directory!r}")
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise FileNotFoundError(f"`directory` {directory!r} does not exist.")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"`directory` {directory!r} is a file, expected a folder of class sub-folders.")
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple)):
        raise ValueError(
            "`labels` argument should be a list/tuple of integer labels, of the same size as the number of image "
            f"files in the target directory. If you wish to infer the labels from the subdirectory names in the "
            f"target directory, pass `labels='inferred'`. If you wish to get a dataset that only contains images "
            f"(no labels), pass `labels=None`. Received: labels={labels!r}"
        )
    if class_names is not None and labels != "inferred":
        raise ValueError(
            "You can only pass `class_names` if `labels='inferred'`. "
            f"Received: labels={labels!r}, and class_names={class_names!r}"
        )
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(
            '`label_mode` argument must be one of "int", "categorical", "binary", or None. '
            f"Received: label_mode={label_mode!r}"
        )
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    image_size = _check_size(image_size, "image_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive int or None. Received: batch_size={batch_size!r}")
    interp = _interp_code(interpolation)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}")
    if num_threads is None:
        num_threads = max(1, min(os.cpu_count() or 1, 8))
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or not 1 <= num_threads <= 256:
        raise ValueError(f"`num_threads` must be an int in [1, 256] or None. Received: num_threads={num_threads!r}")
    if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 1:
        raise ValueError(f"`prefetch` must be a positive int. Received: prefetch={prefetch!r}")
    limit = _check_max_pixels(max_pixels)
    # Keras' check_validation_split_arg
    if validation_split is not None and not (isinstance(validation_split, (float, int)) and 0 < validation_split < 1):
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split!r}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset!r}')
    if validation_split and shuffle and seed is None:
        raise ValueError(
            "If using `validation_split` and shuffling the data, you must provide a `seed` argument, to make sure "
            "that there is no overlap between the training and validation subset."
        )
    if seed is None:
        seed = int(np.random.randint(1e6))
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an int in [0, 2**32) or None. Received: seed={seed!r}")
    seed = int(seed)

    unread = {}
    paths, labs, names = _index_directory(directory, labels, class_names, follow_links, unread)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(
            f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: class_names={names}'
        )
    if not paths:
        raise ValueError(f"No images found in directory {directory!r}. Allowed formats: {ALLOWLIST_FORMATS}"
                         + _unread_note(unread))
    if verbose:
        if labs is not None:
            print(f"Found {len(paths)} files belonging to {len(names)} classes{_unread_note(unread)}.")
        else:
            print(f"Found {len(paths)} files{_unread_note(unread)}.")
    if shuffle:
        np.random.RandomState(seed).shuffle(paths)
        if labs is not None:
            np.random.RandomState(seed).shuffle(labs)

    common = dict(class_names=names, label_mode=label_mode, image_size=image_size, batch_size=batch_size,
                  seed=seed, interpolation=interpolation, crop_to_aspect_ratio=bool(crop_to_aspect_ratio),
                  on_error=on_error, num_threads=int(num_threads), max_pixels=limit, prefetch=int(prefetch),
                  _interp=interp)

    if validation_split:
        _check_split(paths, labs, names, validation_split, shuffle)

    def make(sub, shuf):
        p, l = _split(paths, labs, validation_split, sub)
        if verbose and sub is not None:
            print(f"Using {len(p)} files for {sub}.")
        return ImageDataset(p, l, shuffle=shuf, **common)

    if subset == "both":
        # Keras reshuffles the training set each epoch but not the validation set here.
        return make("training", shuffle), make("validation", False)
    return make(subset, shuffle)


def _check_split(paths, labs, names, validation_split, shuffle):
    """Degenerate splits (beyond Keras, which accepts them silently): an empty subset raises
    ValueError; a validation subset missing classes that the training subset has warns, naming
    them (typically shuffle=False on class-sorted files)."""
    n = len(paths)
    n_val = int(validation_split * n)
    n_train = n - n_val
    if n_val < 1 or n_train < 1:
        side, k = ("validation", n_val) if n_val < 1 else ("training", n_train)
        raise ValueError(f"`validation_split`={validation_split} of {n} files leaves the {side} subset empty "
                         f"({k} files): use a validation_split between {1 / n:.3g} and {1 - 1 / n:.3g}, or add files.")
    if labs is None:
        return
    tr, va = set(labs[:n_train].tolist()), set(labs[n_train:].tolist())
    missing = sorted(tr - va)
    if missing:
        hint = ("shuffle=False keeps the class-sorted file order, so the last files (the validation subset) "
                "come from the last classes; pass shuffle=True with a seed" if not shuffle else
                "the validation subset is too small to hold every class; raise validation_split")
        warnings.warn(f"The validation subset ({n_val} files) has no files of class(es) "
                      f"{[names[i] for i in missing]}, which the training subset has: {hint}.", UserWarning,
                      stacklevel=3)


def _split(paths, labs, validation_split, subset):
    if not validation_split or subset is None:
        return list(paths), labs
    n_val = int(validation_split * len(paths))
    cut = len(paths) - n_val
    if subset == "training":
        return list(paths[:cut]), None if labs is None else labs[:cut].copy()
    return list(paths[cut:]), None if labs is None else labs[cut:].copy()


class ImageDataset:
    """An iterable of (images, labels) NumPy batches loaded from image files by C threads.

    Returned by `image_dataset_from_directory`. Iterating yields, per batch:

    * images: uint8 (B, H, W, 3) NHWC, the resized images (B = batch_size, smaller for the last one);
    * labels: int32 (B,) for label_mode="int", float32 one-hot (B, num_classes) for "categorical",
      float32 (B, 1) for "binary"; absent for label_mode=None (the iterator yields images only).

    With batch_size=None single images (H, W, 3) and scalar/1D labels are yielded instead.

    Order. `file_paths` is the file order after the seeded shuffle and split (as Keras'
    ``dataset.file_paths``). Epoch 0 — the first ``iter()`` — yields exactly that order. When
    ``shuffle=True`` every later epoch ``e`` yields the permutation
    ``np.random.default_rng([seed, e]).permutation(num_images)`` of it, so runs are reproducible and
    epochs differ. The epoch counter advances each time an iterator is created. ``predict``,
    ``evaluate`` and the feature pass of ``fit`` read the dataset with `iter_file_order` instead:
    file_paths order, epoch not advanced, so ``model.predict(ds).argmax(1)`` lines up with
    ``ds.labels`` (Keras follows the reshuffled order there; beyond Keras on purpose). Decoding and resizing
    of the next `prefetch` batches run on `num_threads` C threads while the caller works; the values do
    not depend on the thread count.

    Attributes:
      class_names (list[str]), file_paths (list[str]), labels (int32 (num_images,) aligned with
      file_paths, or None), num_images (int), num_classes (int), image_size ((H, W)), batch_size,
      label_mode, seed (int), shuffle (bool).
    """

    def __init__(self, file_paths, labels, *, class_names, label_mode, image_size, batch_size, shuffle, seed,
                 interpolation, crop_to_aspect_ratio, on_error, num_threads, max_pixels, prefetch, _interp):
        self.file_paths = list(file_paths)
        self.labels = labels
        self.class_names = class_names
        self.label_mode = label_mode
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.on_error = on_error
        self.num_threads = num_threads
        self.max_pixels = max_pixels
        self.prefetch = prefetch
        self._interp = _interp
        self._epoch = 0
        self._loader = None
        self._lock = threading.Lock()
        if on_error == "skip" and self.file_paths:
            self._drop_undecodable()

    # -- public ----------------------------------------------------------------------------
    @property
    def num_images(self):
        return len(self.file_paths)

    @property
    def num_classes(self):
        return 0 if self.class_names is None else len(self.class_names)

    def __len__(self):
        """Number of batches per epoch (images when batch_size is None)."""
        if self.batch_size is None:
            return self.num_images
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self):
        with self._lock:
            epoch = self._epoch
            self._epoch += 1
        order = self.epoch_order(epoch)
        if self.batch_size is None:
            return self._unbatched(order)
        return self._batches(order, self.batch_size)

    def iter_file_order(self):
        """Batches in `file_paths` order, aligned with `labels`, without advancing the epoch.

        What ``Sequential.predict`` and ``evaluate`` iterate (and the feature pass of ``fit``):
        a shuffling dataset keeps its shuffle state, and ``model.predict(ds).argmax(1)`` lines up
        with ``ds.labels`` and ``ds.file_paths``. Yields what iterating the dataset yields
        ((images, labels) batches, images only for label_mode=None, single images for
        batch_size=None), in the order of epoch 0.
        """
        order = np.arange(self.num_images, dtype=np.int64)
        if self.batch_size is None:
            return self._unbatched(order)
        return self._batches(order, self.batch_size)

    def epoch_order(self, epoch):
        """Indices into file_paths (int64 (num_images,)) in the order epoch `epoch` yields them."""
        n = self.num_images
        if not self.shuffle or epoch == 0:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(n).astype(np.int64)

    def as_numpy(self):
        """The whole set as arrays in file_paths order (no epoch shuffle; does not advance the epoch).

        Returns:
          (x, y): x uint8 (num_images, H, W, 3), y as the labels of a batch; or x alone when
          label_mode is None.
        """
        order = np.arange(self.num_images, dtype=np.int64)
        xs, ys = [], []
        for item in self._batches(order, 64):
            if self.label_mode is None:
                xs.append(item)
            else:
                xs.append(item[0])
                ys.append(item[1])
        h, w = self.image_size
        x = np.concatenate(xs) if xs else np.zeros((0, h, w, 3), np.uint8)
        if self.label_mode is None:
            return x
        return x, (np.concatenate(ys) if ys else self._encode(np.zeros(0, np.int32)))

    def close(self):
        """Stops the C threads (they restart on the next iteration)."""
        with self._lock:
            loader, self._loader = self._loader, None
        if loader is not None:
            loader.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return (f"<ImageDataset num_images={self.num_images} batches={len(self)} image_size={self.image_size} "
                f"classes={self.class_names} label_mode={self.label_mode!r}>")

    # -- internals -------------------------------------------------------------------------
    def _get_loader(self):
        with self._lock:
            if self._loader is None:
                h, w = self.image_size
                self._loader = _core.Loader(self.file_paths, h, w, self._interp, False, self.crop_to_aspect_ratio,
                                            self.max_pixels, self.num_threads)
            return self._loader

    def _encode(self, lab):
        if self.label_mode == "int":
            return lab.astype(np.int32)
        if self.label_mode == "binary":
            return lab.astype(np.float32).reshape(-1, 1)
        out = np.zeros((lab.shape[0], self.num_classes), np.float32)
        out[np.arange(lab.shape[0]), lab] = 1.0
        return out

    def _raise_for(self, idx, failures):
        pos, status, msg = failures[0]
        path = self.file_paths[idx[pos]]
        if status == _STATUS_DECODE:
            raise ImageDecodeError(f"{msg} (file {path!r}; pass on_error='skip' to leave undecodable files out)")
        if status == _STATUS_IO:
            raise OSError(f"Cannot read image file {path!r}: {msg}")
        if status == _STATUS_OOM:
            raise MemoryError(f"Out of memory loading {path!r}: {msg}")
        raise RuntimeError(f"Loading {path!r} failed: {msg}")

    def _batches(self, order, bs):
        loader = self._get_loader()
        chunks = [order[i:i + bs] for i in range(0, len(order), bs)]
        pending = []  # (ticket, indices)
        nxt = 0
        try:
            while nxt < len(chunks) and len(pending) < self.prefetch + 1:
                pending.append((loader.submit(chunks[nxt]), chunks[nxt]))
                nxt += 1
            while pending:
                ticket, idx = pending.pop(0)
                images, failures = loader.wait(ticket)
                if nxt < len(chunks):
                    pending.append((loader.submit(chunks[nxt]), chunks[nxt]))
                    nxt += 1
                if failures:  # "skip" removed the bad files at creation; a file changed since then
                    self._raise_for(idx, failures)
                if self.label_mode is None:
                    yield images
                else:
                    yield images, self._encode(self.labels[idx])
        finally:
            for ticket, _ in pending:  # consumer stopped early: let the threads finish our buffers
                try:
                    loader.wait(ticket)
                except Exception:
                    pass

    def _unbatched(self, order):
        for item in self._batches(order, 32):
            if self.label_mode is None:
                yield from item
            else:
                yield from zip(item[0], item[1])

    def _drop_undecodable(self):
        """on_error='skip': decode every file once (1x1 output: decoding is the cost) and drop failures."""
        probe = _core.Loader(self.file_paths, 1, 1, 1, False, False, self.max_pixels, self.num_threads)
        bad = set()
        msgs = []
        try:
            step = 256
            tickets = [(probe.submit(np.arange(i, min(i + step, self.num_images), dtype=np.int64)), i)
                       for i in range(0, self.num_images, step)]
            for t, start in tickets:
                _, failures = probe.wait(t)
                for pos, _status, msg in failures:
                    bad.add(start + pos)
                    msgs.append(msg)
        finally:
            probe.close()
        if not bad:
            return
        keep = [i for i in range(self.num_images) if i not in bad]
        skipped = [self.file_paths[i] for i in sorted(bad)]
        self.file_paths = [self.file_paths[i] for i in keep]
        if self.labels is not None:
            self.labels = self.labels[np.asarray(keep, dtype=np.int64)] if keep else self.labels[:0]
        warnings.warn(
            f"Skipped {len(skipped)} undecodable image file(s) (on_error='skip'):\n  "
            + "\n  ".join(msgs),
            stacklevel=3,
        )
        if not self.file_paths:
            raise ValueError("No decodable images left after on_error='skip' skipped: " + ", ".join(skipped))
