"""Benchmark (not a test) of the flowers job: wall time per stage and peak memory,
without and with augmentation, each run in its own process so that the peak RSS
(resource.getrusage ru_maxrss, which covers C allocations) is its own.

    python benchmarks/bench_flowers.py [--epochs 10] [--data-dir DIR] [--batch-size 32] [--no-fine-tune]

By default each run includes the job's fine-tuning stage (10 epochs from layer 100), which
needs the backward pass through the base (issue 8); --no-fine-tune times the frozen stage only.

Writes benchmarks/results/flowers.json (with the 1-min load average before and after each run).
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


def one(args):
    from tflite_transfer import flowers, get_num_threads

    t = time.perf_counter()
    res = flowers.run(directory=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
                      augment=(args.one == "augmented",), output=None, verbose=0, print_fn=lambda *a: None,
                      fine_tune=not args.no_fine_tune)
    wall = time.perf_counter() - t
    r = res[args.one]
    print(json.dumps({"run": args.one, "wall_s": wall, "times_s": r["times_s"], "val_accuracy": r["val_accuracy"],
                      "fit_path": r["fit_path"], "threads": get_num_threads(),
                      "fine_tuned_val_accuracy": r.get("fine_tuned", {}).get("val_accuracy"),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--no-fine-tune", action="store_true", help="the frozen stage only")
    ap.add_argument("--one", choices=("no_augmentation", "augmented"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    results = []
    for run in ("no_augmentation", "augmented"):
        cmd = [sys.executable, __file__, "--one", run, "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size)] + (["--data-dir", args.data_dir] if args.data_dir else []) + \
            (["--no-fine-tune"] if args.no_fine_tune else [])
        load_before = os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{run} failed:\n{proc.stderr}")
        out = proc.stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        results[-1]["load_avg_1min_before_after"] = [load_before, os.getloadavg()[0]]
        print(results[-1])
    doc = {"job": "flowers", "command": "python benchmarks/bench_flowers.py " + " ".join(sys.argv[1:]),
           "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "epochs": args.epochs,
           "fine_tune": not args.no_fine_tune, "batch_size": args.batch_size, "machine": platform.platform(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "runs": results}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "flowers.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
