"""Callbacks, Keras names and behaviour: Callback, History, ProgbarLogger,
EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, CSVLogger, LambdaCallback, TensorBoard.

Hooks receive ``logs`` dicts of floats: "loss", metric names, and "val_"
variants at epoch end. Epochs are 0-based in hooks (Keras).
"""
import csv
import math
import os
import struct
import sys
import time

import numpy as np

from .utils import atomic_write


class Callback:
    """Base class; override any of the hooks. ``self.model`` is set by fit, ``self.params`` too."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass


class History(Callback):
    """Records per-epoch logs: ``history`` (dict name -> list of floats), ``epoch`` (list of ints),
    ``params`` (dict: epochs, steps, verbose, feature_cache, timings)."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class ProgbarLogger(Callback):
    """Prints fit's progress to stdout, Keras' ``ProgbarLogger``; fit adds one (first in
    the callback list) unless `callbacks` holds one.

    Reads ``params["verbose"]`` (0: silent, 1: a tqdm bar per epoch with the running
    logs, 2: one line per epoch "Epoch e/E - 1.2s - loss: ... - val_loss: ..."),
    ``params["epochs"]`` and ``params["steps"]`` (batches per epoch).
    """

    def __init__(self):
        super().__init__()
        self._bar = None
        self._t0 = None

    def _open_bar(self):
        if self._bar is None and self.params.get("verbose") == 1:
            from tqdm.auto import tqdm

            desc = f"Epoch {self._epoch + 1}/{self.params.get('epochs')}"
            self._bar = tqdm(total=self.params.get("steps"), desc=desc, unit="step", file=sys.stdout, leave=True,
                             dynamic_ncols=True)
        return self._bar

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._bar = None
        self._t0 = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._open_bar()  # after every callback's on_epoch_begin, before the first batch

    def on_train_batch_end(self, batch, logs=None):
        bar = self._open_bar()
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in (logs or {}).items()}, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        verbose = self.params.get("verbose")
        bar = self._open_bar()
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in (logs or {}).items()}, refresh=True)
            bar.close()
            self._bar = None
        elif verbose == 2:
            dt = time.perf_counter() - self._t0
            print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {dt:.1f}s - " +
                  " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items()), flush=True)


