"""image_dataset_from_directory / ImageDataset on the shared flower photos and on small folders
made in the tests (symlinks to shared photos, images written with Pillow, broken files)."""
import io
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import FLOWERS
from tflite_transfer import data
from tflite_transfer._native import ImageDecodeError

COUNTS = {"daisy": 498, "dandelion": 727, "roses": 528, "sunflowers": 547, "tulips": 636}


def _keras_listing(root):
    """Keras' index_directory order, re-derived here: sorted class folders, each walked with
    sorted roots and sorted file names."""
    paths, labels = [], []
    for i, c in enumerate(sorted(COUNTS)):
        for r, _, files in sorted(os.walk(os.path.join(root, c)), key=lambda t: t[0]):
            for f in sorted(files):
                if f.lower().endswith((".bmp", ".gif", ".jpeg", ".jpg", ".png")):
                    paths.append(os.path.join(r, f))
                    labels.append(i)
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def flowers_split():
    return data.image_dataset_from_directory(FLOWERS, image_size=(64, 64), batch_size=32, seed=123,
                                             validation_split=0.2, subset="both", verbose=False)


def test_counts_and_class_names_on_flowers():
    ds = data.image_dataset_from_directory(FLOWERS, image_size=(64, 64), seed=1, verbose=False)
    assert ds.class_names == sorted(COUNTS)
    assert ds.num_images == 2936 and len(ds.file_paths) == 2936
    assert len(ds) == 92  # ceil(2936 / 32)
    assert dict(zip(ds.class_names, np.bincount(ds.labels).tolist())) == COUNTS
    assert ds.labels.dtype == np.int32
    for p, l in zip(ds.file_paths[:50], ds.labels[:50]):
        assert os.path.basename(os.path.dirname(p)) == ds.class_names[l]


def test_split_sizes_order_and_no_overlap(flowers_split):
    train, val = flowers_split
    assert (train.num_images, val.num_images) == (2349, 587)  # int(0.2 * 2936) = 587 held out, as Keras
    assert not set(train.file_paths) & set(val.file_paths)
    assert sorted(train.file_paths + val.file_paths) == sorted(_keras_listing(str(FLOWERS))[0])
    # Keras: shuffle the listing with RandomState(seed), take the last 587 for validation
    paths, labels = _keras_listing(str(FLOWERS))
    np.random.RandomState(123).shuffle(paths)
    np.random.RandomState(123).shuffle(labels)
    assert train.file_paths == paths[:2349] and val.file_paths == paths[2349:]
    np.testing.assert_array_equal(np.concatenate([train.labels, val.labels]), labels)
    assert (len(train), len(val)) == (74, 19)


def test_subsets_separately_equal_both(flowers_split):
    train, val = flowers_split
    t = data.image_dataset_from_directory(FLOWERS, image_size=(64, 64), seed=123, validation_split=0.2,
                                          subset="training", verbose=False)
    v = data.image_dataset_from_directory(FLOWERS, image_size=(64, 64), seed=123, validation_split=0.2,
                                          subset="validation", verbose=False)
    assert t.file_paths == train.file_paths and v.file_paths == val.file_paths


def test_batches_dtypes_and_values(flowers_split):
    _, val = flowers_split
    it = iter(val)
    x, y = next(it)
    assert x.shape == (32, 64, 64, 3) and x.dtype == np.uint8
    assert y.shape == (32,) and y.dtype == np.int32
    np.testing.assert_array_equal(y, val.labels[:32])  # epoch 0 yields file_paths order
    for i in (0, 17):
        ref = data.load_img(val.file_paths[i], target_size=(64, 64))
        np.testing.assert_array_equal(x[i], ref)
    it.close()


def test_batch_pixels_match_pillow_decode_plus_tf_resize_formula(flowers_split):
    """End to end, independently of our C code: Pillow decode + NumPy TF-bilinear formula, rounded."""
    from test_resize import _ref

    _, val = flowers_split
    x, _ = next(iter(val))
    for i in (3, 20):
        ref = _ref(np.asarray(Image.open(val.file_paths[i]).convert("RGB")), (64, 64), "bilinear")
        d = np.abs(x[i].astype(np.float64) - ref)
        assert d.mean() < 0.75 and d.max() <= 12  # decoder differences (see test_decode) + rounding


def _mini(tmp_path, per_class=(5, 3, 4)):
    """Small class tree of symlinks to shared photos (no copies)."""
    src = sorted(FLOWERS.glob("*/*.jpg"))
    root = tmp_path / "mini"
    k = 0
    for c, n in zip(("a", "b", "c"), per_class):
        (root / c).mkdir(parents=True)
        for j in range(n):
            os.symlink(src[k * 97], root / c / f"img{j}.jpg")
            k += 1
    return root


