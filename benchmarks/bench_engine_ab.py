"""Engine A/B: the same measurement as bench_engine.py (pooled MobileNetV2 features,
``predict(x, batch_size=b)``, images/s) for two checkouts of this repository, run in
alternation in one session so both see the same machine load.

Each round starts one fresh Python process per checkout (its own extension) and takes
the median images/s over ``--seconds``; the table reports the median over rounds and
the ratio new / old. Use it to show that a change of the engine's code layout costs
no speed:

    python benchmarks/bench_engine_ab.py --old /tmp/tt_old --new . --rounds 5

Writes: benchmarks/results/engine_ab.json (with the 1-min load average before and after).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import sys, time, json
import numpy as np
sys.path.insert(0, sys.argv[1])
import tflite_transfer
assert tflite_transfer.__file__.startswith(sys.argv[1]), tflite_transfer.__file__
from tflite_transfer import applications
batch, seconds = int(sys.argv[2]), float(sys.argv[3])
m = applications.MobileNetV2(include_top=False, pooling="avg", weights="imagenet")
x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)
m.predict(x, batch_size=batch)
ts, t_end = [], time.perf_counter() + seconds
while time.perf_counter() < t_end or len(ts) < 3:
    t0 = time.perf_counter(); m.predict(x, batch_size=batch); ts.append(time.perf_counter() - t0)
print(json.dumps({"ips": batch / float(np.median(ts)), "n": len(ts)}))
"""


def run(root, batch, seconds):
    env = dict(os.environ, TFLITE_TRANSFER_MIRROR=os.environ.get("TFLITE_TRANSFER_MIRROR", "/work/shared/models"))
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(root), str(batch), str(seconds)],
                         capture_output=True, text=True, env=env, check=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])["ips"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="checkout with the baseline extension built in place")
    ap.add_argument("--new", default=os.path.dirname(HERE), help="checkout under test (default: this one)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "engine_ab.json"))
    args = ap.parse_args(argv)
    load_before = open("/proc/loadavg").read().split()[0]
    res = {b: {"old": [], "new": []} for b in args.batches}
    for r in range(args.rounds):
        for b in args.batches:
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                res[b][name].append(run(getattr(args, name), b, args.seconds))
    load_after = open("/proc/loadavg").read().split()[0]
    rows = []
    print(f"{'batch':>5} {'old img/s':>10} {'new img/s':>10} {'new/old':>8}   (median of {args.rounds} rounds)")
    for b in args.batches:
        o = sorted(res[b]["old"])[len(res[b]["old"]) // 2]
        n = sorted(res[b]["new"])[len(res[b]["new"]) // 2]
        rows.append({"batch": b, "old_ips": o, "new_ips": n, "ratio": n / o, "old_all": res[b]["old"],
                     "new_all": res[b]["new"]})
        print(f"{b:>5} {o:>10.1f} {n:>10.1f} {n / o:>8.3f}")
    print(f"1-min load average: {load_before} before, {load_after} after")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "old": os.path.abspath(args.old),
                   "new": os.path.abspath(args.new), "rounds": args.rounds, "seconds": args.seconds,
                   "loadavg_before": load_before, "loadavg_after": load_after, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
