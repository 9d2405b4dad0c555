"""What Keras reaches with the flowers job's full recipe (frozen stage + fine-tuning) and our weights.

Not a test: a measurement for the README (issue 8: "if >= 0.93 proves out of reach with these
weights, show what Keras reaches with the same recipe and weights"). Per seed, one process:

* data: ``keras.utils.image_dataset_from_directory(DIR, validation_split=0.2, subset="both",
  seed=SEED, image_size=(224, 224), batch_size=32)`` + ``.prefetch(AUTOTUNE)`` (the file lists
  equal ours for seed 123: tests/test_dataset.py);
* base: ``keras.applications.MobileNetV2(include_top=False, weights=None)`` carrying our model's
  dequantized float32 weights, batch norm folded (gamma 1, beta = folded bias, mean 0,
  var 1 - eps), built by ``tests/keras_grad.keras_mobilenet_v2`` (the helper of the gradient
  tests, imported, so the mapping is the one the tests check);
* model as ``tflite_transfer.flowers`` builds its augmented run: RandomFlip("horizontal"),
  RandomBrightness(0.2), RandomContrast(0.2) (Keras' default value_range (0, 255), on the raw
  pixels), ``mobilenet_v2.preprocess_input``, the base in inference mode (``--bn-mode
  inference``, default: a wrapper layer that calls ``base(x, training=False)``, because Keras 3's
  ``fit`` overrides that argument written in the functional graph once the base is unfrozen,
  keras-team/keras#20285, and batch norm then normalizes with batch statistics: with these
  folded weights (gamma 1, moving variance 1 - eps) the model collapses to chance, measured
  0.22 after the first fine-tuning epoch; ``--bn-mode tutorial`` reproduces it),
  GlobalAveragePooling2D, Dropout(0.2), Dense(5, softmax); sparse categorical cross-entropy;
* stage 1: base frozen, Adam(1e-3), ``epochs`` (10) epochs;
* stage 2 (the tutorial's): ``base.trainable = True``, ``for layer in base.layers[:100]:
  layer.trainable = False``, recompile with RMSprop(1e-5), ``fit(epochs=epochs +
  fine_tune_epochs, initial_epoch=history.epoch[-1])`` (11 epochs, numbered 9..19).

Batch norm's gamma: our .tflite weights have batch norm folded, so our job trains the folded
kernel and bias of each layer from ``fine_tune_at`` on. In Keras' graph the same parameters are
the conv kernel and the batch norm's beta (gamma 1, variance 1 - eps, inference mode); Keras
would also train gamma (a per-channel scale of the kernel). ``--gamma frozen`` (default) sets
``gamma.trainable = False`` so that Keras trains exactly our parameters (the trainable counts are
compared in the output); ``--gamma trainable`` leaves Keras as it is.

``keras.utils.set_random_seed(SEED)`` before each seed sets the initial head weights, dropout and
augmentation draws; the seed also sets the split and the shuffling, as in our job. Writes
``benchmarks/results/flowers_keras_finetune.json`` after each stage of each seed (a partial run
leaves data): per epoch val_accuracy (and the rest of Keras' history) of both stages, epoch
times, final frozen and fine-tuned validation accuracy, wall time, 1-min load average before and
after each stage, TensorFlow / Keras versions; mean, sample std (ddof=1), min and max over the
seeds done.

    python benchmarks/flowers_keras_finetune.py --seeds 3      # seeds 123, 124, 125; ~30-40 min each
    python benchmarks/flowers_keras_finetune.py --seed-list 7 --take 2 --epochs 1 --fine-tune-epochs 1 \\
        --out /tmp/smoke.json                                  # a quick check that it runs

Needs TensorFlow (``pip install tensorflow-cpu``); without it, prints "not run".
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)  # the in-place build before any installed copy
sys.path.insert(0, os.path.join(REPO, "tests"))  # keras_grad: Keras' MobileNetV2 with our weights


def _loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _stats(values):
    import numpy as np

    v = np.asarray(values, float)
    return {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


def _epoch_timer(keras):
    """A LambdaCallback and the list it appends each epoch's wall time (s, incl. validation) to."""
    times, start = [], [0.0]

    def begin(epoch, logs=None):
        start[0] = time.perf_counter()

    def end(epoch, logs=None):
        times.append(time.perf_counter() - start[0])
        print(f"    epoch {epoch + 1}: {times[-1]:.0f} s  " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()),
              flush=True)

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end), times


