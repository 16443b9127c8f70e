"""Quantizing GGUF models with llama.cpp's quantizer (llama-quantize's job, from Python)."""

from __future__ import annotations

import os
from pathlib import Path

from allama import _native
from allama.errors import QuantizationError

# llama_ftype values (llama.h) by the names llama-quantize takes.
FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37,
    "MXFP4_MOE": 38,
}
FTYPE_NAMES: dict[int, str] = {value: name for name, value in FTYPES.items()}


def ftype_name(ftype: int) -> str:
    """The llama-quantize name of a llama_ftype value ('Q4_K_M'), or 'ftype N' for others."""
    return FTYPE_NAMES.get(ftype & ~1024, f"ftype {ftype}") + (" (guessed)" if ftype & 1024 else "")


def parse_ftype(ftype: str | int) -> int:
    """A llama_ftype value from a name ('Q4_K_M', 'q8_0') or a value; ValueError otherwise."""
    if isinstance(ftype, bool) or not isinstance(ftype, (str, int)):
        raise TypeError(f"ftype must be a name such as 'Q4_K_M' or a llama_ftype value, not {type(ftype).__name__}")
    if isinstance(ftype, int):
        if ftype not in FTYPE_NAMES:
            raise ValueError(f"unknown llama_ftype value {ftype}")
        return ftype
    value = FTYPES.get(ftype.strip().upper())
    if value is None:
        raise ValueError(f"unknown quantization type {ftype!r}; one of: {', '.join(FTYPES)}")
    return value


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], ftype: str | int = "Q4_K_M", *,
             nthread: int = 0, allow_requantize: bool = False, quantize_output_tensor: bool = True,
             pure: bool = False, keep_split: bool = False) -> Path:
    """Writes `src` quantized to `ftype` ('Q4_K_M', 'Q8_0', 'F16', ...) as `dst` and returns dst.

    Blocking (seconds to minutes for real models): from async code, run it in a worker thread.
    Rows whose width a type cannot hold get llama.cpp's fallback type, as with llama-quantize.
    Raises FileNotFoundError for a missing src, ModelLoadError for a file that is not GGUF,
    ValueError for an unknown type, PermissionError for an unwritable destination and
    QuantizationError when llama.cpp refuses (e.g. requantizing without allow_requantize).
    """
    value = parse_ftype(ftype)
    src_path, dst_path = Path(os.fspath(src)), Path(os.fspath(dst))
    if src_path.resolve() == dst_path.resolve():
        raise ValueError("dst must differ from src: the source is read while the output is written")
    directory = dst_path.parent if str(dst_path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(2, "the destination's directory does not exist", str(directory))
    if dst_path.is_dir():
        raise IsADirectoryError(21, "the destination is a directory", str(dst_path))
    if not os.access(directory, os.W_OK) or (dst_path.exists() and not os.access(dst_path, os.W_OK)):
        raise PermissionError(13, "the destination is not writable", str(dst_path))
    params = _native.QuantizeParams()
    params.ftype = value
    params.nthread = nthread
    params.allow_requantize = allow_requantize
    params.quantize_output_tensor = quantize_output_tensor
    params.pure = pure
    params.keep_split = keep_split
    status, reason = _native.quantize(str(src_path), str(dst_path), params)
    if status != 0:
        raise QuantizationError(f"could not quantize '{src_path}' to {FTYPE_NAMES[value]}: {reason}")
    return dst_path
