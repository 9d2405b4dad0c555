"""Benchmark (not a test): the flowers job with tflite_transfer and with Keras/TensorFlow, side
by side in one run, with the ratios Keras/ours.

Both sides train the TensorFlow transfer-learning tutorial's model on tf_flowers
(validation_split=0.2, subset="both", seed=123, 224x224, batch 32): [RandomFlip("horizontal"),
RandomBrightness(0.2), RandomContrast(0.2) in the augmented run] -> mobilenet_v2.preprocess_input
-> MobileNetV2 (frozen) -> GlobalAveragePooling2D -> Dropout(0.2) -> Dense(5, softmax), Adam(1e-3),
sparse categorical cross-entropy, ``fit`` with validation_data.

* ours: the Sequential of ``tflite_transfer.flowers`` (same layers, seeds and data loader).
* Keras: the tutorial's pipeline, ``keras.utils.image_dataset_from_directory(...)`` with
  ``.prefetch(AUTOTUNE)`` and a functional model, ``base(x, training=False)``. ImageNet Keras
  weights cannot be downloaded here, so ``keras.applications.MobileNetV2(weights=None)`` is given
  our .tflite model's dequantized float32 weights (batch norm folded: gamma 1, beta = bias, mean 0,
  var 1 - eps; as in tests/test_keras_parity.py): both sides run the same network and their
  accuracies are comparable. The weights are handed over as a temporary .npz, so the Keras process
  never imports tflite_transfer.

Each (framework, run) is its own subprocess, so its peak RSS (resource.getrusage ru_maxrss) is its
own; runs are interleaved (ours, Keras, ours, Keras) so that a change in the machine's load hits
both sides alike. Threads: ours ``tflite_transfer.set_num_threads(2)`` (oneDNN/OpenMP); TensorFlow
``tf.config.threading.set_intra_op_parallelism_threads(2)`` and ``..._inter_op_...(2)`` (tf.data's
own thread pool is left at its default; our loader's decode pool likewise).

    python benchmarks/bench_flowers_keras.py [--epochs 3] [--data-dir DIR] [--threads 2]
        [--runs no_augmentation augmented]

Needs TensorFlow (``pip install tensorflow-cpu``); without it, prints "not run: TensorFlow not
installed". Writes benchmarks/results/flowers_keras.json. Wall time per epoch is measured by an
on_epoch_begin/on_epoch_end callback (includes the epoch's validation pass); the 10-epoch figure
is extrapolated when fewer epochs are run: measured wall + (10 - epochs) x mean epoch time of
epochs 2.. (epoch 1 carries one-off costs: our feature cache, TF's tracing).
"""
import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RUNS = ("no_augmentation", "augmented")


def _epoch_timer():
    """(on_epoch_begin, on_epoch_end, times): appends each epoch's wall time (s) to times."""
    times, start = [], [0.0]

    def begin(epoch, logs=None):
        start[0] = time.perf_counter()

    def end(epoch, logs=None):
        times.append(time.perf_counter() - start[0])

    return begin, end, times


def _result(framework, run, wall, fit_s, epoch_s, history, threads, **extra):
    return dict(framework=framework, run=run, wall_s=wall, fit_s=fit_s, epoch_s=epoch_s,
                val_accuracy=float(history["val_accuracy"][-1]),
                history={k: [float(v) for v in vs] for k, vs in history.items()}, threads=threads,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra)


def one_ours(args):
    sys.path.insert(0, REPO)  # the in-place build before any installed copy
    t0 = time.perf_counter()
    import tflite_transfer as tt
    from tflite_transfer import applications, layers, optimizers
    from tflite_transfer.data import image_dataset_from_directory
    from tflite_transfer.flowers import _seeded

    tt.set_num_threads(args.threads)
    seed = 123
    train_ds, val_ds = image_dataset_from_directory(args.data_dir, validation_split=0.2, subset="both",
                                                    seed=seed, image_size=(224, 224), batch_size=32)
    layers.set_random_seed(seed)
    base = applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=args.weights)
    base.trainable = False
    stack = []
    if args.one == "augmented":
        stack += [_seeded(layers.RandomFlip, "horizontal", seed=seed), _seeded(layers.RandomBrightness, 0.2, seed=seed),
                  _seeded(layers.RandomContrast, 0.2, seed=seed)]
    stack += [base, layers.GlobalAveragePooling2D(), layers.Dropout(0.2, seed=seed),
              layers.Dense(len(train_ds.class_names), activation="softmax", seed=seed)]
    model = tt.Sequential(stack)
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    begin, end, epoch_s = _epoch_timer()
    t = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0,
                        callbacks=[tt.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)])
    fit_s = time.perf_counter() - t
    timings = history.params.get("timings", {})
    print(json.dumps(_result("tflite_transfer", args.one, time.perf_counter() - t0, fit_s, epoch_s, history.history,
                             tt.get_num_threads(), fit_path=model.last_fit_path,
                             fit_timings_s={k: float(v) for k, v in timings.items()})))


