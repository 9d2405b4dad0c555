"""Command line: ``tflite-transfer flowers``, ``tflite-transfer train DIR``,
``tflite-transfer classify [MODEL.tflite] IMAGE...`` and
``tflite-transfer features DIR --scheduler ADDRESS`` (also ``python -m tflite_transfer ...``).
See ``--help`` of each subcommand."""
import argparse
import os
import sys
import warnings

_IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _size(s):
    parts = s.lower().replace("x", ",").split(",")
    try:
        vals = tuple(int(p) for p in parts if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size must be N or H,W. Received: {s!r}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"--image-size must be N or H,W. Received: {s!r}")
    return vals


def _common(p, epochs=10):
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=_size, default=(224, 224), help="N or H,W (default 224)")
    p.add_argument("--validation-split", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--weights", default="imagenet", help='"imagenet" or a MobileNetV2 .tflite path')
    p.add_argument("--dtype", default="float32", choices=("float32", "mixed_bfloat16", "int8", "int8_tflite"),
                   help="precision of the frozen base (bf16 needs AVX512_BF16/AMX; int8: the file's own "
                        "quantization, needs VNNI; both need --no-fine-tune). Default %(default)s")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--on-error", default="raise", choices=("raise", "skip"),
                   help="undecodable photos: stop with an error naming the file (raise, default) or leave them "
                        "out with one warning listing them (skip)")
    ft = p.add_argument_group("fine-tuning (stage 2, after the frozen stage)")
    ft.add_argument("--no-fine-tune", dest="fine_tune", action="store_false",
                    help="stop after the frozen stage (no fine-tuning of the base)")
    ft.add_argument("--fine-tune-at", type=int, default=100,
                    help="first trainable layer of MobileNetV2's 154 Keras layers (default %(default)s; 0: all)")
    ft.add_argument("--fine-tune-epochs", type=int, default=10, help="fine-tuning epochs (default %(default)s)")
    ft.add_argument("--fine-tune-learning-rate", type=float, default=1e-5,
                    help="RMSprop learning rate of the fine-tuning stage (default %(default)s)")


def build_parser():
    ap = argparse.ArgumentParser(prog="tflite-transfer", description="Transfer learning with MobileNetV2 (TFLite) "
                                 "and a Keras-like API, no TensorFlow needed.")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flowers", help="the tf_flowers job (with and without augmentation; frozen, then fine-tuned)")
    _common(f)
    g = f.add_mutually_exclusive_group()
    g.add_argument("--no-augment", action="store_true", help="only the run without augmentation")
    g.add_argument("--augment-only", action="store_true", help="only the run with augmentation")
    f.add_argument("--data-dir", default=None, help="flower_photos folder (default: datasets.tf_flowers())")
    f.add_argument("--output", default="flowers_output", help="folder for models and summary.json")
    t = sub.add_parser("train", help="train a classifier head on any folder of class sub-folders")
    t.add_argument("directory")
    _common(t)
    t.add_argument("--augment", dest="augment", action="store_true", help="use flip/brightness/contrast augmentation")
    t.add_argument("--no-augment", dest="augment", action="store_false")
    t.set_defaults(augment=False)
    t.add_argument("--output", default="train_output")
    c = sub.add_parser("classify", help="top-k classes of photos: ImageNet (MobileNetV2 with its classifier) or "
                       "a model written by model.export (classify model.tflite IMAGE...)")
    c.add_argument("images", nargs="+", help="image files, or folders whose images are all classified; a first "
                   "argument ending in .tflite is an exported model whose class names are printed")
    c.add_argument("--weights", default="imagenet", help='"imagenet", a MobileNetV2 .tflite path or an exported '
                   "model (.tflite with class names)")
    c.add_argument("--top", type=int, default=5, help="classes to print per image (default 5)")
    e = sub.add_parser("features", help="pooled base features of every image under a folder, computed on a Dask "
                       "cluster, written as .npy shards (needs the [distributed] extra)")
    e.add_argument("directory", help="a folder of class sub-folders (labels are kept) or of images")
    e.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786 "
                   "(default: a LocalCluster with one single-threaded worker process per core)")
    e.add_argument("--output", default="features", help="folder for the shards, index.json, labels.npy "
                   "(default %(default)s)")
    e.add_argument("--weights", default="imagenet", help='"imagenet" or a MobileNetV2 .tflite path')
    e.add_argument("--model", default=None, help="a saved Sequential (.ttz) to run instead of the pooled base")
    e.add_argument("--image-size", type=_size, default=(224, 224), help="N or H,W (default 224)")
    e.add_argument("--pooling", default="avg", choices=("avg", "max"))
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--partition-size", type=int, default=256, help="images per task (default %(default)s)")
    e.add_argument("--on-error", default="skip", choices=("skip", "raise"),
                   help="undecodable files: leave out and list (default) or stop")
    e.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes when no "
                   "--scheduler is given (default: os.cpu_count())")
    e.add_argument("--verbose", type=int, default=1, choices=(0, 1))
    return ap


