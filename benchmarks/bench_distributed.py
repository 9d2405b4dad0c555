"""Throughput of tflite_transfer.distributed.predict (pooled MobileNetV2 features) on a Dask
LocalCluster with 1 and 2 single-threaded worker processes, against one process.

Measures, on the same files (default: the first 512 of the sorted shared flower photos, page cache
warm), each the best of --repeat runs after a warm-up run (which builds the model on the workers):
  * one process, no Dask: decode (C loader, 1 thread) + base.predict, engine at 1 and 2 threads;
    and the decode and engine costs per image separately (1 thread) — the per-core budget;
  * distributed.predict with LocalCluster(n_workers=1 | 2, threads_per_worker=1, processes=True),
    partition sizes --partitions (default 16, 64, 256);
  * the scheduler's cost per task: 1000 no-op tasks through Client.map / gather, wall ms per task;
  * the cold start: the first run and the model rebuild time per worker (from its saved form);
  * inside the tasks (DistributedPrediction.timings): decode, model and worker-process CPU time
    per image: CPU time is what the per-core estimate in the README uses, as it is less disturbed
    than wall time by other jobs on a shared machine.

Writes benchmarks/results/distributed.json (with the load average: the machine is shared). Usage:
  python3 benchmarks/bench_distributed.py [--images N] [--repeat R] [--partitions 16,64,256]
About a minute on 2 cores.
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
if (SHARED / "models").is_dir() and not os.environ.get("TFLITE_TRANSFER_MIRROR"):
    os.environ["TFLITE_TRANSFER_MIRROR"] = f"{SHARED / 'models'}{os.pathsep}{SHARED / 'images'}"

import tflite_transfer as tt  # noqa: E402
from tflite_transfer import _core, data  # noqa: E402
from tflite_transfer import distributed as ttd  # noqa: E402


def _best(fn, repeat, cpu=None):
    """Best wall time of `repeat` calls (s); with a dict `cpu`, also the process CPU time of that call."""
    best = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        if time.perf_counter() - t < best:
            best = time.perf_counter() - t
            if cpu is not None:
                cpu["s"] = time.process_time() - c
    return best


def _noop(i):
    return i


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--partitions", default="16,64,256")
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "distributed.json"))
    args = ap.parse_args()
    import distributed

    files = [str(f) for f in sorted(pathlib.Path(args.shared, "flower_photos").glob("*/*.jpg"))[: args.images]]
    if not files:
        sys.exit(f"no photos under {args.shared}/flower_photos")
    n = len(files)
    for f in files:  # warm the page cache
        pathlib.Path(f).read_bytes()
    partitions = [int(p) for p in args.partitions.split(",")]
    res = {"images": n, "files": f"first {n} of sorted flower_photos/*/*.jpg",
           "mean_file_kib": float(np.mean([os.path.getsize(f) for f in files]) / 1024),
           "model": "MobileNetV2 1.0/224 ptq, include_top=False, pooling='avg' (1280 float32 per image)",
           "batch_size": 32, "repeat": args.repeat,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "dask": distributed.__version__, "load_average_at_start": list(os.getloadavg())}}
    base = tt.applications.MobileNetV2(include_top=False, pooling="avg", weights="imagenet")

    # -- one process, no Dask ------------------------------------------------------------------------
    def decode():
        loader = _core.Loader(files, 224, 224, 0, False, False, data.get_max_pixels(), 1)
        try:
            return loader.wait(loader.submit(np.arange(n, dtype=np.int64)))[0]
        finally:
            loader.close()

    images = decode()
    res["decode_ms_per_image_1_thread"] = 1e3 * _best(decode, args.repeat) / n
    for threads in (1, 2):
        tt.set_num_threads(threads)
        base.predict(images[:64], batch_size=32)
        res[f"engine_ms_per_image_{threads}_threads"] = 1e3 * _best(lambda: base.predict(images, batch_size=32),
                                                                    args.repeat) / n
        cpu = {}
        res[f"single_process_{threads}_threads_images_per_s"] = n / _best(
            lambda: base.predict(decode(), batch_size=32), args.repeat, cpu)
        res[f"single_process_{threads}_threads_cpu_ms_per_image"] = 1e3 * cpu["s"] / n
    tt.set_num_threads(os.cpu_count() or 1)
    res["per_core_budget_images_per_s"] = 1e3 / res["single_process_1_threads_cpu_ms_per_image"]
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1), flush=True)

    # -- Dask ------------------------------------------------------------------------------------------
    runs = []
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            client.wait_for_workers(workers)
            if workers == 2:
                t = time.perf_counter()
                client.gather(client.map(_noop, range(1000), pure=False))
                res["roundtrip_ms_per_noop_task"] = (time.perf_counter() - t)  # 1000 tasks: s total = ms each
            for p in partitions if workers == 2 else [64]:
                t = time.perf_counter()
                first = ttd.predict(base, files, client=client, partition_size=p, verbose=0)  # builds the model
                cold = time.perf_counter() - t
                out = {}

                def run(p=p):
                    out["r"] = ttd.predict(base, files, client=client, partition_size=p, verbose=0)

                wall = _best(run, args.repeat)
                assert np.array_equal(out["r"].predictions, base.predict(images, batch_size=32))
                row = {"workers": workers, "threads_per_worker": 1, "partition_size": p,
                       "tasks": -(-n // p), "images_per_s": n / wall,
                       "images_per_s_per_worker": n / wall / workers, "first_run_s": cold, "warm_run_s": wall,
                       "model_rebuild_s_per_worker": first.timings["model_load_s"] / workers,
                       **{f"{k[:-2]}_ms_per_image": 1e3 * out["r"].timings[k] / n
                          for k in ("decode_s", "model_s", "task_s", "worker_cpu_s")},
                       "load_average": os.getloadavg()[0]}
                runs.append(row)
                print(json.dumps(row), flush=True)
    res["distributed"] = runs
    one = next(r for r in runs if r["workers"] == 1)
    two = max((r for r in runs if r["workers"] == 2), key=lambda r: r["images_per_s"])
    res["speedup_2_vs_1_worker"] = two["images_per_s"] / one["images_per_s"]
    res["efficiency_1_worker_vs_single_process_1_thread"] = (one["images_per_s"]
                                                            / res["single_process_1_threads_images_per_s"])
    res["load_average_at_end"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
