"""The flowers job over several seeds: mean and spread of the final validation accuracy.

    python benchmarks/flowers_seeds.py --seeds 3                       # seeds 123, 124, 125
    python benchmarks/flowers_seeds.py --seed-list 1 2 3 --runs no_augmentation
    python benchmarks/flowers_seeds.py --seeds 3 --set fine_tune_epochs=10   # any option of flowers.run

Calls ``tflite_transfer.flowers.run`` (the job behind ``./run.sh flowers``) once per seed with the
job's own defaults unless ``--epochs`` / ``--set NAME=VALUE`` say otherwise, so whatever the job
does (stages, options) is what is measured: with the fine-tuning stage (the job's default since it
landed) each run also reports "<run>_fine_tuned"; ``--set fine_tune=False`` measures the frozen
stage alone. The seed is the job's ``seed`` argument: it fixes the
training/validation split (``validation_split=0.2, seed=...``), the head's initial weights, the
shuffling, the dropout masks and the augmentation draws; so the spread reported here includes the
split's.

Writes ``benchmarks/results/flowers_seeds.json`` (``--output``): the command, the git commit, the
machine, the 1-minute load average before and after each seed, per seed and run the final
validation accuracy, fit path and stage times, and per run the mean, sample standard deviation
(ddof=1), min and max over seeds. Needs TFLITE_TRANSFER_FLOWERS / TFLITE_TRANSFER_MIRROR offline
(``./run.sh`` sets them; see the README).
"""
import argparse
import ast
import inspect
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tflite_transfer import flowers  # noqa: E402


def _loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _git_commit():
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _parse_set(items, allowed):
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects NAME=VALUE. Received: {item!r}")
        if name not in allowed:
            raise SystemExit(f"--set {name}: flowers.run has no such option. Options: {sorted(allowed)}")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value  # a plain string (a path, "imagenet_quant", ...)
    return out


def _stages(results):
    """(name, stage results) for each run and, when the job fine-tuned, "<run>_fine_tuned"."""
    for name, r in results.items():
        yield name, r
        if isinstance(r.get("fine_tuned"), dict):
            yield name + "_fine_tuned", r["fine_tuned"]


def summarize(per_seed, run_names):
    """{run: {mean, std, min, max, n}} of the final validation accuracies over seeds (std: ddof=1)."""
    summary = {}
    for name in run_names:
        accs = np.array([s["runs"][name]["val_accuracy"] for s in per_seed if name in s["runs"]], dtype=np.float64)
        if accs.size == 0:
            continue
        summary[name] = {"n": int(accs.size), "mean": float(accs.mean()),
                         "std": float(accs.std(ddof=1)) if accs.size > 1 else None,
                         "min": float(accs.min()), "max": float(accs.max()), "values": accs.tolist()}
    return summary


def main(argv=None):
    params = inspect.signature(flowers.run).parameters
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=int, default=3, help="number of seeds: 123, 124, ... (default %(default)s)")
    g.add_argument("--seed-list", type=int, nargs="+", help="explicit seeds")
    p.add_argument("--runs", nargs="+", default=["no_augmentation", "augmented"],
                   choices=["no_augmentation", "augmented"], help="which runs of the job (default: both)")
    p.add_argument("--epochs", type=int, default=None, help="default: the job's")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any other keyword of tflite_transfer.flowers.run (repeatable)")
    p.add_argument("--output", default=os.path.join(HERE, "results", "flowers_seeds.json"))
    args = p.parse_args(argv)

    seeds = args.seed_list or [123 + i for i in range(args.seeds)]
    options = _parse_set(args.set, set(params) - {"seed", "augment", "output", "print_fn", "verbose"})
    if args.epochs is not None:
        options["epochs"] = args.epochs
    options["augment"] = tuple(name == "augmented" for name in args.runs)
    defaults = {k: v.default for k, v in params.items() if v.default is not inspect.Parameter.empty
                and k not in ("print_fn",)}
    job_options = {**defaults, **options, "output": None, "verbose": 0}

    record = {"command": "python benchmarks/flowers_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "job": "tflite_transfer.flowers.run", "options": {k: (list(v) if isinstance(v, tuple) else v)
                                                               for k, v in job_options.items()},
              "seeds": seeds, "git_commit": _git_commit(), "machine": platform.platform(),
              "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "per_seed": []}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    for seed in seeds:
        load_before = _loadavg()
        t = time.perf_counter()
        lines = []
        results = flowers.run(seed=seed, print_fn=lines.append, **options, output=None, verbose=0)
        entry = {"seed": seed, "wall_s": time.perf_counter() - t, "loadavg_1min_before": load_before,
                 "loadavg_1min_after": _loadavg(), "runs": {}}
        for name, r in _stages(results):
            entry["runs"][name] = {"val_accuracy": r["val_accuracy"], "fit_path": r["fit_path"],
                                   "times_s": r["times_s"], "final_history": {k: v[-1] for k, v in r["history"].items()}}
            print(f"seed {seed} {name}: val_accuracy {r['val_accuracy']:.4f} ({r['fit_path']}, "
                  f"load {load_before:.1f}->{entry['loadavg_1min_after']:.1f})", flush=True)
        record["per_seed"].append(entry)
        record["summary"] = summarize(record["per_seed"], list(entry["runs"]))
        with open(args.output, "w") as f:  # after every seed, so a long run leaves partial results
            json.dump(record, f, indent=1)
    record["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(args.output, "w") as f:
        json.dump(record, f, indent=1)
    for name, s in record["summary"].items():
        std = f"{s['std']:.4f}" if s["std"] is not None else "n/a"
        print(f"{name}: mean {s['mean']:.4f}, std {std}, range {s['min']:.4f}-{s['max']:.4f} over {s['n']} seeds")
    print(f"Wrote {args.output}")
    return record


if __name__ == "__main__":
    main()
