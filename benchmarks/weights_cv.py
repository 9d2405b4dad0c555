"""Which pretrained weights should weights="imagenet" load? 5-fold cross-validation.

The frozen recipe of the flowers job, without augmentation: pooled MobileNetV2 features
(224x224, computed once per weight set), then Dropout(0.2) + Dense(5, softmax), Adam(1e-3),
batch 32, 10 epochs, trained with this package's ``fit``. Data: every photo of the
flowers folder (2936 in ../shared/flower_photos). Folds: scikit-learn's StratifiedKFold
(5 folds, shuffled, random_state=r for r < `--repeats`), the same folds for every weight set
(a paired comparison); each fold is trained with `--seeds` head seeds and their accuracies
averaged. Reported per weight set: the fold accuracies (repeat-major), mean, standard
deviation (ddof=1) over the 5 x repeats folds, and the paired differences to the ptq weights.

    python benchmarks/weights_cv.py [--flowers DIR] [--seeds 3] [--repeats 3] [--out results/weights_cv.json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WEIGHTS = ("imagenet_ptq", "imagenet_quant", "imagenet_float")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flowers", default=None, help="flower_photos folder (default: datasets.tf_flowers())")
    ap.add_argument("--seeds", type=int, default=3, help="head seeds per fold (default 3)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3,
                    help="repetitions of the k-fold split with different shuffles (default 3)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "weights_cv.json"))
    args = ap.parse_args(argv)
    from sklearn.model_selection import StratifiedKFold

    import tflite_transfer as tt
    from tflite_transfer import layers, optimizers

    directory = args.flowers or tt.datasets.tf_flowers()
    ds = tt.data.image_dataset_from_directory(directory, shuffle=False, image_size=(224, 224), batch_size=64,
                                              verbose=False)
    x, y = ds.as_numpy()
    folds = [f for r in range(args.repeats)
             for f in StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=r).split(np.zeros(len(y)), y)]
    results = {"command": "python benchmarks/weights_cv.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "data": directory, "n_images": int(len(y)), "class_names": list(ds.class_names),
               "folds": args.folds, "repeats": args.repeats, "head_seeds": args.seeds,
               "recipe": "frozen base, pooled features, Dropout(0.2) + Dense(5, softmax), Adam(1e-3), batch 32, "
                         "10 epochs, no augmentation",
               "loadavg_1min_start": float(os.getloadavg()[0]), "weights": {}}

    def head_accuracy(ft, yt, fv, yv, seed):
        layers.set_random_seed(seed)
        m = tt.Sequential([layers.Dropout(0.2, seed=seed), layers.Dense(5, activation="softmax", seed=seed)])
        m.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(ft, yt, epochs=10, batch_size=32, verbose=0)
        return float(np.mean(m.predict(fv, verbose=0).argmax(1) == yv))

    for key in WEIGHTS:
        t0 = time.perf_counter()
        base = tt.applications.MobileNetV2(include_top=False, weights=key, pooling="avg")
        feats = base.predict(x, batch_size=64)
        t_feat = time.perf_counter() - t0
        accs = []
        for tr, te in folds:
            accs.append(float(np.mean([head_accuracy(feats[tr], y[tr], feats[te], y[te], s)
                                       for s in range(args.seeds)])))
        results["weights"][key] = {"file": os.path.basename(base.weights_path), "fold_accuracy": accs,
                                   "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)),
                                   "feature_seconds": t_feat}
        print(f"{key:16s} mean {np.mean(accs):.4f}  std {np.std(accs, ddof=1):.4f}  folds {np.round(accs, 4).tolist()}"
              f"  (features {t_feat:.0f} s)", flush=True)
    ref = np.asarray(results["weights"]["imagenet_ptq"]["fold_accuracy"])
    for key in WEIGHTS:
        d = np.asarray(results["weights"][key]["fold_accuracy"]) - ref
        results["weights"][key]["paired_diff_vs_ptq"] = {"mean": float(d.mean()),
                                                        "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                                                        "folds_better": int((d > 0).sum())}
    best = max(WEIGHTS, key=lambda k: results["weights"][k]["mean"])
    results["best_mean"] = best
    results["loadavg_1min_end"] = float(os.getloadavg()[0])
    print(f"best mean: {best}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
