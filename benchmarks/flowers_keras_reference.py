"""Where does the flowers accuracy come from? Our engine + trainer vs TensorFlow's own.

Not a test: a measurement for the README. For each shared MobileNetV2 .tflite model it
computes the pooled 1280-d features of the tf_flowers split (validation_split=0.2,
seed=123, 224x224) twice -- with our engine (dequantized float32 weights) and with
TensorFlow's TFLite interpreter (the model's native int8 arithmetic) -- then trains the
tutorial's head (Dropout(0.2) + Dense(5, softmax), Adam(1e-3), batch 32, 10 epochs)
with Keras' own ``fit`` on each feature set and with ours on ours, for several seeds,
and prints the final validation accuracies. Also the ceiling of a linear probe:
scikit-learn's LogisticRegression fitted to convergence.

Needs TensorFlow (``pip install tensorflow-cpu``); without it, prints "not run".

    python benchmarks/flowers_keras_reference.py [--flowers DIR] [--seeds 5]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flowers", default=None, help="flower_photos folder (default: datasets.tf_flowers())")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "flowers_keras_reference.json"))
    args = ap.parse_args()
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        print("flowers_keras_reference: not run (TensorFlow not installed)")
        return 0
    from sklearn.linear_model import LogisticRegression

    import tflite_transfer as tt
    from tflite_transfer import layers, optimizers
    from tflite_transfer.applications import mobilenet_v2 as mv

    directory = args.flowers or tt.datasets.tf_flowers()
    train, val = tt.data.image_dataset_from_directory(directory, validation_split=0.2, subset="both", seed=123,
                                                      image_size=(224, 224), batch_size=32, verbose=False)
    xt, yt = train.as_numpy()
    xv, yv = val.as_numpy()
    results = {"data": directory, "n_train": int(len(yt)), "n_val": int(len(yv)), "models": {}}

    def keras_head(ft, fv, seed):
        keras.utils.set_random_seed(seed)
        m = keras.Sequential([keras.Input((ft.shape[1],)), keras.layers.Dropout(0.2),
                              keras.layers.Dense(5, activation="softmax")])
        m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m.fit(ft, yt, epochs=10, batch_size=32, verbose=0, validation_data=(fv, yv)).history["val_accuracy"][-1]

    def our_head(ft, fv, seed):
        layers.set_random_seed(seed)
        m = tt.Sequential([layers.Dropout(0.2, seed=seed), layers.Dense(5, activation="softmax", seed=seed)])
        m.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m.fit(ft, yt, epochs=10, batch_size=32, verbose=0, validation_data=(fv, yv)).history["val_accuracy"][-1]

    for key in ("imagenet_ptq", "imagenet_quant"):
        path = mv.weights_path(key)
        base = tt.applications.MobileNetV2(include_top=False, weights=path)
        ours_t, ours_v = base.predict(xt, pooling="avg"), base.predict(xv, pooling="avg")
        interp = tf.lite.Interpreter(model_path=path, experimental_preserve_all_tensors=True, num_threads=2)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        feat = [d for d in interp.get_tensor_details() if list(d["shape"]) in ([1, 1280], [1, 1, 1, 1280])][0]

        def tfl(x):
            out = np.empty((len(x), 1280), np.float32)
            for i in range(len(x)):
                interp.set_tensor(inp["index"], x[i:i + 1])
                interp.invoke()
                q = interp.get_tensor(feat["index"]).reshape(-1).astype(np.float32)
                s, z = feat["quantization"]
                out[i] = (q - z) * s if s else q
            return out

        t0 = time.perf_counter()
        tfl_t, tfl_v = tfl(xt), tfl(xv)
        r = {"tflite_interpreter_seconds": time.perf_counter() - t0}
        seeds = range(args.seeds)
        r["keras_head_on_tflite_int8_features"] = [float(keras_head(tfl_t, tfl_v, s)) for s in seeds]
        r["keras_head_on_our_features"] = [float(keras_head(ours_t, ours_v, s)) for s in seeds]
        r["our_head_on_our_features"] = [float(our_head(ours_t, ours_v, s)) for s in seeds]
        r["logistic_regression_on_our_features"] = float(
            LogisticRegression(max_iter=3000).fit(ours_t, yt).score(ours_v, yv))
        r["feature_correlation_ours_vs_tflite_int8"] = float(np.corrcoef(ours_t.ravel(), tfl_t.ravel())[0, 1])
        results["models"][os.path.basename(path)] = r
        print(os.path.basename(path))
        for k, v in r.items():
            if isinstance(v, list):
                print(f"  {k:40s} mean {np.mean(v):.4f}  per seed {np.round(v, 4).tolist()}")
            else:
                print(f"  {k:40s} {v:.4f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
