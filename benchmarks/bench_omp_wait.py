"""How long OpenMP threads should spin before sleeping: engine speed and the augmented job.

libgomp's waiting threads spin ``GOMP_SPINCOUNT`` times, then sleep (``OMP_WAIT_POLICY=passive``
with no count: 0 spins; libgomp's own default: 300,000). The package sets passive with 1000 spins
(``tflite_transfer/_native.py``). This measures, for each spin count, in interleaved rounds (every
round runs every count, so machine drift hits all alike), each in a fresh process started with
``OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=n``:

- the engine: ``MobileNetV2(include_top=False, pooling="avg", weights="imagenet_ptq").predict``
  with OpenMP's default thread count (all cores), f32 batch 1, int8 batch 1 (VNNI CPUs only)
  and f32 batch 32: images/s = batch / median call time over ``--seconds`` of calls after 3
  warm-up calls;
- with ``--job``: the flowers job with augmentation, 1 frozen + 1 fine-tuning epoch
  (``python -m tflite_transfer flowers --augment-only --epochs 1 --fine-tune-epochs 1``), the
  case where spinning OpenMP threads compete with the image threads: its wall time and the stage
  times it writes to summary.json (train = the epoch's fit, features, evaluate).

Usage:   python3 benchmarks/bench_omp_wait.py [--spins 0 1000 10000] [--rounds 2] [--seconds 4] [--job]
Writes:  benchmarks/results/omp_wait.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = """
import sys, time, numpy as np, tflite_transfer as tt
from tflite_transfer import applications
dtype, batch, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
m = applications.MobileNetV2(include_top=False, pooling="avg", weights="imagenet_ptq", dtype=dtype)
x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)
for _ in range(3):
    m.predict(x, batch_size=batch, verbose=0)
ts, end = [], time.perf_counter() + seconds
while time.perf_counter() < end:
    t = time.perf_counter()
    m.predict(x, batch_size=batch, verbose=0)
    ts.append(time.perf_counter() - t)
print(batch / float(np.median(ts)), len(ts), tt.get_num_threads())
"""


def _env(spin):
    return dict(os.environ, OMP_WAIT_POLICY="passive", GOMP_SPINCOUNT=str(spin))


def engine_case(spin, dtype, batch, seconds):
    r = subprocess.run([sys.executable, "-c", CHILD, dtype, str(batch), str(seconds)], env=_env(spin), cwd=ROOT,
                       capture_output=True, text=True, check=True)
    ips, calls, threads = r.stdout.split()
    return dict(images_per_s=float(ips), calls=int(calls), threads=int(threads))


def job_case(spin):
    out = tempfile.mkdtemp(prefix="omp_wait_job_")
    cmd = [sys.executable, "-m", "tflite_transfer", "flowers", "--augment-only", "--epochs", "1",
           "--fine-tune-epochs", "1", "--verbose", "0", "--output", out]
    t = time.perf_counter()
    subprocess.run(cmd, env=_env(spin), cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    with open(os.path.join(out, "summary.json")) as f:
        run = json.load(f)["augmented"]
    return dict(wall_s=wall, frozen=run["times_s"], fine_tuned=run["fine_tuned"]["times_s"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spins", type=int, nargs="+", default=[0, 1000, 10000])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--job", action="store_true", help="also time the augmented flowers job (~1.5 min per run)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "omp_wait.json"))
    args = ap.parse_args(argv)
    # checked before the minutes of measuring, not after
    if any(n < 0 for n in args.spins):
        ap.error(f"--spins must be counts >= 0 (libgomp reads a negative one as ~1.8e19). Received: {args.spins}")
    if args.rounds < 1 or not args.seconds > 0:
        ap.error(f"--rounds must be >= 1 and --seconds > 0. Received: {args.rounds}, {args.seconds}")
    out_dir = os.path.dirname(os.path.abspath(args.json))
    if os.path.isdir(args.json) or not os.access(out_dir, os.W_OK):
        ap.error(f"--json must be a file path in a writable folder. Received: {args.json!r}")
    sys.path.insert(0, ROOT)
    import tflite_transfer as tt

    cases = [("float32", 1), ("float32", 32)]
    if tt._core.has_vnni():
        cases.insert(1, ("int8", 1))
    rows = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for rnd in range(args.rounds):
        for spin in args.spins:
            load = os.getloadavg()[0]
            for dtype, batch in cases:
                r = engine_case(spin, dtype, batch, args.seconds)
                rows.append(dict(round=rnd, spin=spin, case=f"{dtype} batch {batch}", load_before=load, **r))
                print(f"round {rnd + 1} spin {spin}: {dtype} batch {batch}: {r['images_per_s']:.1f} images/s",
                      flush=True)
            if args.job:
                r = job_case(spin)
                rows.append(dict(round=rnd, spin=spin, case="augmented job 1+1 epochs", load_before=load, **r))
                print(f"round {rnd + 1} spin {spin}: job {r['wall_s']:.1f} s (frozen train "
                      f"{r['frozen']['train']:.1f} s, fine-tuning train {r['fine_tuned']['train']:.1f} s)", flush=True)
    summary = {}
    for spin in args.spins:
        s = {}
        for dtype, batch in cases:
            v = [r["images_per_s"] for r in rows if r["spin"] == spin and r["case"] == f"{dtype} batch {batch}"]
            s[f"{dtype} batch {batch} images/s"] = [round(x, 1) for x in v]
        if args.job:
            j = [r for r in rows if r["spin"] == spin and r["case"].startswith("augmented")]
            s["job wall s"] = [round(r["wall_s"], 1) for r in j]
            s["frozen epoch train s"] = [round(r["frozen"]["train"], 1) for r in j]
            s["fine-tuning epoch train s"] = [round(r["fine_tuned"]["train"], 1) for r in j]
        summary[str(spin)] = s
    res = dict(benchmark="bench_omp_wait", command="python3 benchmarks/bench_omp_wait.py " + " ".join(sys.argv[1:]),
               time_utc_start=started, time_utc_end=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               cpu_flags_vnni=bool(tt._core.has_vnni()), threads=tt.get_num_threads(),
               summary=summary, rows=rows)
    print(json.dumps(summary, indent=1))
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", args.json)


if __name__ == "__main__":
    main()
