"""Engine benchmark: MobileNetV2 1.0/224 pooled features (images/s), vs PyTorch and TensorFlow.

Measures ``MobileNetV2(include_top=False, pooling="avg").predict(x, batch_size=b)``
on float32 inputs (already preprocessed, so the time is the engine's plus the
input checks) for each batch size, after one warm-up call (which builds and
caches the oneDNN engine for that batch size). Reports images/s (median run; the
fastest run too, as the machine may be shared), ms per batch,
achieved GFLOP/s (MobileNetV2 1.0/224 = 300M multiply-adds = 0.6 GFLOP per
image, the paper's count) and the fraction of the machine's float32 peak:

    peak = cores x GHz x FMA units per core x lanes x 2 (an FMA is 2 FLOPs)

with lanes = 16 for AVX-512 (8 for AVX2), the clock from /proc/cpuinfo ("cpu
MHz", the nominal clock a VM reports; turbo is not counted) and 2 FMA units
per core for a Xeon with AVX-512 (override with --fma-units; some parts have 1).

Side by side, in the same run: a plain-PyTorch MobileNetV2 (defined below, the
torchvision architecture, random weights: only timing matters; channels_last,
inference_mode) when torch is importable, and Keras' MobileNetV2 when
TensorFlow is importable; otherwise the table says "not run" and why.

Usage:  python3 benchmarks/bench_engine.py [--batches 1 8 32 64] [--seconds 2.5]
Writes: benchmarks/results/engine.json
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

FLOP_PER_IMAGE = 2 * 300e6  # 300M multiply-adds (Sandler et al. 2018, Table 4)


# -- machine ---------------------------------------------------------------------------
def cpu_info(fma_units=None):
    """Model name, cores, GHz, SIMD lanes, FMA units and the float32 peak (GFLOP/s)."""
    name, mhz, flags = platform.processor() or "unknown", None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name":
                    name = v
                elif k == "cpu MHz" and mhz is None:
                    mhz = float(v)
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx2" in flags:
        lanes, isa = 8, "AVX2"
    else:
        lanes, isa = 4, "SSE"
    if fma_units is None:
        fma_units = 2 if ("avx512f" in flags and "Xeon" in name) else 1
    ghz = (mhz or 0.0) / 1000.0
    peak = cores * ghz * fma_units * lanes * 2
    return dict(model_name=name, cores=cores, ghz=ghz, isa=isa, lanes=lanes, fma_units=fma_units,
                peak_gflops=peak,
                peak_formula=f"{cores} cores x {ghz:.2f} GHz x {fma_units} FMA units x {lanes} lanes x 2 = "
                             f"{peak:.1f} GFLOP/s")


def time_fn(fn, seconds, min_iters=2):
    """(median, fastest) seconds per call of fn() after one warm-up call; runs >= min_iters and ~`seconds`."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return (float(np.median(times)), float(np.min(times))), len(times)


