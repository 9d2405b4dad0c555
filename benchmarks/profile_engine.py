"""Where the engine's time goes: oneDNN's own per-primitive timings of MobileNetV2 pooled features.

Runs ``MobileNetV2(include_top=False, pooling="avg", weights=W, dtype=D).predict`` on one
micro-batch (default 4 images, 1 thread: what each lane of a large batch runs) in a child
process with ``ONEDNN_VERBOSE=profile_exec``, splits the log into runs at the first (stem)
convolution, and sums the last ``--runs`` runs by primitive kind and implementation: 1x1
convolutions, expand 1x1 + depthwise fused (the dw post-op), depthwise, the 3x3 stem, pooling,
reorders. Times are oneDNN's (ms, wall time of each primitive, verbose logging on: a little
slower than a plain run); shares are of the summed primitive time. A reorder that runs at the
start of a run (int8's input quantization) is counted with the run before it.

Usage:   python benchmarks/profile_engine.py [--dtype float32 int8 mixed_bfloat16] [--batch 4]
                                             [--threads 1] [--runs 4] [--weights imagenet_ptq]
Writes:  benchmarks/results/profile.json
"""
import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import sys, numpy as np, tflite_transfer as tt
from tflite_transfer import applications
dtype, batch, threads, runs, weights = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tt.set_num_threads(threads)
m = applications.MobileNetV2(include_top=False, pooling="avg", weights=weights, dtype=dtype)
x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)
for _ in range(runs + 2):
    m.predict(x, batch_size=batch, verbose=0)
"""


def _kind(row):
    prim, impl, problem = row[3], row[4], row[-2]
    if prim != "convolution":
        return f"{prim} ({impl})"
    line = ",".join(row)
    if "kh1" in problem and "+dw:" in line:
        return f"expand 1x1 + depthwise fused ({impl})"
    if "kh1" in problem:
        return f"1x1 convolution ({impl})"
    if problem.startswith("g"):
        return f"depthwise 3x3 ({impl})"
    return f"3x3 convolution ({impl})"


def profile(dtype, batch, threads, runs, weights):
    env = dict(os.environ, ONEDNN_VERBOSE="profile_exec")
    out = subprocess.run([sys.executable, "-c", CHILD, dtype, str(batch), str(threads), str(runs), weights],
                         capture_output=True, text=True, env=env, check=True).stdout
    rows = [ln.strip().split(",") for ln in out.splitlines() if ln.startswith("onednn_verbose,exec,cpu,")]
    starts = [k for k, r in enumerate(rows) if r[3] == "convolution" and "ic3oc" in r[-2]]
    segments = [rows[a:b] for a, b in zip(starts, starts[1:] + [len(rows)])][-runs:]
    per = collections.defaultdict(float)
    count = collections.Counter()
    for seg in segments:
        for r in seg:
            k = _kind(r)
            per[k] += float(r[-1]) / len(segments)
            count[k] += 1
    total = sum(per.values())
    kinds = [dict(kind=k, ms_per_run=round(v, 3), share=round(v / total, 4),
                  primitives_per_run=count[k] // len(segments))
             for k, v in sorted(per.items(), key=lambda kv: -kv[1])]
    return dict(dtype=dtype, batch=batch, threads=threads, runs=len(segments), total_ms_per_run=round(total, 3),
                primitives_per_run=sum(k["primitives_per_run"] for k in kinds), kinds=kinds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", nargs="+", default=["float32", "mixed_bfloat16", "int8"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--weights", default="imagenet_ptq")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "profile.json"))
    a = ap.parse_args()
    res = dict(benchmark="oneDNN profile_exec of MobileNetV2 pooled features, by primitive kind",
               command="python benchmarks/profile_engine.py " + " ".join(sys.argv[1:]),
               time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine=platform.processor() or
               platform.machine(), load_before=os.getloadavg()[0], weights=a.weights, profiles=[])
    import tflite_transfer as tt
    for d in a.dtype:
        missing = ("bfloat16" if d == "mixed_bfloat16" and not tt._core.has_bf16() else
                   "VNNI" if d.startswith("int8") and not tt._core.has_vnni() else None)
        if missing:
            res["profiles"].append(dict(dtype=d, note=f"not run: no {missing} instructions on this CPU"))
            print(f"{d}: not run (no {missing} instructions on this CPU)")
            continue
        p = profile(d, a.batch, a.threads, a.runs, a.weights)
        res["profiles"].append(p)
        print(f"{d}: {p['total_ms_per_run']:.1f} ms per run of {a.batch} images, {p['primitives_per_run']} primitives")
        for k in p["kinds"]:
            print(f"  {k['share'] * 100:5.1f}%  {k['ms_per_run']:7.2f} ms  x{k['primitives_per_run']:<3d} {k['kind']}")
    res["load_after"] = os.getloadavg()[0]
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", a.json)


if __name__ == "__main__":
    main()
