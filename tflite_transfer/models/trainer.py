"""The training loop of ``Sequential`` (Keras' ``trainers/trainer.py``): fit,
evaluate and predict, as the ``Trainer`` mixin that ``Sequential`` inherits.

Training (``fit``) splits the model in two:
  * the *head*: the trailing Dense / Dropout layers (it must end with a Dense),
    trained by the C trainer (``head.py``: oneDNN inner products, fused softmax
    or sigmoid cross-entropy, dropout, L2, optimizer updates in C);
  * the *prefix*: every layer before it (augmentation, the base, pooling). A
    MobileNetV2 base with trainable layers is fine-tuned through the C engine's
    backward pass (``finetune.py``); other layers with trainable weights before
    the head are not supported (NotImplementedError).

Two paths, reported in ``history.params["feature_cache"]`` and
``model.last_fit_path``:
  * "feature_cache": no random layer (``is_random``) in the prefix, so the
    prefix output never changes: it is computed once for the training and the
    validation data (float32 N x F, e.g. N x 1280 for MobileNetV2 + pooling)
    and the head trains on the cache for all epochs. When fine-tuning, what is
    cached is the frozen bottom's output at the cut, and every epoch runs the
    trainable top forward and backward.
  * "per_batch": augmentation is active, so each training batch goes through
    the prefix every epoch; a background thread loads and augments the next
    batch while the base runs on the current one. Validation features are still
    cached (no augmentation at inference).
A base followed by GlobalAveragePooling2D / GlobalMaxPooling2D is run as
``base.predict(x, pooling="avg"|"max")`` so the engine pools in C.

Progress output of fit (verbose 1: a bar per epoch, 2: a line per epoch) is the
``callbacks.ProgbarLogger`` callback, as in Keras.
"""
import math
import sys
import time

import numpy as np

from .. import callbacks as callbacks_module
from .. import metrics as metrics_module
from ..layers.core import Dense, Dropout, GlobalAveragePooling2D, GlobalMaxPooling2D
from .data_adapters import (_check_x, _class_weight_array, _is_dataset, _Labels, _prefetch, _split_arrays,
                            _is_distributed_features, _unwrap_features, iter_batches)
from .finetune import BaseTuner, build_cut_cache, find_tuned_base
from .head import _Head

History = callbacks_module.History


# Keras' per-sample weights are not implemented (the C loss takes them; the data paths do not
# carry them yet): a clear error instead of Python's "unexpected keyword argument".
_NO_SAMPLE_WEIGHT = ("`sample_weight` is not supported yet. Per-class weights: `class_weight={class index: "
                     "weight}`; per-sample weights: repeat or drop samples in x and y.")