def _load_weights(base, npz_path):
    """Puts the dequantized .tflite weights (written by _dump_weights) into Keras' MobileNetV2."""
    import keras

    w = dict(__import__("numpy").load(npz_path))
    k_layers = list(base.layers)
    k_convs = [l for l in k_layers if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert len(k_convs) == 52 and int(w["n"]) >= 52, (len(k_convs), int(w["n"]))
    for i, layer in enumerate(k_convs):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        assert bool(w[f"dw{i}"]) == depthwise and tuple(w[f"s{i}"]) == tuple(layer.strides), layer.name
        kernel, bias = w[f"k{i}"], w[f"b{i}"]
        assert kernel.shape == tuple(layer.kernel.shape), (layer.name, kernel.shape, layer.kernel.shape)
        layer.set_weights([kernel])
        bn = k_layers[k_layers.index(layer) + 1]
        assert isinstance(bn, keras.layers.BatchNormalization), bn.name
        bn.set_weights([bias * 0 + 1, bias, bias * 0, bias * 0 + (1.0 - bn.epsilon)])


def one_keras(args):
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    seed = 123
    keras.utils.set_random_seed(seed)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.data_dir, validation_split=0.2, subset="both", seed=seed, image_size=(224, 224), batch_size=32,
        verbose=False)
    n_classes = len(train_ds.class_names)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=None)
    _load_weights(base, args.weights_npz)
    base.trainable = False
    inputs = keras.Input(shape=(224, 224, 3))
    x = inputs
    if args.one == "augmented":
        x = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed),
                              keras.layers.RandomBrightness(0.2, seed=seed),
                              keras.layers.RandomContrast(0.2, seed=seed)])(x)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    begin, end, epoch_s = _epoch_timer()
    t = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)])
    fit_s = time.perf_counter() - t
    print(json.dumps(_result("keras", args.one, time.perf_counter() - t0, fit_s, epoch_s, history.history,
                             args.threads, tensorflow=tf.__version__, keras=keras.__version__)))