def _mode_op(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _check_log_key(cb, key, what):
    keys = (cb.params or {}).get("metrics")
    if keys is None or key in keys:
        return
    hint = " (val_ keys need validation_data or validation_split)" if key.startswith("val_") else ""
    raise ValueError(f"{type(cb).__name__}: `{what}`={key!r} will not be in the logs of this fit, which are "
                     f"{keys}{hint}.")


class _Monitor(Callback):
    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        self.monitor = monitor
        self.mode = _mode_op(mode, monitor)
        self.min_delta = abs(float(min_delta))

    def _improved(self, current, best):
        if best is None:
            return True
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta

    def _check_monitor(self):
        """In on_train_begin: ValueError when fit's logs (params["metrics"]) will never hold
        `monitor`, instead of failing at the end of the first epoch (Keras warns there)."""
        _check_log_key(self, self.monitor, "monitor")

    def _get(self, logs):
        v = (logs or {}).get(self.monitor)
        if v is None:
            raise ValueError(f"{type(self).__name__}: `monitor`={self.monitor!r} is not in the logs. "
                             f"Available: {sorted(logs or {})}")
        return float(v)


class EarlyStopping(_Monitor):
    """Stops training when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    Args: monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto" (max for *acc*),
    baseline=None, restore_best_weights=False (restores the best epoch's weights at the end, also
    when training runs to the last epoch, as Keras 3), start_from_epoch=0 (epochs ignored first).
    Attribute ``stopped_epoch`` (0 if not stopped), ``best_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self._check_monitor()
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self.baseline
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._get(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or weights) after each epoch, atomically (temp file + rename).

    Args: filepath (str, may contain ``{epoch:02d}`` (1-based) and log keys like ``{val_loss:.2f}``),
    monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False (then
    ``model.save_weights(path)``: .h5 names as HDF5, others .npz, read back by ``load_weights``), mode="auto".
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch"):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"Only save_freq='epoch' is supported. Received: save_freq={save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _mode_op(mode, monitor)
        self.best = None

    def on_train_begin(self, logs=None):
        """Checks, before the first epoch, that `monitor` (save_best_only) and every ``{key}`` of
        `filepath` will be in the logs (Keras fails at the end of the first epoch)."""
        import string

        if self.save_best_only:
            _check_log_key(self, self.monitor, "monitor")
        for _, field, _, _ in string.Formatter().parse(self.filepath):
            if field is not None and field not in ("epoch", "learning_rate"):
                _check_log_key(self, field.split(".")[0].split("[")[0], "filepath")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            cur = logs.get(self.monitor)
            if cur is None:
                raise ValueError(f"ModelCheckpoint: `monitor`={self.monitor!r} is not in the logs. "
                                 f"Available: {sorted(logs)}")
            better = self.best is None or (cur < self.best if self.mode == "min" else cur > self.best)
            if not better:
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {cur}, saving to {path}")
            self.best = cur
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


def save_weights_npz(model, path):
    """Writes model.get_weights() to `path` (.npz, arrays w0, w1, ...) atomically (the format
    ModelCheckpoint wrote before it used ``model.save_weights``; ``load_weights`` reads both)."""
    with atomic_write(path, suffix=".npz") as f:
        np.savez(f, **{f"w{i}": w for i, w in enumerate(model.get_weights())})


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by `factor` when `monitor` stalls for `patience` epochs.

    Args: monitor="val_loss", factor=0.1 (< 1), patience=10, verbose=0, mode="auto",
    min_delta=1e-4, cooldown=0, min_lr=0.0. Needs a float learning rate (not a schedule).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not (0 <= factor < 1):
            raise ValueError(f"`factor` must be in [0, 1). Received: factor={factor}")
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)

    def on_train_begin(self, logs=None):
        """Fails before training when the optimizer's learning rate is a schedule (it cannot be
        reduced) or `monitor` will not be in the logs: not at the first plateau, hours later."""
        opt = getattr(self.model, "optimizer", None)
        if opt is not None and not isinstance(getattr(opt, "_lr", 0.0), float):
            raise ValueError(f"ReduceLROnPlateau needs an optimizer with a float learning rate; "
                             f"{type(opt).__name__} is driven by the schedule "
                             f"{type(opt._lr).__name__}. Remove the callback or pass a float learning_rate.")
        self._check_monitor()
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._get(logs)
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            opt = self.model.optimizer
            if not isinstance(opt._lr, float):
                raise ValueError("ReduceLROnPlateau needs a float learning rate, not a LearningRateSchedule.")
            old = opt.learning_rate
            new = max(old * self.factor, self.min_lr)
            if old - new > 1e-12:
                opt.learning_rate = new
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class CSVLogger(Callback):
    """Writes one CSV row per epoch: ``epoch`` (0-based, Keras) then the log keys sorted.

    Args: filename (str), separator=",", append=False.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._has_header = exists
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys, delimiter=self.sep)
            if not self._has_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update({k: logs.get(k, math.nan) for k in self._keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class LambdaCallback(Callback):
    """Callback from functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_batch_begin/end(batch, logs), on_train_begin(logs), on_train_end(logs)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None):
        super().__init__()
        for name, fn in dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                             on_train_begin=on_train_begin, on_train_end=on_train_end,
                             on_train_batch_begin=on_train_batch_begin,
                             on_train_batch_end=on_train_batch_end).items():
            if fn is not None:
                setattr(self, name, fn)


class CallbackList:
    """Dispatches hooks to a list of callbacks (internal to fit)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise ValueError(f"`callbacks` entries must be Callback instances. Received: {c!r}")
            c.set_model(model)
            c.set_params(params)

    def __getattr__(self, hook):
        def run(*args):
            for c in self.callbacks:
                getattr(c, hook)(*args)
        return run


class TensorBoard(Callback):
    """Writes per-epoch scalars for TensorBoard, Keras' ``TensorBoard`` callback without TensorFlow.

    Files (as Keras 3): ``<log_dir>/train/events.out.tfevents.*`` with ``epoch_loss``,
    ``epoch_<metric>`` and ``epoch_learning_rate``; ``<log_dir>/validation/...`` with ``epoch_loss``
    and ``epoch_<metric>`` from the ``val_`` logs. Step = the 0-based epoch (so a fine-tuning fit
    with ``initial_epoch`` continues the curves). Scalars are float32 tensor summaries with the
    scalars plugin's metadata (what ``tf.summary.scalar`` writes); view with
    ``tensorboard --logdir <log_dir>``.

    Args:
      log_dir (str | PathLike): the folder (created).
      update_freq: "epoch" only (per-batch logging is not implemented; other values raise ValueError).
      confusion_matrix_data: optional labelled ``ImageDataset`` or ``(x, y)`` arrays; at the end of
        training the model's confusion matrix on it (``evaluation.report`` +
        ``visualization.plot_confusion_matrix``) is written as a PNG image summary
        ``confusion_matrix`` to the validation run, at the last epoch's step.
      class_names (list[str] | None): names for that image (default: the dataset's).

    Writing uses the ``tensorboard`` package (``pip install tflite_transfer[report]``): its protobufs
    and ``RecordWriter`` (the TFRecord framing with masked CRC32C), one file per run, flushed after
    every epoch. It never imports TensorFlow (tensorboard's own ``EventFileWriter`` does, through
    ``tf.io.gfile``, when TensorFlow is installed). Raises ImportError naming the package when it is
    missing.
    """

    def __init__(self, log_dir="logs", update_freq="epoch", confusion_matrix_data=None, class_names=None):
        super().__init__()
        if update_freq != "epoch":
            raise ValueError(f"Only update_freq='epoch' is supported. Received: update_freq={update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.confusion_matrix_data = confusion_matrix_data
        self.class_names = class_names
        self._writers = {}
        self._last_epoch = 0

    def _writer(self, run):
        w = self._writers.get(run)
        if w is None:
            w = self._writers[run] = _EventFile(os.path.join(self.log_dir, run))
        return w

    @staticmethod
    def _event(step, values):
        """An Event proto with Summary.Values; values: list of (tag, float) or (tag, Summary.Image)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
        from tensorboard.plugins.scalar import metadata as scalar_metadata

        summary = summary_pb2.Summary()
        for tag, v in values:
            if isinstance(v, summary_pb2.Summary.Image):
                summary.value.add(tag=tag, image=v)
            else:
                summary.value.add(tag=tag, metadata=scalar_metadata.create_summary_metadata(display_name=tag,
                                                                                               description=""),
                                  tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[float(v)]))
        return event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)

    def on_train_begin(self, logs=None):
        self._writer("train")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self._last_epoch = epoch
        train = [(f"epoch_{k}", v) for k, v in logs.items() if not k.startswith("val_") and k != "learning_rate"]
        opt = getattr(self.model, "optimizer", None)
        lr = logs.get("learning_rate", getattr(opt, "learning_rate", None) if opt is not None else None)
        if lr is not None:
            train.append(("epoch_learning_rate", float(lr)))
        self._writer("train").add_event(self._event(epoch, train))
        val = [(f"epoch_{k[4:]}", v) for k, v in logs.items() if k.startswith("val_")]
        if val:
            self._writer("validation").add_event(self._event(epoch, val))

    def on_train_end(self, logs=None):
        try:
            if self.confusion_matrix_data is not None:
                self._write_confusion_matrix()
        finally:
            for w in self._writers.values():
                w.close()
            self._writers = {}

    def _write_confusion_matrix(self):
        import io

        import matplotlib.pyplot as plt
        from tensorboard.compat.proto import summary_pb2

        from . import evaluation, visualization

        data = self.confusion_matrix_data
        if isinstance(data, (tuple, list)):
            rep = evaluation.report(self.model, data[0], data[1], class_names=self.class_names)
        else:
            rep = evaluation.report(self.model, data, class_names=self.class_names)
        fig = visualization.plot_confusion_matrix(rep)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        png = buf.getvalue()
        w, h = struct.unpack(">II", png[16:24])  # the PNG's IHDR: width, height
        image = summary_pb2.Summary.Image(height=int(h), width=int(w), colorspace=4,
                                          encoded_image_string=png)
        self._writer("validation").add_event(self._event(self._last_epoch, [("confusion_matrix", image)]))


class _EventFile:
    """One TensorBoard event file, ``<folder>/events.out.tfevents.<time>.<host>.<pid>.<n>.v2``: the
    version event ("brain.Event:2") then one record per ``add_event``, flushed each time."""

    _count = 0

    def __init__(self, folder):
        import socket

        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError as e:  # pragma: no cover - the extra is installed in CI
            raise ImportError("callbacks.TensorBoard needs the `tensorboard` package: "
                              "pip install tensorboard (or tflite_transfer[report]).") from e
        os.makedirs(folder, exist_ok=True)
        _EventFile._count += 1
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{_EventFile._count}.v2"
        self.path = os.path.join(folder, name)
        self._records = RecordWriter(open(self.path, "wb"))
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event):
        self._records.write(event.SerializeToString())
        self._records.flush()

    def close(self):
        if not self._records.closed:
            self._records.close()