# -- PyTorch MobileNetV2 (timing only) --------------------------------------------------
def torch_mobilenet_v2():
    import torch
    from torch import nn

    def cbr(i, o, k=3, s=1, g=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU6(inplace=True))

    class Block(nn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = i * t
            layers = ([cbr(i, h, 1)] if t != 1 else []) + [cbr(h, h, 3, s, h), nn.Conv2d(h, o, 1, bias=False),
                                                           nn.BatchNorm2d(o)]
            self.body, self.res = nn.Sequential(*layers), (s == 1 and i == o)

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]
    layers, c = [cbr(3, 32, 3, 2)], 32
    for t, o, n, s in cfg:
        for k in range(n):
            layers.append(Block(c, o, s if k == 0 else 1, t))
            c = o
    layers += [cbr(c, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)


def bench_torch(batches, seconds, threads):
    try:
        import torch
    except ImportError:
        return None, "not run: PyTorch not installed"
    torch.set_num_threads(threads)
    model = torch_mobilenet_v2()
    out = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.randn(b, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            assert tuple(model(x).shape) == (b, 1280)
            (out[b], _), _ = time_fn(lambda: model(x), seconds)
    return out, f"torch {torch.__version__}, {threads} threads, channels_last, inference_mode, random weights"


def bench_tf(batches, seconds):
    try:
        import tensorflow as tf
    except ImportError:
        return None, "not run: TensorFlow not installed"
    model = tf.keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg")
    out = {}
    for b in batches:
        x = tf.random.uniform((b, 224, 224, 3), -1, 1)
        (out[b], _), _ = time_fn(lambda: model(x, training=False), seconds)
    return out, f"tensorflow {tf.__version__}, model(x, training=False), random weights"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing budget per (framework, batch size)")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--fma-units", type=int, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="oneDNN thread counts to run (default: oneDNN's default, then 1)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-tf", action="store_true")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "engine.json"))
    args = ap.parse_args(argv)

    import tflite_transfer
    from tflite_transfer import applications

    cpu = cpu_info(args.fma_units)
    default_threads = tflite_transfer.get_num_threads()
    thread_counts = args.threads or sorted({default_threads, 1}, reverse=True)
    rng = np.random.default_rng(0)
    xs = {b: rng.uniform(-1, 1, size=(b, 224, 224, 3)).astype(np.float32) for b in args.batches}
    torch_note = tf_note = None
    rows = []
    for threads in thread_counts:
        tflite_transfer.set_num_threads(threads)
        # A new model per thread count: oneDNN primitives keep the thread count they were created with.
        model = applications.MobileNetV2(include_top=False, pooling="avg", weights=args.weights)
        ours, best = {}, {}
        for b in args.batches:
            (ours[b], best[b]), n = time_fn(lambda: model.predict(xs[b], batch_size=b), args.seconds)
            print(f"  tflite_transfer {threads} thread(s) batch {b:3d}: {b / ours[b]:8.1f} images/s median, "
                  f"{b / best[b]:8.1f} best ({n} runs)", flush=True)
        torch_t, torch_note = (None, "not run: --no-torch") if args.no_torch else \
            bench_torch(args.batches, args.seconds, threads)
        tf_t, tf_note = (None, "not run: --no-tf") if args.no_tf else bench_tf(args.batches, args.seconds)
        for b in args.batches:
            ips = b / ours[b]
            gflops = ips * FLOP_PER_IMAGE / 1e9
            row = dict(threads=threads, batch=b, ms_per_batch=ours[b] * 1e3, images_per_s=ips,
                       best_images_per_s=b / best[b], gflops=gflops,
                       fraction_of_peak=gflops / cpu["peak_gflops"] if cpu["peak_gflops"] else None)
            if torch_t:
                row["torch_images_per_s"] = b / torch_t[b]
                row["ratio_vs_torch"] = ips / row["torch_images_per_s"]
            if tf_t:
                row["tf_images_per_s"] = b / tf_t[b]
                row["ratio_vs_tf"] = ips / row["tf_images_per_s"]
            rows.append(row)
    tflite_transfer.set_num_threads(default_threads)

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nCPU: {cpu['model_name']} ({cpu['isa']}), {cpu['cores']} cores visible, "
          f"oneDNN default threads {default_threads}")
    if load:
        print(f"load average during the run: {load[0]:.2f} (1 min) on {cpu['cores']} cores; "
              "a busy machine lowers every number below")
    print(f"float32 peak (whole machine): {cpu['peak_formula']}")
    v = tflite_transfer._core.onednn_version() if hasattr(tflite_transfer._core, "onednn_version") else None
    onednn = ".".join(str(p) for p in v[:3]) if isinstance(v, tuple) else str(v)
    print(f"oneDNN {onednn}; weights {os.path.basename(model.weights_path)}; pooled features (N, 1280)")
    print(f"PyTorch: {torch_note.replace(f'{thread_counts[-1]} threads', 'same threads as each row')}")
    print(f"TensorFlow: {tf_note}\n")
    hdr = f"{'thr':>3} {'batch':>5} {'ms/batch':>9} {'img/s':>8} {'best':>7} {'GFLOP/s':>8} {'% peak':>7} " \
          f"{'torch img/s':>12} {'x torch':>8} {'tf img/s':>9} {'x tf':>6}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        t = f"{r['torch_images_per_s']:12.1f} {r['ratio_vs_torch']:8.2f}" if "torch_images_per_s" in r else \
            f"{'not run':>12} {'-':>8}"
        f = f"{r['tf_images_per_s']:9.1f} {r['ratio_vs_tf']:6.2f}" if "tf_images_per_s" in r else \
            f"{'not run':>9} {'-':>6}"
        pk = f"{100 * r['fraction_of_peak']:6.1f}%" if r["fraction_of_peak"] is not None else f"{'?':>7}"
        print(f"{r['threads']:3d} {r['batch']:5d} {r['ms_per_batch']:9.1f} {r['images_per_s']:8.1f} "
              f"{r['best_images_per_s']:7.1f} {r['gflops']:8.1f} {pk} {t} {f}")

    result = dict(benchmark="MobileNetV2 1.0/224 pooled features, float32", flop_per_image=FLOP_PER_IMAGE,
                  command="python3 benchmarks/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), cpu=cpu, onednn=onednn,
                  onednn_default_threads=default_threads,
                  load_average_1min=load[0] if load else None,
                  weights=os.path.basename(model.weights_path), torch=torch_note, tensorflow=tf_note, rows=rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