def features(args, print_fn=print):
    """The ``features`` subcommand: runs `distributed.predict` over `args.directory` with the
    pooled MobileNetV2 base (or `args.model`) and writes shards to `args.output`. Returns the
    DistributedPrediction. Raises ImportError without dask.distributed, ValueError / OSError
    for bad folders, files and options."""
    from . import applications, data, distributed
    from .models import load_model

    import dask.distributed as dd

    directory = args.directory
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"`directory` {directory!r} is not a folder.")
    if args.model:
        model = load_model(args.model, compile=False)
    else:
        model = applications.MobileNetV2(input_shape=tuple(args.image_size) + (3,), include_top=False,
                                         weights=args.weights, pooling=args.pooling)
    hw = tuple(distributed._model_image_size(model))
    subdirs = [d for d in os.listdir(directory) if not d.startswith(".") and os.path.isdir(os.path.join(directory, d))]
    src = directory
    if subdirs:  # class sub-folders: keep the labels, in Keras' file order
        src = data.image_dataset_from_directory(directory, image_size=hw, shuffle=False, batch_size=args.batch_size,
                                                verbose=False)
    if args.scheduler:
        client, cluster = dd.Client(args.scheduler), None
    else:
        cluster = dd.LocalCluster(n_workers=args.workers or os.cpu_count() or 1, threads_per_worker=1,
                                  processes=True, dashboard_address=None)
        client = dd.Client(cluster)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped files are printed below
            res = distributed.predict(model, src, client=client, batch_size=args.batch_size,
                                      partition_size=args.partition_size, output=args.output,
                                      on_error=args.on_error, verbose=args.verbose)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows = len(res.file_paths)
    print_fn(f"Wrote {rows} feature rows in {len(res.shards)} shard(s) to {res.output} "
             f"(index.json{', labels.npy' if res.labels is not None else ''}); skipped {len(res.skipped)} file(s).")
    for p, msg in res.skipped:
        print_fn(f"  skipped {p}: {msg}")
    return res


def _image_files(paths):
    """Files of `paths` (folders expanded to their images, sorted); raises FileNotFoundError."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            # Hidden entries (macOS "._x.jpg", ".ipynb_checkpoints") are skipped, as the datasets do.
            files += sorted(os.path.join(p, f) for f in os.listdir(p)
                            if not f.startswith(".") and f.lower().endswith(_IMAGE_EXTENSIONS))
        elif os.path.exists(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"No such image file or folder: {p}")
    return files


def classify(paths, weights="imagenet", top=5, print_fn=print):
    """Prints the top-`top` ImageNet classes of each image; returns the number of images
    that could not be read (int). A model written by ``model.export(..., format="litert")``
    (a .tflite with class names, as `weights` or as the first of `paths`) prints its own
    class names instead, with its own input size. Images are resized to 224x224 (bilinear) as uint8 and
    preprocessed by the model (``x / 127.5 - 1``); class 0 of the 1001 outputs is
    "background" (see ``applications.mobilenet_v2``)."""
    import numpy as np

    from . import applications, data
    from .applications.mobilenet_v2 import decode_predictions

    paths = list(paths)
    if paths and str(paths[0]).lower().endswith(".tflite") and os.path.isfile(paths[0]):
        weights, paths = paths[0], paths[1:]  # tflite-transfer classify model.tflite images...
    files = _image_files(paths)
    if not files:
        raise ValueError(f"No images (.bmp .gif .jpeg .jpg .png) in {list(paths)}")
    if isinstance(weights, str) and weights.lower().endswith(".tflite") and os.path.isfile(weights):
        from .export import read_labels

        labels = read_labels(weights)
        if labels is not None:
            return _classify_exported(weights, labels, files, top, print_fn)
    model = applications.MobileNetV2(include_top=True, weights=weights)
    batch, names, failed = [], [], 0
    for f in files:
        try:
            batch.append(data.load_img(f, target_size=(224, 224)))
            names.append(f)
        except (ValueError, OSError) as e:
            print_fn(f"{f}: cannot read: {e}")
            failed += 1
    if batch:
        probs = model.predict(np.stack(batch), batch_size=32)
        for name, preds in zip(names, decode_predictions(probs, top=top)):
            print_fn(name)
            for class_id, label, score in preds:
                print_fn(f"  {score:7.4f}  {class_id:>4}  {label}")
    return failed


def _classify_exported(path, labels, files, top, print_fn):
    """classify() for a file written by ``model.export``: its own input size, input
    type (uint8 pixels or float32 in [-1, 1]) and class names (its "labels" metadata).
    Runs in the package's engine."""
    import numpy as np

    from . import _native, data
    from .applications.mobilenet_v2 import preprocess_input

    with open(path, "rb") as f:
        model = _native._core.Model(f.read(), name=path)
    info = model.tensors[model.inputs[0]]
    _, h, w, _ = info["shape"]
    out_t = model.outputs[0]
    if len(labels) != model.tensors[out_t]["shape"][-1]:
        raise ValueError(f"{path}: {len(labels)} labels for {model.tensors[out_t]['shape'][-1]} outputs.")
    batch, names, failed = [], [], 0
    for f in files:
        try:
            batch.append(data.load_img(f, target_size=(int(h), int(w))))
            names.append(f)
        except (ValueError, OSError) as e:
            print_fn(f"{f}: cannot read: {e}")
            failed += 1
    if not batch:
        return failed
    x = np.stack(batch)
    q = info["quantization"]
    if info["dtype"] == "uint8" and q:
        # The engine takes the input tensor's real value: (q - zero_point) * scale.
        xf = (x.astype(np.float32) - np.float32(q["zero_point"][0])) * np.float32(q["scale"][0])
    else:
        xf = preprocess_input(x)
    probs = model.run(np.ascontiguousarray(xf, dtype=np.float32), out_t)
    k = min(top, len(labels))
    for name, row in zip(names, probs):
        print_fn(name)
        for i in np.argsort(-row, kind="stable")[:k]:
            print_fn(f"  {float(row[i]):7.4f}  {int(i):>4}  {labels[int(i)]}")
    return failed