def test_thread_count_does_not_change_results(tmp_path):
    root = _mini(tmp_path)
    outs = []
    for nt in (1, 2):
        ds = data.image_dataset_from_directory(root, image_size=(40, 50), batch_size=5, seed=9, num_threads=nt,
                                               verbose=False)
        epochs = [[(x.copy(), y.copy()) for x, y in ds] for _ in range(2)]
        outs.append((ds.file_paths, epochs))
    assert outs[0][0] == outs[1][0]
    for e0, e1 in zip(outs[0][1], outs[1][1]):
        for (x0, y0), (x1, y1) in zip(e0, e1):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)


def test_epochs_reshuffle_deterministically(tmp_path):
    root = _mini(tmp_path, (6, 6, 6))
    ds = data.image_dataset_from_directory(root, image_size=(8, 8), batch_size=4, seed=3, verbose=False)
    assert len(ds) == 5
    e0 = np.concatenate([y for _, y in ds])
    e1 = np.concatenate([y for _, y in ds])
    np.testing.assert_array_equal(e0, ds.labels)
    np.testing.assert_array_equal(np.sort(e1), np.sort(e0))
    assert not np.array_equal(ds.epoch_order(1), ds.epoch_order(0))
    assert not np.array_equal(ds.epoch_order(1), ds.epoch_order(2))
    np.testing.assert_array_equal(e1, ds.labels[ds.epoch_order(1)])
    ds2 = data.image_dataset_from_directory(root, image_size=(8, 8), batch_size=4, seed=3, verbose=False)
    np.testing.assert_array_equal(ds2.epoch_order(1), ds.epoch_order(1))
    fixed = data.image_dataset_from_directory(root, image_size=(8, 8), shuffle=False, verbose=False)
    np.testing.assert_array_equal(fixed.epoch_order(5), np.arange(18))
    assert fixed.file_paths == sorted(fixed.file_paths)


def test_label_modes_and_as_numpy(tmp_path):
    root = _mini(tmp_path)
    ds = data.image_dataset_from_directory(root, image_size=(16, 16), batch_size=5, label_mode="categorical",
                                           seed=0, verbose=False)
    x, y = next(iter(ds))
    assert y.dtype == np.float32 and y.shape == (5, 3)
    np.testing.assert_array_equal(y.argmax(1), ds.labels[:5])
    np.testing.assert_array_equal(y.sum(1), 1)
    xa, ya = ds.as_numpy()
    assert xa.shape == (12, 16, 16, 3) and ya.shape == (12, 3)
    np.testing.assert_array_equal(xa[:5], x)
    none = data.image_dataset_from_directory(root, image_size=(16, 16), label_mode=None, shuffle=False,
                                             verbose=False)
    b = next(iter(none))
    assert isinstance(b, np.ndarray) and b.shape == (12, 16, 16, 3) and none.labels is None
    assert none.as_numpy().shape == (12, 16, 16, 3)
    single = data.image_dataset_from_directory(root, image_size=(16, 16), batch_size=None, shuffle=False,
                                               verbose=False)
    items = list(single)
    assert len(items) == len(single) == 12 and items[0][0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="exactly 2"):
        data.image_dataset_from_directory(root, label_mode="binary", verbose=False)


def test_explicit_labels_and_class_names_order(tmp_path):
    root = _mini(tmp_path)
    ds = data.image_dataset_from_directory(root, class_names=["c", "b", "a"], shuffle=False, image_size=(8, 8),
                                           verbose=False)
    assert ds.class_names == ["c", "b", "a"]
    np.testing.assert_array_equal(ds.labels, [2] * 5 + [1] * 3 + [0] * 4)
    with pytest.raises(ValueError, match="did not match"):
        data.image_dataset_from_directory(root, class_names=["a", "b"], verbose=False)
    ds = data.image_dataset_from_directory(root, labels=list(range(12)), shuffle=False, image_size=(8, 8),
                                           verbose=False)
    np.testing.assert_array_equal(ds.labels, np.arange(12))
    with pytest.raises(ValueError, match="lengths of `labels`"):
        data.image_dataset_from_directory(root, labels=[0, 1], verbose=False)


def _png(color, size=(6, 5), mode="RGB"):
    b = io.BytesIO()
    Image.new(mode, size, color).save(b, "PNG")
    return b.getvalue()


