"""Decode + resize to 224x224 throughput (images/s) on the shared flower photos.

Compares, on the same files (default: the first 500 of the 2936 photos in sorted order, read from
disk each time; warm page cache after a warm-up pass):
  * tflite_transfer's C loader (read + stb_image decode + bilinear resize) with 1 and 2 threads,
    fed through ImageDataset's prefetching iterator (batch 32);
  * Pillow single-threaded: Image.open + convert("RGB") + resize((224, 224), BILINEAR);
  * tf.data (read_file + decode_jpeg + tf.image.resize, parallel map, batch 32) if TensorFlow is
    importable.

Writes JSON to benchmarks/results/decode.json. Usage:
  python3 benchmarks/bench_decode.py [--images N] [--shared PATH] [--repeat R]
The default run takes well under a minute on 2 cores.
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tflite_transfer import data  # noqa: E402


def _best(fn, repeat):
    """(images/s by wall clock, CPU ms per image over all threads of the process), best of `repeat`."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        n = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return n / best, 1e3 * best_cpu / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode.json"))
    args = ap.parse_args()

    files = sorted(pathlib.Path(args.shared, "flower_photos").glob("*/*.jpg"))[: args.images]
    if not files:
        sys.exit(f"no photos under {args.shared}/flower_photos")
    # a class-folder tree of symlinks so image_dataset_from_directory sees exactly these files
    tmp = tempfile.mkdtemp(prefix="bench_decode_")
    for i, f in enumerate(files):
        d = os.path.join(tmp, f.parent.name)
        os.makedirs(d, exist_ok=True)
        os.symlink(f, os.path.join(d, f"{i:05d}_{f.name}"))
    n = len(files)
    for f in files:  # warm the page cache
        f.read_bytes()

    results = {"images": n, "size": [224, 224], "files": f"first {n} of sorted flower_photos/*/*.jpg",
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "processor": platform.processor() or platform.machine(),
                           "load_average_at_start": list(os.getloadavg())}}

    for threads in (1, 2):
        ds = data.image_dataset_from_directory(tmp, image_size=(224, 224), batch_size=32, shuffle=False,
                                               num_threads=threads, verbose=False)

        def run(ds=ds):
            c = 0
            for x, _ in ds:
                c += len(x)
            return c

        run()  # start threads, warm up
        results[f"tflite_transfer_{threads}_threads"], results[f"tflite_transfer_{threads}_threads_cpu_ms"] = \
            _best(run, args.repeat)
        ds.close()

    from PIL import Image

    def pil():
        for f in files:
            with Image.open(f) as im:
                np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR))
        return n

    results["pillow_1_thread"], results["pillow_1_thread_cpu_ms"] = _best(pil, args.repeat)
    results["pillow_version"] = Image.__version__

    try:
        import tensorflow as tf
    except ImportError:
        tf = None
        print("tf.data: not run (TensorFlow not installed)")
        results["tf_data"] = None
    if tf is not None:
        def load(p):
            img = tf.io.decode_jpeg(tf.io.read_file(p), channels=3)
            return tf.image.resize(img, (224, 224))

        tfds = tf.data.Dataset.from_tensor_slices([str(f) for f in files]).map(
            load, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(tf.data.AUTOTUNE)

        def run_tf():
            c = 0
            for x in tfds:
                c += int(x.shape[0])
            return c

        run_tf()
        results["tf_data"], results["tf_data_cpu_ms"] = _best(run_tf, args.repeat)

    results["ratio_1_thread_vs_pillow"] = results["tflite_transfer_1_threads"] / results["pillow_1_thread"]
    results["ratio_2_threads_vs_pillow"] = results["tflite_transfer_2_threads"] / results["pillow_1_thread"]
    results["cpu_time_ratio_pillow_vs_1_thread"] = (results["pillow_1_thread_cpu_ms"]
                                                    / results["tflite_transfer_1_threads_cpu_ms"])
    results["target"] = ">= 1.5x Pillow single-threaded"

    print(f"decode + resize to 224x224, {n} flower photos (images/s, best of {args.repeat}):")
    print(f"  tflite_transfer, 1 thread : {results['tflite_transfer_1_threads']:8.1f}  "
          f"({results['ratio_1_thread_vs_pillow']:.2f}x Pillow)")
    print(f"  tflite_transfer, 2 threads: {results['tflite_transfer_2_threads']:8.1f}  "
          f"({results['ratio_2_threads_vs_pillow']:.2f}x Pillow)")
    print(f"  Pillow {results['pillow_version']}, 1 thread  : {results['pillow_1_thread']:8.1f}")
    print(f"  CPU time per image: {results['tflite_transfer_1_threads_cpu_ms']:.2f} ms (ours, 1 thread) vs "
          f"{results['pillow_1_thread_cpu_ms']:.2f} ms (Pillow): {results['cpu_time_ratio_pillow_vs_1_thread']:.2f}x "
          "less CPU (insensitive to other load)")
    if results["tf_data"] is not None:
        print(f"  tf.data                   : {results['tf_data']:8.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"load average at start: {results['machine']['load_average_at_start']} on {os.cpu_count()} CPUs "
          "(other processes competing for the cores lower every number, the 2-thread one most)")
    print(f"wrote {args.out}")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