def _history(h):
    return {"epoch": [int(e) for e in h.epoch], **{k: [float(v) for v in vs] for k, vs in h.history.items()}}


def _inference_mode(keras, inner):
    """`inner` always called with training=False. Keras 3's Functional.call passes fit's
    training=True to every layer of a nested model, overriding the tutorial's
    ``base(x, training=False)`` (keras-team/keras#20285): once the base is unfrozen its batch
    norm layers normalize with batch statistics. A layer's own explicit argument is kept,
    so this wrapper keeps batch norm in inference mode, as the tutorial intends and as our
    folded graph always runs."""

    class InferenceMode(keras.layers.Layer):
        def __init__(self, layer, **kwargs):
            super().__init__(**kwargs)
            self.layer = layer

        def call(self, x, training=None):
            return self.layer(x, training=False)

    return InferenceMode(inner, name="base_inference_mode")


def one_seed(seed, args, record, save):
    """Both stages for one seed; fills `record` and calls save() after each stage."""
    import keras
    import tensorflow as tf

    import keras_grad
    import tflite_transfer as tt

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.data_dir, validation_split=0.2, subset="both", seed=seed, image_size=(224, 224), batch_size=32,
        verbose=False)
    n_classes = len(train_ds.class_names)
    record.update(class_names=list(train_ds.class_names), n_train_batches=int(train_ds.cardinality()),
                  n_val_batches=int(val_ds.cardinality()))
    if args.take:
        train_ds, val_ds = train_ds.take(args.take), val_ds.take(args.take)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)

    ours = tt.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=args.weights)
    base = keras_grad.keras_mobilenet_v2(ours)
    base.trainable = False
    inputs = keras.Input(shape=(224, 224, 3))
    x = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed),
                          keras.layers.RandomBrightness(0.2, seed=seed),
                          keras.layers.RandomContrast(0.2, seed=seed)], name="augmentation")(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    if args.bn_mode == "inference":
        x = _inference_mode(keras, base)(x)
    else:  # the tutorial's line, which Keras 3's fit overrides once the base is unfrozen
        x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    record["setup_s"] = time.perf_counter() - t0

    # Stage 1: frozen base.
    print(f"seed {seed}: stage 1 (frozen, Adam({args.learning_rate})), load {_loadavg()}", flush=True)
    cb, epoch_s = _epoch_timer(keras)
    la = _loadavg()
    t = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0, callbacks=[cb])
    record["frozen"] = dict(wall_s=time.perf_counter() - t, epoch_s=epoch_s, history=_history(history),
                            val_accuracy=float(history.history["val_accuracy"][-1]),
                            trainable_params=int(sum(v.numpy().size for v in model.trainable_weights)),
                            loadavg_before=la, loadavg_after=_loadavg())
    save()

    # Stage 2: the tutorial's fine-tuning.
    base.trainable = True
    for layer in base.layers[:args.fine_tune_at]:
        layer.trainable = False
    if args.gamma == "frozen":
        for layer in base.layers[args.fine_tune_at:]:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.gamma.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=args.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_params = int(sum(v.numpy().size for v in model.trainable_weights))
    ours.fine_tune_from(args.fine_tune_at)
    head_params = 1280 * n_classes + n_classes
    our_params = int(ours._trainable_param_count()) + head_params
    print(f"seed {seed}: stage 2 (from layer {args.fine_tune_at} {base.layers[args.fine_tune_at].name}, "
          f"RMSprop({args.fine_tune_learning_rate}), gamma {args.gamma}): trainable parameters Keras "
          f"{keras_params:,}, our job {our_params:,}; load {_loadavg()}", flush=True)
    cb, epoch_s = _epoch_timer(keras)
    la = _loadavg()
    t = time.perf_counter()
    history_fine = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs + args.fine_tune_epochs,
                             initial_epoch=history.epoch[-1], verbose=0, callbacks=[cb])
    record["fine_tuned"] = dict(wall_s=time.perf_counter() - t, epoch_s=epoch_s, history=_history(history_fine),
                                val_accuracy=float(history_fine.history["val_accuracy"][-1]),
                                trainable_params=keras_params, our_job_trainable_params=our_params,
                                fine_tune_at=args.fine_tune_at, first_trainable_layer=base.layers[args.fine_tune_at].name,
                                loadavg_before=la, loadavg_after=_loadavg())
    record["wall_s"] = time.perf_counter() - t0
    save()
    print(f"seed {seed}: frozen {record['frozen']['val_accuracy']:.4f}  fine-tuned "
          f"{record['fine_tuned']['val_accuracy']:.4f}  wall {record['wall_s']:.0f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 123, 124, ... (default 3)")
    ap.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds (overrides --seeds)")
    ap.add_argument("--data-dir", default=None,
                    help="class-folder tree (default: $TFLITE_TRANSFER_FLOWERS or datasets.tf_flowers())")
    ap.add_argument("--weights", default="imagenet", help='our MobileNetV2 weights: "imagenet" (the ptq file) or a path')
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--fine-tune-epochs", type=int, default=10)
    ap.add_argument("--fine-tune-at", type=int, default=100)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--fine-tune-learning-rate", type=float, default=1e-5)
    ap.add_argument("--gamma", choices=("frozen", "trainable"), default="frozen",
                    help="batch norm gamma in stage 2 (frozen: Keras trains exactly our folded parameters)")
    ap.add_argument("--bn-mode", choices=("inference", "tutorial"), default="inference",
                    help="inference: batch norm kept in inference mode in stage 2 (the tutorial's intent, "
                         "our job's behaviour); tutorial: base(x, training=False) as the tutorial writes it, "
                         "which Keras 3 overrides after unfreezing (batch statistics)")
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow intra- and inter-op threads")
    ap.add_argument("--take", type=int, default=0, help="only the first N batches of each subset (a smoke test)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "flowers_keras_finetune.json"))
    args = ap.parse_args()
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        print("flowers_keras_finetune: not run (TensorFlow not installed)")
        return 0
    from tflite_transfer import datasets
    from tflite_transfer.applications import mobilenet_v2 as mv

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.data_dir is None:
        args.data_dir = os.environ.get("TFLITE_TRANSFER_FLOWERS") or str(datasets.tf_flowers())
    seeds = args.seed_list or [123 + i for i in range(args.seeds)]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    results = {
        "command": "python " + " ".join([os.path.relpath(os.path.abspath(__file__), REPO)] + sys.argv[1:]),
        "git_commit": commit, "machine": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "threads": args.threads, "data": args.data_dir,
        "weights": mv.weights_path(args.weights) if not os.path.exists(args.weights) else args.weights,
        "recipe": {"augmentation": "RandomFlip('horizontal'), RandomBrightness(0.2), RandomContrast(0.2)",
                   "head": "GlobalAveragePooling2D, Dropout(0.2), Dense(softmax)", "batch_size": 32,
                   "validation_split": 0.2, "epochs": args.epochs, "optimizer": f"Adam({args.learning_rate})",
                   "fine_tune_at": args.fine_tune_at, "fine_tune_epochs": args.fine_tune_epochs,
                   "fine_tune_optimizer": f"RMSprop({args.fine_tune_learning_rate})",
                   "initial_epoch": "history.epoch[-1]", "batch_norm_gamma_in_stage_2": args.gamma,
                   "batch_norm_mode": args.bn_mode,
                   "take_batches": args.take or None},
        "seeds": seeds, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_start": _loadavg(), "per_seed": [], "summary": {},
    }

    def save():
        done = [r for r in results["per_seed"] if "fine_tuned" in r]
        frozen = [r for r in results["per_seed"] if "frozen" in r]
        results["summary"] = {}
        if frozen:
            results["summary"]["frozen"] = _stats([r["frozen"]["val_accuracy"] for r in frozen])
        if done:
            results["summary"]["fine_tuned"] = _stats([r["fine_tuned"]["val_accuracy"] for r in done])
        results["updated_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["loadavg_last"] = _loadavg()
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.out)

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; data {args.data_dir}; seeds {seeds}; "
          f"load {_loadavg()}", flush=True)
    for seed in seeds:
        record = {"seed": seed, "loadavg_before": _loadavg()}
        results["per_seed"].append(record)
        one_seed(seed, args, record, save)
        record["loadavg_after"] = _loadavg()
        save()
    results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    for stage, s in results["summary"].items():
        std = f" ± {s['std']:.4f}" if s["std"] is not None else ""
        print(f"{stage}: mean {s['mean']:.4f}{std} over {s['n']} seed(s): {[round(v, 4) for v in s['values']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