def _dump_weights(weights, path):
    """Writes the base's dequantized conv kernels (Keras layout) and folded biases to an .npz."""
    sys.path.insert(0, REPO)
    import numpy as np

    from tflite_transfer.applications import mobilenet_v2 as mv

    core = mv.MobileNetV2(weights=weights, include_top=False, input_shape=(224, 224, 3)).model
    convs = [op for op in core.ops if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    arrays = {"n": np.array(len(convs))}
    for i, op in enumerate(convs):
        # TFLite [O, KH, KW, I] (depthwise [1, KH, KW, C]) -> Keras [KH, KW, I, O] ([KH, KW, C, 1])
        arrays[f"k{i}"] = core.get_tensor(op["inputs"][1]).transpose(1, 2, 3, 0)
        arrays[f"b{i}"] = core.get_tensor(op["inputs"][2])
        arrays[f"dw{i}"] = np.array(op["type"] == "DEPTHWISE_CONV_2D")
        arrays[f"s{i}"] = np.array([op["options"]["stride_h"], op["options"]["stride_w"]])
    np.savez(path, **arrays)
    return mv.weights_path(weights) if not os.path.exists(str(weights)) else str(weights)


def _extrapolate(r, epochs, target=10):
    """Measured wall + (target - epochs) x mean steady epoch (epochs 2.., or epoch 1 if alone)."""
    steady = r["epoch_s"][1:] or r["epoch_s"]
    per = sum(steady) / len(steady)
    return r["wall_s"] + (target - epochs) * per, per


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", default=None, help="class-folder tree (default: datasets.tf_flowers())")
    ap.add_argument("--weights", default="imagenet", help='"imagenet" or a .tflite path (both sides use it)')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "flowers_keras.json"))
    ap.add_argument("--one", choices=RUNS, help=argparse.SUPPRESS)
    ap.add_argument("--framework", choices=("ours", "keras"), help=argparse.SUPPRESS)
    ap.add_argument("--weights-npz", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one_ours(args) if args.framework == "ours" else one_keras(args)
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        print("not run: TensorFlow not installed")
        return 0
    if args.data_dir is None:
        sys.path.insert(0, REPO)
        from tflite_transfer import datasets
        args.data_dir = str(datasets.tf_flowers())
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"load average at start (1/5/15 min): {load_start}; data {args.data_dir}; epochs {args.epochs}; "
          f"threads {args.threads}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "mobilenet_v2_weights.npz")
        weights_file = _dump_weights(args.weights, npz)
        for run in args.runs:
            for fw in ("ours", "keras"):
                cmd = [sys.executable, os.path.abspath(__file__), "--one", run, "--framework", fw, "--epochs",
                       str(args.epochs), "--data-dir", args.data_dir, "--weights", args.weights, "--threads",
                       str(args.threads), "--weights-npz", npz]
                la = os.getloadavg()[0]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{fw} {run} failed:\n{proc.stderr[-4000:]}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["load_avg_1min_before_after"] = [la, os.getloadavg()[0]]
                r["wall_10_epochs_s"], r["steady_epoch_s"] = _extrapolate(r, args.epochs)
                results.append(r)
                print(f"{fw:5s} {run:16s} wall {r['wall_s']:7.1f} s  epochs "
                      + " ".join(f"{e:.1f}" for e in r["epoch_s"])
                      + f" s  val_acc {r['val_accuracy']:.4f}  peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    load_end = os.getloadavg()
    ratios = {}
    for run in args.runs:
        o = next(r for r in results if r["run"] == run and r["framework"] == "tflite_transfer")
        k = next(r for r in results if r["run"] == run and r["framework"] == "keras")
        ratios[run] = {"wall": k["wall_s"] / o["wall_s"], "fit": k["fit_s"] / o["fit_s"],
                       "steady_epoch": k["steady_epoch_s"] / o["steady_epoch_s"],
                       "wall_10_epochs": k["wall_10_epochs_s"] / o["wall_10_epochs_s"],
                       "peak_rss": k["peak_rss_mib"] / o["peak_rss_mib"],
                       "val_accuracy_diff_keras_minus_ours": k["val_accuracy"] - o["val_accuracy"]}
    ext = "" if args.epochs >= 10 else " (extrapolated)"
    print(f"\nload average at end (1/5/15 min): {load_end}")
    print(f"| run | framework | wall {args.epochs} ep (s) | fit outside epochs (s) | epoch 1 (s) | epoch 2.. (s) "
          f"| wall 10 ep{ext} (s) | val acc | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['run']} | {r['framework']} | {r['wall_s']:.1f} | {r['fit_s'] - sum(r['epoch_s']):.1f} | "
              f"{r['epoch_s'][0]:.1f} | "
              f"{r['steady_epoch_s']:.1f} | {r['wall_10_epochs_s']:.1f} | {r['val_accuracy']:.4f} | "
              f"{r['peak_rss_mib']:.0f} |")
    for run, q in ratios.items():
        print(f"Keras/ours {run}: wall {q['wall']:.2f}x, fit {q['fit']:.2f}x, epoch 2.. {q['steady_epoch']:.2f}x, "
              f"wall 10 epochs{ext} {q['wall_10_epochs']:.2f}x, peak RSS {q['peak_rss']:.2f}x, "
              f"val acc Keras - ours {q['val_accuracy_diff_keras_minus_ours']:+.4f}")
    doc = {"job": "flowers, tflite_transfer vs Keras", "started_utc": started, "epochs": args.epochs,
           "wall_10_epochs_extrapolated": args.epochs < 10, "batch_size": 32, "threads": args.threads,
           "data_dir": args.data_dir, "weights": weights_file, "machine": platform.platform(),
           "cpus": os.cpu_count(), "python": platform.python_version(),
           "load_avg_start": list(load_start), "load_avg_end": list(load_end), "runs": results, "ratios_keras_over_ours": ratios}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