class Trainer:
    """fit / evaluate / predict for ``Sequential`` (a mixin: uses its ``_layers``,
    ``optimizer``, ``loss``, ``metrics``, ``_rng``, ``_ensure_built`` and
    ``_check_input_shape``)."""

    # -- prefix / head split ----------------------------------------------------
    def _split(self):
        """Index where the head (trailing Dense/Dropout, ending in Dense) starts."""
        if not self._layers or not isinstance(self._layers[-1], Dense):
            raise ValueError("To train, the model must end with a Dense layer (the classifier head). "
                             f"Layers: {[type(l).__name__ for l in self._layers]}")
        s = len(self._layers)
        while s > 0 and isinstance(self._layers[s - 1], (Dense, Dropout)):
            s -= 1
        find_tuned_base(self._layers[:s])  # raises for what cannot be fine-tuned
        return s

    def _stages(self, prefix):
        """[(fn(x, training) -> x, is_random, has_weights)] for the prefix layers."""
        stages, i = [], 0
        while i < len(prefix):
            l = prefix[i]
            nxt = prefix[i + 1] if i + 1 < len(prefix) else None
            if (hasattr(l, "predict") and isinstance(nxt, (GlobalAveragePooling2D, GlobalMaxPooling2D))
                    and not nxt.keepdims and l.count_params() > 0):
                pooling = "max" if isinstance(nxt, GlobalMaxPooling2D) else "avg"
                stages.append((lambda x, tr, l=l, p=pooling: np.asarray(
                    l.predict(x, batch_size=max(len(x), 1), verbose=0, pooling=p), np.float32), False, True))
                i += 2
                continue
            stages.append((lambda x, tr, l=l: l(x, training=bool(tr and l.is_random)), bool(l.is_random),
                           l.count_params() > 0))
            i += 1
        return stages

    @staticmethod
    def _run(stages, x, training):
        for fn, _, _ in stages:
            x = fn(x, training)
        return x

    def _iter_batches(self, x, y, batch_size, shuffle, file_order=False):
        """(x_batch, y_batch) from arrays (a new permutation per call when shuffle) or a dataset
        (file_order=True: file_paths order without advancing its shuffle state)."""
        return iter_batches(x, y, batch_size, shuffle, self._rng, file_order=file_order)

    def _features(self, stages, x, y, batch_size, labels, what, verbose):
        """Prefix output (N, F) float32 and checked labels, computed once (inference mode)."""
        from tqdm.auto import tqdm

        feats, ys = [], []
        self._last_batch_len = 0
        total = len(x) if _is_dataset(x) else math.ceil(len(x) / batch_size)
        with tqdm(total=total, desc=f"features ({what})", unit="batch", disable=verbose != 1,
                  leave=False, file=sys.stdout) as bar:
            # Decode the next batch in the background while the base runs on this one.
            # A dataset is read in file_paths order without advancing its shuffle state, so predict /
            # evaluate outputs line up with ds.labels (beyond Keras, which follows the reshuffled order).
            for xb, yb in _prefetch(self._iter_batches(x, y, batch_size, shuffle=False, file_order=True),
                                    lambda item: item):
                f = self._run(stages, xb, False)
                self._last_batch_len = max(self._last_batch_len, len(f))
                feats.append(np.ascontiguousarray(f, np.float32).reshape(len(f), -1))
                if yb is not None and labels is not None:
                    ys.append(labels.check(yb, "y" if what == "train" else "validation labels"))
                bar.update(1)
        return np.concatenate(feats), (np.concatenate(ys) if ys else None)

    # -- fit -----------------------------------------------------------------------
    # -- fit -----------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, initial_epoch=0, validation_split_seed=0,
            sample_weight=None):
        """Trains the head (Keras' fit). Returns a History.

        Args:
          x: NumPy array (N, ...) (uint8 images or float features), an ImageDataset
            yielding (images, labels) batches (then `y` must be None), or the features
            ``distributed.predict`` computed on a cluster (its result, in memory or as .npy
            shards, or ``distributed.load_features(folder)``; `y` defaults to its labels).
          y: labels: int (N,) for sparse_categorical_crossentropy, float (N, C) for
            categorical_crossentropy, (N,) or (N, units) in [0, 1] for binary_crossentropy.
          batch_size (int >= 1), epochs (int >= 1), initial_epoch (int in [0, epochs)).
          verbose: "auto" (= 1), 0 (silent), 1 (progress bar per epoch), 2 (one line per epoch).
          callbacks: list of callbacks.Callback.
          validation_split (float in [0, 1)): arrays only. Unlike Keras (which takes the
            last fraction before shuffling, wrong on class-sorted arrays), the split is
            *stratified by class and shuffled* with `validation_split_seed` (default 0;
            plain shuffled when a class has fewer than 2 samples), taken once before training.
          validation_data: (x_val, y_val) arrays, an ImageDataset, or labelled distributed
            features (as `x`). Overrides validation_split.
          shuffle (bool): reshuffle the training samples each epoch (arrays / cached features;
            an ImageDataset shuffles itself).
          class_weight (dict | None): {class index: weight}; scales each sample's loss
            (missing classes weigh 1.0, as Keras).
          validation_split_seed (int): seed of the validation split (extension of Keras).
          sample_weight: not supported yet (per-class weights: `class_weight`).

        Raises:
          RuntimeError: compile() was not called.
          ValueError: invalid arguments or data (the message names the argument).
          NotImplementedError: `sample_weight` was given.
          NotImplementedError: a layer before the head other than a MobileNetV2 base has trainable
            weights.
        """
        if sample_weight is not None:
            raise NotImplementedError(_NO_SAMPLE_WEIGHT)
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("You must call `compile()` before `fit()`.")
        self._warn_if_trainable_state_changed()
        if x is None:
            raise ValueError("`x` is required.")
        batch_size = _check_int("batch_size", batch_size, 1)
        epochs = _check_int("epochs", epochs, 1)
        initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
        if initial_epoch >= epochs:
            raise ValueError(f"`initial_epoch` must be < `epochs`. Received: initial_epoch={initial_epoch}, "
                             f"epochs={epochs}")
        verbose = _check_verbose(verbose)
        validation_split = float(validation_split)
        if not (0.0 <= validation_split < 1.0):
            raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split}")

        x, y = _unwrap_features(x, y)
        if _is_distributed_features(validation_data):
            validation_data = _unwrap_features(validation_data, None, "validation_data")
        is_ds = _is_dataset(x)
        if is_ds:
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset (it yields the labels).")
            if validation_split:
                raise ValueError("`validation_split` is only supported for NumPy arrays; for a dataset use "
                                 "image_dataset_from_directory(validation_split=..., subset='both').")
        else:
            x = _check_x(x, "x")
            if y is None:
                raise ValueError("`y` is required when `x` is an array.")
        self._ensure_built(x)
        s = self._split()
        prefix, head_layers = self._layers[:s], self._layers[s:]
        head = _Head(head_layers, self.loss)
        n_out = head_layers[-1].units
        labels = _Labels(self.loss, n_out)
        cw = _class_weight_array(class_weight, n_out if self.loss.kind != "binary" else 2)

        if not is_ds:
            y = labels.check(y, "y", n=len(x))
            if validation_split and validation_data is None:
                strat = labels.classes(y)
                x, y, xv, yv = _split_arrays(x, y, validation_split, validation_split_seed, strat)
                validation_data = (xv, yv)
        val = None
        if validation_data is not None:
            if _is_dataset(validation_data):
                val = (validation_data, None)
            elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                xv = _check_x(validation_data[0], "validation_data[0]")
                self._check_input_shape(xv, "validation_data[0]")
                yv = labels.check(validation_data[1], "validation_data[1]", n=len(xv))
                val = (xv, yv)
            else:
                raise ValueError("`validation_data` must be a tuple (x_val, y_val) or an ImageDataset. "
                                 f"Received: {type(validation_data).__name__}")

        stages = self._stages(prefix)
        tune = find_tuned_base(prefix)
        tuner = cut = None
        if tune is not None:
            tuner = BaseTuner.for_base(tune[1])
            pre_tune = self._stages(prefix[:tune[0]])
            cached = not any(r for _, r, _ in pre_tune)
        else:
            cached = not any(r for _, r, _ in stages)
        self.last_fit_path = "feature_cache" if cached else "per_batch"
        timings = {"features": 0.0, "train": 0.0, "validation": 0.0}
        if verbose and tuner is not None:
            print(f"fit: fine-tuning {tuner.base.name!r} from layer {tuner.first_layer!r} (operator "
                  f"{tuner.train_from}, {tuner.op_name}); the layers below it run forward only. " +
                  ("No random layer is active: the frozen bottom runs once and its output at the cut is cached; "
                   "every epoch trains the top on the cache (path: feature_cache)." if cached else
                   "Random layers (augmentation) are active: every batch runs them, the frozen bottom and the "
                   "trainable top (path: per_batch)."))
        elif verbose:
            if cached:
                print(f"fit: every layer before the head is frozen and none is random: computing the "
                      f"{'base ' if prefix else ''}features once and training the head on the cache "
                      f"(path: feature_cache).")
            else:
                print("fit: random layers (augmentation) are active before the head: running them and the frozen "
                      "base on every batch, loading the next batch in the background (path: per_batch).")

        t0 = time.perf_counter()
        if cached and tuner is not None:
            cut, ytr, n_train, largest = build_cut_cache(self, tuner, pre_tune, x, None if is_ds else y, batch_size,
                                                         labels, verbose)
            if is_ds:
                batch_size = int(getattr(x, "batch_size", None) or largest)
            steps = math.ceil(n_train / batch_size)
            if verbose:
                print(f"fit: cut cached: {cut.nbytes / 2 ** 20:.0f} MiB in {cut.where} "
                      f"(RAM budget TFLITE_TRANSFER_CACHE_MB={cache_mb()}).")
        elif cached:
            feats, ytr = self._features(stages, x, None if is_ds else y, batch_size, labels, "train", verbose)
            n_train = len(feats)
            if is_ds:  # keep the dataset's own batching, as Keras does
                batch_size = int(getattr(x, "batch_size", None) or self._last_batch_len)
            steps = math.ceil(n_train / batch_size)
        else:
            n_train = x.num_images if is_ds and hasattr(x, "num_images") else (None if is_ds else len(x))
            steps = len(x) if is_ds else math.ceil(len(x) / batch_size)
        val_feats = val_y = None
        if val is not None and tuner is None:  # fine-tuning: recomputed after every epoch
            val_feats, val_y = self._features(stages, val[0], val[1], batch_size, labels, "validation", verbose)
        timings["features"] = time.perf_counter() - t0

        history = History()
        # History last, as in Keras, so it records what other callbacks add to the logs. The progress
        # bar first, so an epoch's line is printed before what other callbacks print at its end.
        user_cbs = list(callbacks or [])
        progbar = [] if any(isinstance(c, callbacks_module.ProgbarLogger) for c in user_cbs) else \
            [callbacks_module.ProgbarLogger()]
        cbs = callbacks_module.CallbackList(progbar + user_cbs + [history], self, {})
        # "metrics": the keys every epoch's logs will hold (Keras' params["metrics"]), so callbacks
        # can reject a monitor that will never appear in on_train_begin, not after the first epoch.
        log_keys = ["loss"] + [m.name for m in self.metrics]
        if val is not None:  # (fine-tuning computes the validation features after each epoch)
            log_keys += ["val_" + k for k in log_keys]
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "feature_cache": cached,
                  "fit_path": self.last_fit_path, "samples": n_train, "timings": timings, "metrics": log_keys}
        if tuner is not None:
            params["fine_tune"] = {"first_layer": tuner.first_layer, "first_op": tuner.train_from,
                                   "cut_bytes": cut.nbytes if cut is not None else None,
                                   "cut_memory_mapped": bool(cut is not None and cut.mapped)}
        for c in cbs.callbacks:
            c.set_params(params)
        self.stop_training = False
        self.history = history
        cbs.on_train_begin({})

        # Prefix stages that run in the loader thread: everything before the first weighted stage.
        n_pre = next((i for i, st in enumerate(stages) if st[2]), len(stages))
        pre, post = stages[:n_pre], stages[n_pre:]

        backward = None
        if tuner is not None:  # weightless layers in the loader thread, the base's top forward + backward here
            pre = pre_tune
            post = [(lambda xb, tr: tuner.forward(tuner.base._prepare(xb)), False, True)]
            backward = tuner.backward
        try:
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch, {})
                te = time.perf_counter()
                loss_m = metrics_module.Mean("loss")
                for m in self.metrics:
                    m.reset_state()
                if cached and tuner is not None:
                    order = self._rng.permutation(n_train) if shuffle else np.arange(n_train)

                    def top_batches(order=order):
                        for i in range(0, n_train, batch_size):
                            parts, idx = cut.take(order[i:i + batch_size])
                            yield tuner.forward_top(parts), ytr[idx]
                    batches = top_batches()
                elif cached:
                    order = self._rng.permutation(n_train) if shuffle else np.arange(n_train)
                    batches = ((feats[order[i:i + batch_size]], ytr[order[i:i + batch_size]])
                               for i in range(0, n_train, batch_size))
                else:
                    def load(item, pre=pre):
                        xb, yb = item
                        yb = labels.check(yb, "y")
                        return self._run(pre, xb, True), yb
                    batches = ((self._run(post, xb, True), yb) for xb, yb in
                               _prefetch(self._iter_batches(x, None if is_ds else y, batch_size, shuffle), load))
                for step, (fb, yb) in enumerate(batches):
                    cbs.on_train_batch_begin(step, {})
                    sw = None if cw is None else np.ascontiguousarray(cw[labels.classes(yb)])
                    loss, out = head.train_step(fb, labels.targets(yb), sw, self.optimizer, input_backward=backward)
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"The loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                                 f"lower the learning rate or check the inputs.")
                    loss_m.update_state(loss, len(fb))
                    for m in self.metrics:
                        m.update_state(yb, out)  # probabilities, also with from_logits
                    logs = {"loss": loss_m.result(), **{m.name: m.result() for m in self.metrics}}
                    cbs.on_train_batch_end(step, logs)
                timings["train"] += time.perf_counter() - te
                logs = {"loss": float(loss_m.result()), **{m.name: float(m.result()) for m in self.metrics}}
                if tuner is not None:
                    tuner.sync()  # validation, evaluate and predict see the trained weights
                    if val is not None:
                        tv = time.perf_counter()
                        val_feats, val_y = self._features(stages, val[0], val[1], batch_size, labels, "validation",
                                                          verbose)
                        timings["features"] += time.perf_counter() - tv
                if val_feats is not None:
                    tv = time.perf_counter()
                    vlogs = self._evaluate_features(head, val_feats, val_y, labels, batch_size)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                    timings["validation"] += time.perf_counter() - tv
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            if cut is not None:
                cut.close()
        cbs.on_train_end({})
        return history

    def _evaluate_features(self, head, feats, y, labels, batch_size):
        loss_m = metrics_module.Mean("loss")
        ms = [metrics_module.get(i, self.loss) for i in self._metric_ids] if self._metric_ids else []
        for i in range(0, len(feats), batch_size):
            fb, yb = feats[i:i + batch_size], y[i:i + batch_size]
            logits, _ = head.forward(fb, training=False)
            loss, probs = head.loss_value(logits, labels.targets(yb), None)
            loss_m.update_state(loss, len(fb))
            for m in ms:
                m.update_state(yb, probs)
        return {"loss": float(loss_m.result()), **{m.name: float(m.result()) for m in ms}}

    # -- evaluate / predict ----------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", return_dict=False, sample_weight=None):
        """Loss and metrics on data (Keras' evaluate), inference mode, no class weights.

        Returns the loss (float) when no metrics were compiled, else [loss, *metrics]
        (or a dict with return_dict=True). Raises RuntimeError before compile,
        ValueError for bad data, NotImplementedError for `sample_weight` (not supported yet).
        """
        if sample_weight is not None:
            raise NotImplementedError(_NO_SAMPLE_WEIGHT)
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("You must call `compile()` before `evaluate()`.")
        self._warn_if_trainable_state_changed()
        verbose = _check_verbose(verbose)
        batch_size = _check_int("batch_size", batch_size, 1)
        x, y = _unwrap_features(x, y)
        if _is_dataset(x):
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset.")
        else:
            x = _check_x(x, "x")
            if y is None:
                raise ValueError("`y` is required when `x` is an array.")
        self._ensure_built(x)
        s = self._split_for_inference()
        head = _Head(self._layers[s:], self.loss)
        labels = _Labels(self.loss, self._layers[-1].units)
        if not _is_dataset(x):
            y = labels.check(y, "y", n=len(x))
        feats, yy = self._features(self._stages(self._layers[:s]), x, y, batch_size, labels, "evaluate", verbose)
        logs = self._evaluate_features(head, feats, yy, labels, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def _split_for_inference(self):
        s = len(self._layers)
        while s > 0 and isinstance(self._layers[s - 1], (Dense, Dropout)):
            s -= 1
        if s == len(self._layers):
            raise ValueError("The model must end with a Dense layer.")
        return s

    def predict(self, x, batch_size=32, verbose="auto"):
        """Model outputs (N, units) float32 in inference mode (Keras' predict).

        x: NumPy array (N, ...) or an ImageDataset (its labels are ignored). A dataset is
          read in its `file_paths` order and its shuffle state is not advanced (also by
          `evaluate`), so ``predict(ds).argmax(1)`` lines up with ``ds.labels`` even when the
          dataset shuffles; Keras follows the reshuffled order there, a common silent error in
          confusion matrices. Raises ValueError for bad input.
        """
        verbose = _check_verbose(verbose)
        batch_size = _check_int("batch_size", batch_size, 1)
        if not _is_dataset(x):
            x = _check_x(x, "x")
        self._ensure_built(x)
        if not isinstance(self._layers[-1], Dense):
            return self._run(self._stages(self._layers), x, False)
        s = self._split_for_inference()
        feats, _ = self._features(self._stages(self._layers[:s]), x, None, batch_size, None, "predict", verbose)
        out = []
        for i in range(0, len(feats), batch_size):
            z = feats[i:i + batch_size]
            for l in self._layers[s:]:
                z = l(z, training=False)
            out.append(np.asarray(z, np.float32))
        return np.concatenate(out)


def cache_mb():
    import os
    return os.environ.get("TFLITE_TRANSFER_CACHE_MB", "1024")


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"`{name}` must be an integer >= {lo}. Received: {name}={v!r}")
    return int(v)


def _check_verbose(v):
    if v == "auto":
        return 1
    if v not in (0, 1, 2) or isinstance(v, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={v!r}")
    return int(v)
