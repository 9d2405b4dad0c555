"""Float vs int8 LiteRT export of the flowers model: file sizes and top-1 agreement.

Trains the frozen recipe (default weights, no augmentation, Dropout(0.2) + Dense(5,
softmax), Adam(1e-3), batch 32, 10 epochs) on the training subset of the flowers folder
(validation_split=0.2, seed=123), exports it with ``model.export`` as a float .tflite and
as an int8 one (``quantize="int8"``, representative_dataset = the first `--calibration`
training images), runs both in ai-edge-litert on the whole validation subset and reports
the fraction of photos whose int8 top-1 equals the float top-1, both accuracies, the
largest probability difference and the file sizes. Once per seed (``--seeds N``, default 3:
123, 124, ...; the seed sets the split, the head's initial weights and the shuffling), then
the mean, sample standard deviation (ddof=1), min and max of each number over the seeds.
Writes results/export_int8.json (after every seed, so a cut run keeps what it measured).

Needs ai-edge-litert (in the test extra).

    python benchmarks/export_int8.py [--seeds 3] [--flowers DIR] [--calibration 128]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _litert(path, x, batch=32):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=2)
    inp = interp.get_input_details()[0]
    out = []
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        interp.resize_tensor_input(inp["index"], xb.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        out.append(interp.get_tensor(interp.get_output_details()[0]["index"]).copy())
    return np.concatenate(out)


def _one_seed(tt, layers, directory, seed, calibration):
    """Train the frozen recipe with `seed`, export float and int8, run both in LiteRT."""
    train, val = tt.data.image_dataset_from_directory(directory, validation_split=0.2, subset="both", seed=seed,
                                                      image_size=(224, 224), batch_size=32, verbose=False)
    xt, yt = train.as_numpy()
    xv, yv = val.as_numpy()
    layers.set_random_seed(seed)
    base = tt.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet")
    base.trainable = False
    model = tt.Sequential([base, layers.GlobalAveragePooling2D(), layers.Dropout(0.2),
                           layers.Dense(len(train.class_names), activation="softmax")])
    model.compile(optimizer=tt.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt, yt, epochs=10, batch_size=32, verbose=0)
    pred = model.predict(xv, verbose=0)
    res = {"seed": seed, "weights": os.path.basename(base.weights_path), "n_val": int(len(yv)),
           "loadavg_1min_start": float(os.getloadavg()[0]),
           "predict_accuracy": float(np.mean(pred.argmax(1) == yv))}
    with tempfile.TemporaryDirectory() as d:
        fpath, qpath = os.path.join(d, "float.tflite"), os.path.join(d, "int8.tflite")
        res["float_bytes"] = model.export(fpath, labels=train.class_names, verbose=False)
        t0 = time.perf_counter()
        calib = [xt[s:s + 32] for s in range(0, calibration, 32)]
        res["int8_bytes"] = model.export(qpath, quantize="int8", representative_dataset=calib,
                                         labels=train.class_names, verbose=False)
        res["int8_export_seconds"] = time.perf_counter() - t0
        pf, pq = _litert(fpath, xv), _litert(qpath, xv)
    res["float_litert_max_abs_diff_vs_predict"] = float(np.abs(pf - pred).max())
    res["float_litert_accuracy"] = float(np.mean(pf.argmax(1) == yv))
    res["int8_litert_accuracy"] = float(np.mean(pq.argmax(1) == yv))
    res["top1_agreement_int8_vs_float"] = float(np.mean(pq.argmax(1) == pf.argmax(1)))
    res["int8_max_abs_prob_diff"] = float(np.abs(pq - pf).max())
    res["loadavg_1min_end"] = float(os.getloadavg()[0])
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flowers", default=None)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 123, 124, ... (default %(default)s)")
    ap.add_argument("--calibration", type=int, default=128, help="representative training images (default 128)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "export_int8.json"))
    args = ap.parse_args(argv)
    import tflite_transfer as tt
    from tflite_transfer import layers

    directory = args.flowers or tt.datasets.tf_flowers()
    out = {"command": "python benchmarks/export_int8.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "calibration_images": args.calibration, "per_seed": [], "summary": {}}
    for seed in range(123, 123 + args.seeds):
        res = _one_seed(tt, layers, directory, seed, args.calibration)
        for k, v in res.items():
            print(f"{k:40s} {v}")
        out["per_seed"].append(res)
        out["weights"] = res.pop("weights")
        for k in res:
            if k == "seed" or not isinstance(res[k], (int, float)):
                continue
            v = np.array([r[k] for r in out["per_seed"]], dtype=np.float64)
            out["summary"][k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None,
                                 "min": float(v.min()), "max": float(v.max())}
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    for k in ("predict_accuracy", "float_litert_accuracy", "int8_litert_accuracy", "top1_agreement_int8_vs_float"):
        sm = out["summary"][k]
        print(f"{k:40s} mean {sm['mean']:.4f} std {sm['std'] if sm['std'] is None else round(sm['std'], 4)} "
              f"range {sm['min']:.4f}-{sm['max']:.4f} over {args.seeds} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
