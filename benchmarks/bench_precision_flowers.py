"""The flowers job's frozen stage per base precision: accuracy, wall time and peak RSS.

Runs ``python -m tflite_transfer flowers --no-augment --no-fine-tune --dtype D`` once per
dtype (float32, mixed_bfloat16, int8; bf16 only where the CPU has bf16 instructions), each
in its own process under ``/usr/bin/time -v`` (peak RSS of the whole job: decoding, feature
extraction over all photos, head training, evaluation), and records the final validation
accuracy (summary.json), the job's wall time, its feature-extraction time, the peak RSS and
the 1-min load average before and after. With ``--seeds N`` (default 3: seeds 123, 124, ...)
every dtype runs once per seed (the job's ``--seed``: split, head initialization, shuffling,
dropout); the summary gives per dtype the mean and sample standard deviation (ddof=1) of the
accuracy over seeds and the paired difference to float32 (same seed, same split).

Usage:   python3 benchmarks/bench_precision_flowers.py [--seeds 3] [--epochs 10] [--weights imagenet_ptq]
Writes:  benchmarks/results/precision_flowers.json
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--weights", default="imagenet_ptq")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "mixed_bfloat16", "int8"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 123, 124, ... (default %(default)s)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "precision_flowers.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import tflite_transfer as tt

    rows = []
    for dtype, seed in ((d, 123 + k) for k in range(args.seeds) for d in args.dtypes):
        if dtype == "mixed_bfloat16" and not tt._core.has_bf16():
            rows.append(dict(dtype=dtype, seed=seed, note="not run: no bfloat16 instructions on this CPU"))
            continue
        if dtype.startswith("int8") and not tt._core.has_vnni():
            rows.append(dict(dtype=dtype, seed=seed, note="not run: no VNNI instructions on this CPU"))
            continue
        out = tempfile.mkdtemp(prefix=f"flowers_{dtype}_")
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "tflite_transfer", "flowers", "--no-augment",
               "--no-fine-tune", "--dtype", dtype, "--weights", args.weights, "--epochs", str(args.epochs),
               "--seed", str(seed), "--verbose", "0", "--output", out]
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        if r.returncode:
            rows.append(dict(dtype=dtype, seed=seed, note=f"failed: {r.stderr.strip().splitlines()[-1:]}"))
            continue
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            run = json.load(f)["no_augmentation"]
        rows.append(dict(dtype=dtype, seed=seed, val_accuracy=run["val_accuracy"], wall_s=wall,
                         features_s=run["times_s"].get("features"), train_s=run["times_s"].get("train"),
                         peak_rss_mib=int(rss.group(1)) / 1024 if rss else None, load_before=load0,
                         load_after=load1))
        print(json.dumps(rows[-1]), flush=True)
    f32 = {r["seed"]: r for r in rows if r["dtype"] == "float32" and "val_accuracy" in r}
    for r in rows:
        if r["seed"] in f32 and "val_accuracy" in r:
            r["points_vs_float32"] = 100 * (r["val_accuracy"] - f32[r["seed"]]["val_accuracy"])
    summary = {}
    for dtype in args.dtypes:
        done = [r for r in rows if r["dtype"] == dtype and "val_accuracy" in r]
        if not done:
            continue
        acc = np.array([r["val_accuracy"] for r in done])
        pts = np.array([r["points_vs_float32"] for r in done if "points_vs_float32" in r])
        summary[dtype] = dict(n=len(done), seeds=[r["seed"] for r in done], mean=float(acc.mean()),
                              std=float(acc.std(ddof=1)) if len(acc) > 1 else None,
                              points_vs_float32_mean=float(pts.mean()) if len(pts) else None,
                              points_vs_float32_per_seed=pts.tolist(),
                              wall_s_mean=float(np.mean([r["wall_s"] for r in done])),
                              features_s_mean=float(np.mean([r["features_s"] or np.nan for r in done])),
                              peak_rss_mib_max=max(r["peak_rss_mib"] or 0 for r in done))
        print(dtype, json.dumps(summary[dtype]), flush=True)
    result = dict(command="python3 benchmarks/bench_precision_flowers.py " + " ".join(argv or sys.argv[1:]),
                  time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), weights=args.weights,
                  epochs=args.epochs, summary=summary, rows=rows)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