def test_awkward_names_and_extensions(tmp_path):
    root = tmp_path / "awk"
    (root / "x").mkdir(parents=True)
    (root / "y" / "nested").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "x" / "UPPER.PNG").write_bytes(_png((255, 0, 0)))
    (root / "x" / "été_花.Jpeg").write_bytes(_png((0, 255, 0)))  # PNG content, odd name and case
    (root / "x" / "readme.txt").write_text("not an image")
    (root / "y" / "nested" / "deep.gif").write_bytes(_png((0, 0, 255)))
    (root / "y" / "gray.bmp").write_bytes(_png(128, mode="L"))
    (root / ".hidden" / "skip.png").write_bytes(_png((1, 2, 3)))
    (root / "loose.png").write_bytes(_png((9, 9, 9)))  # not in a class folder: ignored with inferred labels
    ds = data.image_dataset_from_directory(root, image_size=(3, 3), shuffle=False, verbose=False)
    assert ds.class_names == ["x", "y"]
    assert [os.path.relpath(p, root) for p in ds.file_paths] == [
        "x/UPPER.PNG", "x/été_花.Jpeg", "y/gray.bmp", "y/nested/deep.gif"]
    x, y = ds.as_numpy()
    np.testing.assert_array_equal(x[:, 1, 1], [[255, 0, 0], [0, 255, 0], [128, 128, 128], [0, 0, 255]])


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.image_dataset_from_directory(tmp_path / "missing")
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        data.image_dataset_from_directory(f)
    empty_root = tmp_path / "noimg"
    (empty_root / "a").mkdir(parents=True)
    (empty_root / "a" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="No images found"):
        data.image_dataset_from_directory(empty_root)
    root = tmp_path / "emptyclass"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "i.png").write_bytes(_png((1, 1, 1)))
    with pytest.raises(ValueError, match=r"\['b'\].*no images"):
        data.image_dataset_from_directory(root)


def test_argument_errors(tmp_path):
    root = _mini(tmp_path)
    with pytest.raises(ValueError, match="must provide a `seed`"):
        data.image_dataset_from_directory(root, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="inversely"):
        data.image_dataset_from_directory(root, subset="training", seed=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        data.image_dataset_from_directory(root, validation_split=1.5, subset="training", seed=1)
    with pytest.raises(ValueError, match="`subset`"):
        data.image_dataset_from_directory(root, validation_split=0.2, subset="test", seed=1)
    with pytest.raises(ValueError, match="label_mode"):
        data.image_dataset_from_directory(root, label_mode="sparse")
    with pytest.raises(ValueError, match="image_size"):
        data.image_dataset_from_directory(root, image_size=(0, 3))
    with pytest.raises(ValueError, match="batch_size"):
        data.image_dataset_from_directory(root, batch_size=0)
    with pytest.raises(ValueError, match="interpolation"):
        data.image_dataset_from_directory(root, interpolation="lanczos3")
    with pytest.raises(ValueError, match="on_error"):
        data.image_dataset_from_directory(root, on_error="ignore")
    with pytest.raises(ValueError, match="num_threads"):
        data.image_dataset_from_directory(root, num_threads=0)


def _with_broken(tmp_path):
    root = tmp_path / "broken"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "ok1.png").write_bytes(_png((10, 20, 30)))
    (root / "a" / "zero.jpg").write_bytes(b"")
    (root / "b" / "ok2.png").write_bytes(_png((40, 50, 60)))
    (root / "b" / "text.jpg").write_text("hello")
    (root / "b" / "trunc.png").write_bytes(_png((1, 2, 3), size=(64, 64))[:60])
    return root


def test_on_error_raise_names_the_file(tmp_path):
    root = _with_broken(tmp_path)
    ds = data.image_dataset_from_directory(root, image_size=(4, 4), shuffle=False, verbose=False)
    assert ds.num_images == 5
    with pytest.raises(ImageDecodeError, match=r"zero\.jpg"):
        list(ds)


def test_on_error_skip_warns_once_listing_all(tmp_path):
    root = _with_broken(tmp_path)
    os.mkfifo(root / "b" / "pipe.jpg")  # must fail at once, not block a C thread
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = data.image_dataset_from_directory(root, image_size=(4, 4), shuffle=False, on_error="skip",
                                               verbose=False)
    msgs = [str(m.message) for m in w]
    assert len(msgs) == 1
    for name in ("zero.jpg", "text.jpg", "trunc.png", "pipe.jpg"):
        assert name in msgs[0]
    assert [os.path.basename(p) for p in ds.file_paths] == ["ok1.png", "ok2.png"]
    np.testing.assert_array_equal(ds.labels, [0, 1])
    x, y = ds.as_numpy()
    np.testing.assert_array_equal(x[:, 0, 0], [[10, 20, 30], [40, 50, 60]])


def test_early_stop_then_iterate_again(tmp_path):
    root = _mini(tmp_path)
    ds = data.image_dataset_from_directory(root, image_size=(8, 8), batch_size=2, seed=1, prefetch=3,
                                           verbose=False)
    for i, _ in enumerate(ds):
        if i == 1:
            break
    assert sum(len(y) for _, y in ds) == 12
    ds.close()
    assert sum(len(y) for _, y in ds) == 12  # threads restart after close()
