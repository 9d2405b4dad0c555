"""Export of trained models for deployment: LiteRT (.tflite, float or int8) and ONNX.

``export_model(model, filepath, format="litert")`` is what ``Sequential.export``
calls (Keras 3's ``model.export(filepath, format=...)``). The graph is built by
``graph.from_sequential`` (Keras' inference graph: random layers and Dropout
left out), then written by ``litert.write_tflite`` (flatbuffers + the TFLite
schema of the ``tflite`` package) or ``onnx_export.write_onnx`` (``onnx``
package); int8 by ``quantize.quantize_int8``. None of them needs TensorFlow.
"""
import os

from .graph import Graph, from_base, from_sequential  # noqa: F401
from .litert import read_labels, read_metadata, to_tflite_bytes, write_tflite  # noqa: F401

__all__ = ["export_model", "Graph", "from_sequential", "from_base", "write_tflite", "to_tflite_bytes",
           "read_labels", "read_metadata"]

_FORMATS = ("litert", "tflite", "onnx")


def export_model(model, filepath, format="litert", input_dtype="uint8", labels=None, quantize=None,
                 representative_dataset=None, verbose=True):
    """Writes the inference graph of a built ``Sequential`` to `filepath`.

    Args:
      model: a built ``Sequential`` (pretrained base, pooling, Dense head).
      filepath (str | PathLike): the file to write (.tflite / .onnx).
      format: "litert" or its alias "tflite" (a TFLite flatbuffer for LiteRT /
        TFLite interpreters), or "onnx" (opset 13).
      input_dtype: "uint8" (default): the file takes RGB pixels uint8
        (N, H, W, 3) in [0, 255] and does the preprocessing ``x / 127.5 - 1``
        itself, as a deployed image classifier does; "float32": it takes float32
        (N, H, W, 3) already scaled to [-1, 1]. The batch dimension is dynamic.
      labels: class names (list of str, one per output) stored in the file
        (LiteRT: metadata entry "labels"; ONNX: metadata_props "labels");
        default: ``model.class_names`` when set (``fit`` on a dataset sets it).
      quantize: None (float32 weights) or "int8" (LiteRT only): post-training
        full-integer quantization as TensorFlow's converter does it (per-channel
        int8 weights, int32 biases, int8 activations with ranges calibrated on
        `representative_dataset`; uint8 input, float32 output).
      representative_dataset: with quantize="int8": an iterable of uint8 image
        batches (N, H, W, 3) (or (images, labels) pairs, or an ImageDataset),
        e.g. 100-500 training images.
      verbose (bool): print the path and size written.

    Returns:
      int: the size of the written file in bytes.

    Raises:
      ValueError: unknown `format`, quantize="int8" without a
        representative_dataset or with ONNX, an unbuilt model, bad `labels`.
      NotImplementedError: a layer the exporter cannot write (named).
      ImportError: the writer's package (flatbuffers / tflite / onnx) is missing.
    """
    if format not in _FORMATS:
        raise ValueError(f"`format` must be one of {_FORMATS}. Received: format={format!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"`quantize` must be None or 'int8'. Received: quantize={quantize!r}")
    if quantize == "int8" and format == "onnx":
        raise ValueError("quantize='int8' is only supported with format='litert'.")
    if quantize == "int8" and representative_dataset is None:
        raise ValueError("quantize='int8' needs a `representative_dataset` (uint8 image batches) to calibrate "
                         "the activation ranges.")
    if labels is None:
        labels = getattr(model, "class_names", None)
    g = from_sequential(model, input_dtype=input_dtype, labels=labels)
    path = os.fspath(filepath)
    # As Sequential.save: a missing parent folder is created (not an OSError after the work).
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    if format == "onnx":
        from .onnx_export import write_onnx

        size = write_onnx(g, path)
    else:
        if quantize == "int8":
            from .quantize import quantize_int8

            g = quantize_int8(g, representative_dataset)
        size = write_tflite(g, path)
    if verbose:
        print(f"Saved {format}{' int8' if quantize else ''} model to {path} ({size / 1e6:.2f} MB)")
    return size
