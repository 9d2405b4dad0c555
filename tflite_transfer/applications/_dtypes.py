"""MobileNetV2's ``dtype`` argument: Keras' dtype-policy names -> the engine's precision,
with the CPU checks each precision needs (bfloat16 instructions, VNNI)."""
import numpy as np

from .. import _native

#: ``dtype`` values (Keras' dtype-policy names, plus "int8") -> the engine's precision.
#: "float32": float32 everywhere. "mixed_bfloat16": convolutions compute in bfloat16 with
#: float32 accumulation (weights and activations stored as bfloat16, outputs returned as
#: float32); needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX). "int8": the
#: file's own quantization on oneDNN int8 primitives (features only: include_top=False;
#: uint8 images are dequantized with the file's own input quantization). "int8_tflite":
#: the same with TFLite's integer arithmetic after oneDNN's int32 accumulation
#: (fixed-point requantization, TFLite's integer ADD and MEAN): every int8 tensor, the
#: pooled features included (rounded to int8 as TFLite does), equal to LiteRT's reference
#: kernels', slower than "int8". Both int8 dtypes need a CPU with VNNI instructions
#: (AVX512_VNNI, AVX_VNNI or AMX; ``tflite_transfer._core.has_vnni()``): without them
#: oneDNN's int8 convolutions are not exact, and ValueError is raised instead.
DTYPES = {None: "float32", "float32": "float32", "mixed_bfloat16": "bfloat16", "int8": "int8",
          "int8_tflite": "int8_tflite"}
_INT8 = ("int8", "int8_tflite")


def _engine_precision(dtype):
    """Validates `dtype` (see DTYPES); returns (policy name, engine precision)."""
    name = getattr(dtype, "name", dtype)  # a keras.DTypePolicy and a np.dtype have .name
    if (isinstance(dtype, type) and issubclass(dtype, np.generic)) or isinstance(dtype, np.dtype):
        # NumPy's float32, as the type or as a dtype, is the float32 policy (Keras takes
        # both). "int8" names the file's quantization, not a NumPy type: np.int8 and
        # np.dtype("int8") are refused alike (the latter's name would otherwise match)
        if np.dtype(dtype) != np.float32:
            raise ValueError("`dtype` must be None, 'float32', 'mixed_bfloat16', 'int8' or 'int8_tflite' "
                             "(NumPy types: float32 only; the int8 policies are named by string). "
                             f"Received: dtype={dtype!r}")
        name = "float32"
    if not isinstance(name, (str, type(None))) or name not in DTYPES:
        raise ValueError("`dtype` must be None, 'float32', 'mixed_bfloat16', 'int8' or 'int8_tflite'. "
                         f"Received: dtype={dtype!r}")
    precision = DTYPES[name]
    if precision == "bfloat16" and not _native._core.has_bf16():
        raise ValueError("dtype='mixed_bfloat16' needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX); "
                         f"oneDNN reports this CPU's instruction set as {_native._core.cpu_isa()!r}. "
                         "Use dtype='float32'.")
    if precision in _INT8 and not _native._core.has_vnni():
        # oneDNN without VNNI multiplies int8 in 16 bits (saturating; an int8 source gets its
        # weights halved): results that are not the file's int8 arithmetic, so no silent run.
        raise ValueError(f"dtype={name!r} needs a CPU with VNNI instructions (AVX512_VNNI, AVX_VNNI or AMX); "
                         f"oneDNN reports this CPU's instruction set as {_native._core.cpu_isa()!r}, whose int8 "
                         "convolutions multiply in 16 bits (saturating, and halving the weights of an int8 "
                         "source). Use dtype='float32'.")
    return (name or "float32"), precision
