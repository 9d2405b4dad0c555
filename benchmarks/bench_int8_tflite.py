"""Speed of dtype="int8_tflite" (TFLite-exact integer arithmetic) against dtype="int8" (oneDNN's
float requantization), MobileNetV2 pooled features of the ptq file, interleaved runs, medians.

    python benchmarks/bench_int8_tflite.py [--batch 32] [--repeats 5] [--threads N]

Writes benchmarks/results/int8_tflite_speed.json with the 1-min load average before and after
(the numbers are only comparable within one run on a quiet machine).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tflite_transfer  # noqa: E402
from tflite_transfer.applications import mobilenet_v2 as mv  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--weights", default="imagenet_ptq")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "int8_tflite_speed.json"))
    args = ap.parse_args(argv)
    if not tflite_transfer._core.has_vnni():  # int8 raises there; the stored results stay as they are
        print(f"bench_int8_tflite: not run: no VNNI instructions on this CPU ({tflite_transfer._core.cpu_isa()})")
        return 0
    tflite_transfer.set_num_threads(args.threads)
    x = np.random.default_rng(0).integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8)
    models = {d: mv.MobileNetV2(include_top=False, pooling="avg", weights=args.weights, dtype=d)
              for d in ("int8", "int8_tflite")}
    for m in models.values():  # build the engines, warm the caches
        m.predict(x, batch_size=args.batch)
    load_before = loadavg()
    times = {d: [] for d in models}
    for _ in range(args.repeats):
        for d, m in models.items():
            t0 = time.perf_counter()
            m.predict(x, batch_size=args.batch)
            times[d].append(time.perf_counter() - t0)
    load_after = loadavg()
    rows = {d: {"median_s": statistics.median(t), "images_per_s": args.batch / statistics.median(t),
                "times_s": t} for d, t in times.items()}
    res = dict(batch=args.batch, threads=args.threads, repeats=args.repeats, weights=args.weights,
               loadavg_1min_before=load_before, loadavg_1min_after=load_after,
               int8_tflite_relative=rows["int8_tflite"]["images_per_s"] / rows["int8"]["images_per_s"],
               dtypes=rows, when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    for d, r in rows.items():
        print(f"{d:12s} {r['images_per_s']:8.1f} images/s (median of {args.repeats}, batch {args.batch})")
    print(f"int8_tflite / int8 = {res['int8_tflite_relative']:.3f}; 1-min load {load_before} -> {load_after}")


if __name__ == "__main__":
    main()
