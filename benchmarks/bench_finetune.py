"""Benchmark (not a test) of one fine-tuning training step of MobileNetV2 1.0/224 + a new
Dense(5, softmax) head: forward, backward of the trainable part, optimizer update (RMSprop 1e-5,
sparse categorical cross-entropy, batch norm in inference mode), at batch 32, for
``fine_tune_at = 100`` (Keras' layer numbering: block 11's depthwise conv on) and for the whole
network (``fine_tune_at = 0``), side by side:

  * tflite_transfer: ``base.fine_tune_from(k)``, ``Sequential([base, GlobalAveragePooling2D(),
    Dense])``, ``fit`` on ``steps`` batches (one epoch; images/s over the epoch);
  * Keras / TensorFlow: ``keras.applications.MobileNetV2(weights=None)`` called with
    ``training=False``, the same layers frozen, ``train_on_batch`` (median step);
  * PyTorch when installed: the same architecture (``bench_engine.torch_mobilenet_v2``) in
    ``eval()`` mode, the same conv / batch-norm parameters frozen (matched to Keras' layers in
    order), one ``backward`` + ``RMSprop.step`` (median step); else "not run".

Each (framework, fine_tune_at) runs in its own subprocess so that its peak RSS
(``resource.getrusage`` ru_maxrss, which covers C allocations) is its own. Random weights /
images (only timing matters). Writes ``benchmarks/results/finetune.json`` and prints a table with
the ratios against Keras and PyTorch.

    python benchmarks/bench_finetune.py [--steps 5] [--batch-size 32] [--fine-tune-at 100 0]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository (in-place build) before any installed copy
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CLASSES = 5


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_step(step, steps):
    """Median seconds of `steps` calls of step() after 2 warm-up calls."""
    step()
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# ----------------------------------------------------------------------------- tflite_transfer
def run_tflite_transfer(fine_tune_at, batch, steps):
    """HOOK for issue 8 (the C backward): tflite_transfer's fine-tuning step. Until ``fit``
    can train a base, it raises NotImplementedError and the row reads "not run: no backward
    yet". What is timed: one ``fit`` epoch of `steps` batches (the frozen bottom forward, the
    trainable top forward + backward, the updates), after a one-batch warm-up ``fit``."""
    from tflite_transfer import Sequential, applications, layers, optimizers

    base = applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet")
    base.fine_tune_from(fine_tune_at)
    model = Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-5), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 224, 224, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, batch * steps)
    try:
        model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # warm-up: plans, caches
    except NotImplementedError as e:
        return None, "not run: no backward yet"
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    step = (time.perf_counter() - t) / steps
    from tflite_transfer import get_num_threads
    return step, (f"fit, {steps} steps of one epoch, path {model.last_fit_path}, {get_num_threads()} threads, "
                  f"{os.path.basename(base.weights_path)}")


# ------------------------------------------------------------------------------------- Keras
def run_keras(fine_tune_at, batch, steps):
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        return None, "not run: TensorFlow not installed"
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
    base.trainable = True
    for layer in base.layers[:fine_tune_at]:
        layer.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = base(inputs, training=False)  # batch norm in inference mode, as the tutorial
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xb = rng.uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)
    yb = rng.integers(0, CLASSES, batch)
    step = _median_step(lambda: model.train_on_batch(xb, yb), steps)
    return step, (f"tensorflow {tf.__version__} / keras {keras.__version__}, train_on_batch (median of {steps}), "
                  "random weights")


# ----------------------------------------------------------------------------------- PyTorch
def run_torch(fine_tune_at, batch, steps):
    try:
        import torch
    except ImportError:
        return None, "not run: PyTorch not installed"
    from bench_engine import torch_mobilenet_v2

    from tflite_transfer.applications.mobilenet_v2_layers import keras_layer_classes

    torch.set_num_threads(os.cpu_count() or 1)
    body = torch_mobilenet_v2()  # eval(): batch norm in inference mode
    modules = [m for m in body.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    keras_weighted = [i for i, c in enumerate(keras_layer_classes())
                      if c in ("Conv2D", "DepthwiseConv2D", "BatchNormalization")]
    assert len(modules) == len(keras_weighted) == 104
    for m, i in zip(modules, keras_weighted):
        for p in m.parameters():
            p.requires_grad_(i >= fine_tune_at)
    head = torch.nn.Linear(1280, CLASSES)
    params = [p for p in body.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-5)
    x = torch.rand(batch, 3, 224, 224).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(head(body(x)), y)
        loss.backward()
        opt.step()

    s = _median_step(step, steps)
    return s, f"torch {torch.__version__}, {torch.get_num_threads()} threads, channels_last, eval(), random weights"


RUNNERS = {"tflite_transfer": run_tflite_transfer, "keras": run_keras, "torch": run_torch}


def one(args):
    step, note = RUNNERS[args.one](args.fine_tune_at[0], args.batch_size, args.steps)
    print(json.dumps({"framework": args.one, "fine_tune_at": args.fine_tune_at[0], "step_s": step,
                      "images_per_s": None if step is None else args.batch_size / step,
                      "peak_rss_mib": _peak_rss_mib(), "note": note}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--fine-tune-at", type=int, nargs="+", default=[100, 0])
    ap.add_argument("--frameworks", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    ap.add_argument("--one", choices=list(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    rows = []
    for fta in args.fine_tune_at:
        for fw in args.frameworks:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", fw, "--fine-tune-at", str(fta), "--steps",
                   str(args.steps), "--batch-size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"framework": fw, "fine_tune_at": fta, "step_s": None, "images_per_s": None,
                             "peak_rss_mib": None, "note": "failed: " + proc.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    for r in rows:  # ratios: tflite_transfer images/s over the other framework's, same fine_tune_at
        ours = next((o for o in rows if o["framework"] == "tflite_transfer" and o["fine_tune_at"] == r["fine_tune_at"]),
                    None)
        r["tflite_transfer_speedup"] = (ours["images_per_s"] / r["images_per_s"]
                                        if ours and ours["images_per_s"] and r["images_per_s"] else None)
    doc = {"benchmark": "fine-tuning step", "batch_size": args.batch_size, "steps": args.steps,
           "classes": CLASSES, "machine": platform.platform(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "loadavg_1min": os.getloadavg()[0],
           "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "rows": rows}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "finetune.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nbatch {args.batch_size}, 1-min load average {doc['loadavg_1min']:.2f}")
    print(f"{'framework':16} {'fine_tune_at':>12} {'images/s':>9} {'peak RSS MiB':>13} {'tt speed-up':>12}  note")
    for r in rows:
        ips = f"{r['images_per_s']:9.1f}" if r["images_per_s"] else f"{'-':>9}"
        rss = f"{r['peak_rss_mib']:13.0f}" if r["peak_rss_mib"] else f"{'-':>13}"
        ratio = f"{r['tflite_transfer_speedup']:11.2f}x" if r["tflite_transfer_speedup"] else f"{'-':>12}"
        print(f"{r['framework']:16} {r['fine_tune_at']:12d} {ips} {rss} {ratio}  {r['note']}")


if __name__ == "__main__":
    main()
