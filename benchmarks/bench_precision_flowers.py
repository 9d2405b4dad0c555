"""The flowers job's frozen stage per base precision: accuracy, wall time and peak RSS.

Runs ``python -m tflite_transfer flowers --no-augment --no-fine-tune --dtype D`` once per
dtype (float32, mixed_bfloat16, int8; bf16 only where the CPU has bf16 instructions), each
in its own process under ``/usr/bin/time -v`` (peak RSS of the whole job: decoding, feature
extraction over all photos, head training, evaluation), and records the final validation
accuracy (summary.json), the job's wall time, its feature-extraction time, the peak RSS and
the 1-min load average before and after.

Usage:   python3 benchmarks/bench_precision_flowers.py [--epochs 10] [--weights imagenet_ptq]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--weights", default="imagenet_ptq")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "mixed_bfloat16", "int8"])
    ap.add_argument("--json", default=os.path.join(HERE, "results", "precision_flowers.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import tflite_transfer as tt

    rows = []
    for dtype in args.dtypes:
        if dtype == "mixed_bfloat16" and not tt._core.has_bf16():
            rows.append(dict(dtype=dtype, note="not run: no bfloat16 instructions on this CPU"))
            continue
        out = tempfile.mkdtemp(prefix=f"flowers_{dtype}_")
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "tflite_transfer", "flowers", "--no-augment",
               "--no-fine-tune", "--dtype", dtype, "--weights", args.weights, "--epochs", str(args.epochs),
               "--verbose", "0", "--output", out]
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        if r.returncode:
            rows.append(dict(dtype=dtype, note=f"failed: {r.stderr.strip().splitlines()[-1:]}"))
            continue
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            run = json.load(f)["no_augmentation"]
        rows.append(dict(dtype=dtype, val_accuracy=run["val_accuracy"], wall_s=wall,
                         features_s=run["times_s"].get("features"), train_s=run["times_s"].get("train"),
                         peak_rss_mib=int(rss.group(1)) / 1024 if rss else None, load_before=load0,
                         load_after=load1))
        print(json.dumps(rows[-1]), flush=True)
    f32 = next((r for r in rows if r["dtype"] == "float32" and "val_accuracy" in r), None)
    for r in rows:
        if f32 and "val_accuracy" in r:
            r["points_vs_float32"] = 100 * (r["val_accuracy"] - f32["val_accuracy"])
    result = dict(command="python3 benchmarks/bench_precision_flowers.py " + " ".join(argv or sys.argv[1:]),
                  time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), weights=args.weights,
                  epochs=args.epochs, rows=rows)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