#: Python-API spellings in error hints -> this interface's options (hints are worded for the
#: interface they appear in).
_CLI_SPELLINGS = {"on_error='skip'": "--on-error skip", "on_error='raise'": "--on-error raise",
                  "`validation_split`": "--validation-split", "validation_split": "--validation-split",
                  "`batch_size`": "--batch-size", "`image_size`": "--image-size", "`epochs`": "--epochs",
                  "Use dtype='float32'.": "Use --dtype float32.", "dtype='int8_tflite' needs": "--dtype int8_tflite needs",
                  "dtype='int8' needs": "--dtype int8 needs", "dtype='mixed_bfloat16' needs": "--dtype mixed_bfloat16 needs"}


def _cli_message(msg):
    """An error message with the Python-API hints reworded as this CLI's options."""
    for api, cli in _CLI_SPELLINGS.items():
        msg = msg.replace(api, cli)
    return msg


def main(argv=None):
    """Entry point of the ``tflite-transfer`` console script; returns the exit status (int)."""
    args = build_parser().parse_args(argv)
    if args.command == "classify":
        if args.top < 1:
            print("tflite-transfer: --top must be >= 1.", file=sys.stderr)
            return 2
        try:
            return 1 if classify(args.images, weights=args.weights, top=args.top) else 0
        except (ValueError, OSError) as e:
            print(f"tflite-transfer: {_cli_message(str(e))}", file=sys.stderr)
            return 1
    if args.command == "features":
        if args.batch_size < 1 or args.partition_size < 1 or (args.workers is not None and args.workers < 1):
            print("tflite-transfer: --batch-size, --partition-size and --workers must be >= 1.", file=sys.stderr)
            return 2
        try:
            features(args)
        except ImportError as e:
            print(f"tflite-transfer: {e} (pip install 'tflite_transfer[distributed]')", file=sys.stderr)
            return 1
        except (ValueError, OSError) as e:
            print(f"tflite-transfer: {e}", file=sys.stderr)
            return 1
        return 0
    from . import flowers

    if args.epochs < 1 or args.batch_size < 1 or not (0.0 < args.validation_split < 1.0) or \
            args.fine_tune_epochs < 1:
        print("tflite-transfer: --epochs, --fine-tune-epochs and --batch-size must be >= 1 and --validation-split "
              "in (0, 1).", file=sys.stderr)
        return 2
    if args.command == "flowers":
        augment = (False,) if args.no_augment else (True,) if args.augment_only else (False, True)
        directory = args.data_dir
    else:
        augment = (args.augment,)
        directory = args.directory
    try:
        flowers.run(directory=directory, epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
                    validation_split=args.validation_split, seed=args.seed, augment=augment, weights=args.weights,
                    output=args.output, verbose=args.verbose, fine_tune=args.fine_tune, fine_tune_at=args.fine_tune_at,
                    fine_tune_epochs=args.fine_tune_epochs, fine_tune_learning_rate=args.fine_tune_learning_rate,
                    on_error=args.on_error, dtype=args.dtype)
    except (ValueError, OSError) as e:
        # Bad folders, files and options: the message names them; a traceback would only hide it.
        print(f"tflite-transfer: {_cli_message(str(e))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
