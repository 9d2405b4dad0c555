"""The flowers job, the TensorFlow transfer-learning tutorial's recipe in two stages, on a
folder of class sub-folders (tf_flowers by default):

1. *Feature extraction*: MobileNetV2 (ImageNet, frozen) + GlobalAveragePooling2D +
   Dropout(0.2) + Dense(softmax), ``epochs`` (10) epochs of Adam(1e-3), sparse categorical
   cross-entropy; without and with the tutorial's augmentation (RandomFlip("horizontal"),
   RandomBrightness(0.2), RandomContrast(0.2)).
2. *Fine-tuning* (unless ``fine_tune=False`` / ``--no-fine-tune``): ``base.trainable = True``,
   ``for layer in base.layers[:fine_tune_at]: layer.trainable = False`` (``fine_tune_at`` 100:
   from block 11 on, Keras' layer numbering), recompile with RMSprop(1e-5) and
   ``fit(..., epochs=epochs + fine_tune_epochs, initial_epoch=history.epoch[-1])``, as the
   tutorial does (so it runs ``fine_tune_epochs + 1`` epochs, numbered on from stage 1).

After each stage it prints the per-epoch metrics, the final validation accuracy,
scikit-learn's classification report and confusion matrix on the validation subset, and the
wall time of each part (load, features, train, evaluate); saves each trained model to
``<output>/<run>.ttz`` (stage 2: ``<run>_fine_tuned.ttz``), its figures as ``<output>/<run>[_fine_tuned]_<figure>.png``
(training curves, confusion matrix, precision/recall, misclassified photos) and a ``summary.json``.

Stage 2 trains the base's top through the C engine's backward pass (``models/finetune.py``).
"""
import json
import os
import tempfile
import time

import numpy as np


