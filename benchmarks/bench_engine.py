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

Side by side: a plain-PyTorch MobileNetV2 (defined below, the torchvision
architecture, random weights: only timing matters; channels_last,
inference_mode) and Keras' ``MobileNetV2(weights=None)`` on TensorFlow. Each
(framework, thread count) runs in its OWN child process (this script with
``--child``), with OMP_NUM_THREADS set to the thread count and the framework's own
setting too (``tflite_transfer.set_num_threads``, ``torch.set_num_threads`` +
``set_num_interop_threads(1)``, TF's intra-op threads + 1 inter-op thread), so one
framework's OpenMP pool cannot throttle another's; the thread count each
framework reports back is stored. A framework that is not installed is reported
"not run: ... not installed". The 1-min load average before and after each child
is stored with its numbers.

Usage:  python3 benchmarks/bench_engine.py [--batches 1 8 32 64] [--seconds 2.0] [--threads 2 1]
                                           [--frameworks tflite_transfer torch tensorflow]
Writes: benchmarks/results/engine.json
"""
import argparse
import json
import os
import platform
import subprocess
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


def _loadavg():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def child(framework, threads, batches, seconds, weights):
    """Times one framework at one thread count in this process; returns a JSON-able dict."""
    rng = np.random.default_rng(0)
    res = dict(framework=framework, threads_requested=threads, load_1min_before=_loadavg(), batches={})
    if framework == "tflite_transfer":
        import tflite_transfer
        from tflite_transfer import applications

        tflite_transfer.set_num_threads(threads)
        model = applications.MobileNetV2(include_top=False, pooling="avg", weights=weights)
        v = tflite_transfer._core.onednn_version() if hasattr(tflite_transfer._core, "onednn_version") else None
        res.update(threads_reported=tflite_transfer.get_num_threads(),
                   version="oneDNN " + (".".join(str(p) for p in v[:3]) if isinstance(v, tuple) else str(v)),
                   note=f"weights {os.path.basename(model.weights_path)}; OMP_WAIT_POLICY="
                        f"{os.environ.get('OMP_WAIT_POLICY')}, GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')} "
                        "(the package's defaults unless set before the import)")

        def make(b):
            x = rng.uniform(-1, 1, size=(b, 224, 224, 3)).astype(np.float32)
            return lambda: model.predict(x, batch_size=b)
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        model = torch_mobilenet_v2()
        res.update(threads_reported=torch.get_num_threads(), version=f"torch {torch.__version__}",
                   note="plain MobileNetV2 (batch norm not folded), channels_last, inference_mode, random weights",
                   parallel_info=torch.__config__.parallel_info())

        def make(b):
            x = torch.randn(b, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                assert tuple(model(x).shape) == (b, 1280)

            def run():
                with torch.inference_mode():
                    model(x)
            return run
    elif framework == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model = tf.keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg")
        res.update(threads_reported=tf.config.threading.get_intra_op_parallelism_threads(),
                   version=f"tensorflow {tf.__version__}", note="keras MobileNetV2(weights=None), model(x, training=False)")

        def make(b):
            x = tf.random.uniform((b, 224, 224, 3), -1, 1)
            return lambda: model(x, training=False)
    else:
        raise SystemExit(f"unknown framework {framework!r}")
    for b in batches:
        (med, best), n = time_fn(make(b), seconds)
        res["batches"][str(b)] = dict(median_s=med, best_s=best, runs=n, images_per_s=b / med, best_images_per_s=b / best)
        print(f"  {framework} {threads} thread(s) batch {b:3d}: {b / med:8.1f} images/s median, {b / best:8.1f} best "
              f"({n} runs)", file=sys.stderr, flush=True)
    res["load_1min_after"] = _loadavg()
    return res


def run_child(framework, threads, args):
    """This script in a new process for (framework, threads); its JSON, or a dict with `not_run`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--child-threads", str(threads),
           "--batches", *map(str, args.batches), "--seconds", str(args.seconds), "--weights", args.weights]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(p.stderr if p.returncode == 0 else "")
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit status {p.returncode}"
        why = "not installed" if "ModuleNotFoundError" in tail or "ImportError" in tail else tail
        return dict(framework=framework, threads_requested=threads, not_run=f"not run: {framework}: {why}")
    return json.loads(p.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing budget per (framework, threads, batch size)")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--fma-units", type=int, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts, each framework at each (default: the visible cores, then 1)")
    ap.add_argument("--frameworks", nargs="+", default=["tflite_transfer", "torch", "tensorflow"],
                    choices=["tflite_transfer", "torch", "tensorflow"])
    ap.add_argument("--json", default=os.path.join(HERE, "results", "engine.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.child_threads, args.batches, args.seconds, args.weights)))
        return

    cpu = cpu_info(args.fma_units)
    thread_counts = args.threads or sorted({cpu["cores"], 1}, reverse=True)
    runs = {}
    for fw in args.frameworks:
        for t in thread_counts:
            runs[(fw, t)] = run_child(fw, t, args)

    def ips(fw, t, b):
        r = runs.get((fw, t))
        return r["batches"][str(b)]["images_per_s"] if r and "batches" in r else None

    rows = []
    for t in thread_counts:
        for b in args.batches:
            ours = runs[("tflite_transfer", t)]
            if "batches" not in ours:
                raise SystemExit(ours["not_run"])
            m = ours["batches"][str(b)]
            gflops = m["images_per_s"] * FLOP_PER_IMAGE / 1e9
            row = dict(threads=t, batch=b, ms_per_batch=m["median_s"] * 1e3, images_per_s=m["images_per_s"],
                       best_images_per_s=m["best_images_per_s"], gflops=gflops,
                       fraction_of_peak=gflops / cpu["peak_gflops"] if cpu["peak_gflops"] else None)
            for fw, key in (("torch", "torch"), ("tensorflow", "tf")):
                v = ips(fw, t, b)
                if v:
                    row[f"{key}_images_per_s"] = v
                    row[f"ratio_vs_{key}"] = m["images_per_s"] / v
            rows.append(row)
    # Scaling: images/s at each thread count over images/s at 1 thread, per framework and batch.
    scaling = {}
    if 1 in thread_counts:
        for fw in args.frameworks:
            for t in thread_counts:
                for b in args.batches:
                    a, one = ips(fw, t, b), ips(fw, 1, b)
                    if a and one and t != 1:
                        scaling.setdefault(fw, {}).setdefault(str(t), {})[str(b)] = a / one

    print(f"\nCPU: {cpu['model_name']} ({cpu['isa']}), {cpu['cores']} cores visible")
    print(f"float32 peak (whole machine): {cpu['peak_formula']}")
    for (fw, t), r in runs.items():
        if "not_run" in r:
            print(f"{fw} {t} thread(s): {r['not_run']}")
        else:
            print(f"{fw} {t} thread(s): {r['version']}, {r['threads_reported']} threads reported; "
                  f"load {r['load_1min_before']:.2f} -> {r['load_1min_after']:.2f}; {r['note']}")
    hdr = f"{'thr':>3} {'batch':>5} {'ms/batch':>9} {'img/s':>8} {'best':>7} {'GFLOP/s':>8} {'% peak':>7} " \
          f"{'torch img/s':>12} {'x torch':>8} {'tf img/s':>9} {'x tf':>6}"
    print("\n" + hdr)
    print("-" * len(hdr))
    for r in rows:
        tt_ = f"{r['torch_images_per_s']:12.1f} {r['ratio_vs_torch']:8.2f}" if "torch_images_per_s" in r else \
            f"{'not run':>12} {'-':>8}"
        f = f"{r['tf_images_per_s']:9.1f} {r['ratio_vs_tf']:6.2f}" if "tf_images_per_s" in r else \
            f"{'not run':>9} {'-':>6}"
        pk = f"{100 * r['fraction_of_peak']:6.1f}%" if r["fraction_of_peak"] is not None else f"{'?':>7}"
        print(f"{r['threads']:3d} {r['batch']:5d} {r['ms_per_batch']:9.1f} {r['images_per_s']:8.1f} "
              f"{r['best_images_per_s']:7.1f} {r['gflops']:8.1f} {pk} {tt_} {f}")
    for fw, by_t in scaling.items():
        for t, by_b in by_t.items():
            print(f"scaling {fw}: {t} threads / 1 thread = " + ", ".join(f"batch {b}: {v:.2f}x" for b, v in by_b.items()))

    loads = [r[k] for r in runs.values() for k in ("load_1min_before", "load_1min_after") if r.get(k) is not None]
    result = dict(benchmark="MobileNetV2 1.0/224 pooled features, float32", flop_per_image=FLOP_PER_IMAGE,
                  command="python3 benchmarks/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), cpu=cpu,
                  method="each (framework, threads) in its own process, OMP_NUM_THREADS = threads",
                  load_average_1min_range=[min(loads), max(loads)] if loads else None,
                  runs=[r for r in runs.values()], rows=rows, scaling=scaling)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