def run(directory=None, epochs=10, batch_size=32, image_size=(224, 224), validation_split=0.2, seed=123,
        augment=(False, True), weights="imagenet", output="flowers_output", verbose=1, learning_rate=1e-3,
        print_fn=print, fine_tune=True, fine_tune_at=100, fine_tune_epochs=10, fine_tune_learning_rate=1e-5,
        on_error="raise", dtype=None):
    """Runs the job; returns a dict {run name: results} (see summary.json).

    Args:
      directory (str | None): dataset folder (class sub-folders); None = tf_flowers
        (``datasets.tf_flowers()``, honours TFLITE_TRANSFER_FLOWERS).
      epochs (int), batch_size (int), image_size ((h, w)), validation_split (float), seed (int).
      augment (tuple of bool): which runs to do: False = no augmentation, True = augmentation.
      weights (str): "imagenet" or a .tflite path for MobileNetV2.
      dtype (str | None): the frozen base's precision, MobileNetV2's `dtype`: None /
        "float32", "mixed_bfloat16", "int8" or "int8_tflite" (int8 and bf16 engines are inference
        only: with a dtype other than float32, `fine_tune` must be False).
      output (str | None): folder for the saved models and summary.json (None: don't save).
      verbose (0 | 1 | 2): fit's verbosity.
      learning_rate (float): Adam's, stage 1.
      fine_tune (bool): run stage 2 after stage 1 (each run).
      fine_tune_at (int): the first trainable layer of ``base.layers`` in stage 2, in
        [0, 154) (0: the whole network).
      fine_tune_epochs (int >= 1): stage 2 trains up to epoch ``epochs + fine_tune_epochs``
        from ``initial_epoch = history.epoch[-1]``, as the tutorial.
      fine_tune_learning_rate (float): RMSprop's, stage 2.
      on_error ("raise" | "skip"): undecodable photos, as `image_dataset_from_directory`'s `on_error`
        (the CLI's ``--on-error``).

    Returns:
      {run name: dict(val_accuracy, history, fit_path, classification_report, confusion_matrix,
      y_true, y_pred, class_names, times_s, model_path) of stage 1, plus "fine_tuned": the same
      keys for stage 2 (and "fine_tune_at", "trainable_params") when fine_tune}.

    Raises:
      ValueError: bad arguments (``fine_tune_at`` out of range is checked before stage 1) or data.
      OSError: `output` cannot be created or written (checked before stage 1).
    """
    from . import applications, datasets, layers, optimizers
    from .data import image_dataset_from_directory
    from .models import Sequential
    from .applications._dtypes import _engine_precision

    if fine_tune and (isinstance(fine_tune_epochs, bool) or not isinstance(fine_tune_epochs, int)
                      or fine_tune_epochs < 1):
        raise ValueError(f"`fine_tune_epochs` must be an int >= 1. Received: fine_tune_epochs={fine_tune_epochs!r}")
    if dtype not in (None, "float32") and fine_tune:
        raise ValueError(f"dtype={dtype!r} runs the frozen base only (its engine has no backward pass); "
                         "pass fine_tune=False (--no-fine-tune) or dtype='float32'.")
    if dtype is not None:
        _engine_precision(dtype)  # this CPU's instructions, before any photo is read
    if output:
        # Fail before hours of training rather than at the first save.
        try:
            os.makedirs(output, exist_ok=True)
            tempfile.TemporaryFile(dir=output).close()
        except OSError as e:
            raise OSError(f"The output folder {output!r} cannot be written ({e.strerror or e}); pass a writable "
                          "`output` (CLI: --output).") from e
    times = {}
    t = time.perf_counter()
    if directory is None:
        directory = datasets.tf_flowers()
    train_ds, val_ds = image_dataset_from_directory(
        directory, validation_split=validation_split, subset="both", seed=seed, image_size=tuple(image_size),
        batch_size=batch_size, on_error=on_error)
    class_names = list(train_ds.class_names)
    times["load"] = time.perf_counter() - t
    print_fn(f"Data: {directory}: {train_ds.num_images} training and {val_ds.num_images} validation images, "
             f"classes {class_names}")
    results = {}
    for aug in augment:
        name = "augmented" if aug else "no_augmentation"
        print_fn(f"\n=== {name} ===")
        layers.set_random_seed(seed)  # initial weights, shuffling and dropout masks: the same on every run
        base = applications.MobileNetV2(input_shape=tuple(image_size) + (3,), include_top=False, weights=weights,
                                        dtype=dtype)
        if fine_tune:
            base.fine_tune_from(fine_tune_at)  # checks fine_tune_at now, not after stage 1
        base.trainable = False
        stack = []
        if aug:
            stack += [_seeded(layers.RandomFlip, "horizontal", seed=seed),
                      _seeded(layers.RandomBrightness, 0.2, seed=seed),
                      _seeded(layers.RandomContrast, 0.2, seed=seed)]
        stack += [base, layers.GlobalAveragePooling2D(), layers.Dropout(0.2, seed=seed),
                  layers.Dense(len(class_names), activation="softmax", seed=seed)]
        model = Sequential(stack, name=f"flowers_{name}")
        model.compile(optimizer=optimizers.Adam(learning_rate=learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        t = time.perf_counter()
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose)
        results[name] = _report(model, history, time.perf_counter() - t, name, "", times, val_ds, class_names,
                                batch_size, output, print_fn)
        if not fine_tune:
            continue
        # Stage 2, the tutorial's fine-tuning.
        print_fn(f"\n=== {name}: fine-tuning from layer {fine_tune_at} ({base.layers[fine_tune_at].name}) ===")
        base.fine_tune_from(fine_tune_at)
        model.compile(optimizer=optimizers.RMSprop(learning_rate=fine_tune_learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        trainable = sum(l._trainable_param_count() for l in model.layers)
        print_fn(f"Trainable parameters: {trainable:,} (base: {base._trainable_param_count():,}, folded batch norm)")
        t = time.perf_counter()
        history_fine = model.fit(train_ds, validation_data=val_ds, epochs=epochs + fine_tune_epochs,
                                 initial_epoch=history.epoch[-1], verbose=verbose)
        results[name]["fine_tuned"] = _report(model, history_fine, time.perf_counter() - t, name, "_fine_tuned",
                                              times, val_ds, class_names, batch_size, output, print_fn,
                                              first_history=history)
        results[name]["fine_tuned"].update(fine_tune_at=fine_tune_at, trainable_params=trainable)
    if output:
        with open(os.path.join(output, "summary.json"), "w") as f:
            json.dump(results, f, indent=1)
    return results


def _report(model, history, fit_time, name, suffix, times, val_ds, class_names, batch_size, output, print_fn,
            first_history=None):
    """Evaluates one trained stage on the validation subset, prints and saves (model and figures;
    `first_history`: stage 1's History, for the curves of stage 2); returns its results."""
    from sklearn.metrics import classification_report, confusion_matrix

    timings = history.params["timings"]
    t = time.perf_counter()
    # Batch by batch (labels and predictions stay aligned whatever the dataset's order),
    # so the whole validation set is never held in memory as float32.
    y_val, y_pred = [], []
    for xb, yb in val_ds:
        y_pred.append(np.argmax(model.predict(xb, batch_size=batch_size, verbose=0), axis=1))
        y_val.append(np.asarray(yb))
    y_val, y_pred = np.concatenate(y_val), np.concatenate(y_pred)
    eval_time = time.perf_counter() - t
    acc = float(np.mean(y_pred == y_val))
    report = classification_report(y_val, y_pred, labels=list(range(len(class_names))),
                                   target_names=class_names, digits=4, zero_division=0)
    cm = confusion_matrix(y_val, y_pred, labels=list(range(len(class_names))))
    label = name + (" fine-tuned" if suffix else "")
    print_fn(f"\nPath: {model.last_fit_path}")
    for e, i in enumerate(history.epoch):
        print_fn(f"epoch {i + 1:2d}: " + " - ".join(f"{k}: {v[e]:.4f}" for k, v in history.history.items()))
    print_fn(f"Final validation accuracy ({label}): {acc:.4f}")
    print_fn("Classification report (validation):\n" + report)
    print_fn("Confusion matrix (rows: true, columns: predicted; order " + ", ".join(class_names) + "):")
    print_fn(str(cm))
    stage = {"load": times["load"], "features": timings["features"],
             "train": timings["train"] + timings["validation"], "evaluate": eval_time, "fit_total": fit_time}
    print_fn("Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stage.items()))
    saved = None
    if output:
        os.makedirs(output, exist_ok=True)
        saved = os.path.join(output, f"{name}{suffix}.ttz")
        model.save(saved)
        print_fn(f"Saved the model to {saved}")
        _write_figures(output, name + suffix, history if first_history is None else first_history, model, val_ds, print_fn,
                       fine_tune_history=history if first_history is not None else None)
    return {"val_accuracy": acc, "history": history.history, "epochs": list(history.epoch),
            "fit_path": model.last_fit_path, "classification_report": report, "confusion_matrix": cm.tolist(),
            "y_true": y_val.tolist(), "y_pred": y_pred.tolist(), "class_names": class_names,
            "times_s": stage, "model_path": saved}


def _write_figures(output, name, history, model, val_ds, print_fn, fine_tune_history=None):
    """Training curves, confusion matrix, per-class precision/recall and misclassified photos of
    one run as ``<output>/<name>_*.png`` (``visualization.save_evaluation_figures``); skipped with
    a message when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print_fn("Figures skipped: matplotlib is not installed (pip install tflite_transfer[report]).")
        return {}
    from . import evaluation, visualization

    paths = visualization.save_evaluation_figures(output, history=history, report=evaluation.report(model, val_ds),
                                                  prefix=f"{name}_", fine_tune_history=fine_tune_history)
    print_fn(f"Figures ({', '.join(paths)}) written to {os.path.join(output, name + '_*.png')}")
    return paths


def _seeded(cls, *args, seed=None):
    """cls(*args, seed=seed), or cls(*args) if the layer takes no seed (Keras' layers all do)."""
    try:
        return cls(*args, seed=seed)
    except TypeError:
        return cls(*args)
