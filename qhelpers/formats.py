"""Number formats: what FP32, FP16, BF16, INT8 and INT4 can represent, and what a value costs in each.

:data:`FORMATS` names each format by the torch dtype it is measured with
(INT4 as ``torch.quint4x2``, two values per byte); :func:`bytes_per_value`
measures it with ``element_size()``, :func:`format_table` reads ranges and
resolutions from ``torch.finfo``/``torch.iinfo``, :func:`model_size_table`
multiplies parameter counts out, and :func:`relative_cast_error` shows what
casting a value to FP16 or BF16 loses.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .checks import check_float_model

__all__ = ["FORMATS", "bytes_per_value", "format_table", "model_size_table", "relative_cast_error"]

# name -> dtype used to measure it; int4 is measured as torch.quint4x2 (two values per byte).
FORMATS: dict[str, torch.dtype] = {
    "FP32": torch.float32,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "INT4": torch.quint4x2,
}
# Packed sub-byte dtypes hold several values per element.
VALUES_PER_ELEMENT: dict[torch.dtype, int] = {torch.quint4x2: 2, torch.quint2x4: 4}


def check_float_dtype(dtype: object, what: str = "dtype") -> torch.dtype:
    """``dtype`` if it is a floating-point ``torch.dtype`` (e.g. ``torch.float16``)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{what} must be a torch.dtype such as torch.float16, not {type(dtype).__name__} {dtype!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"{what}={dtype} is not a floating-point format: pass e.g. torch.float16 or torch.bfloat16")
    return dtype


def bytes_per_value(fmt: str) -> float:
    """Bytes one value takes in format ``fmt`` (one of :data:`FORMATS`), measured with ``element_size()``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    dtype = FORMATS[fmt]
    return torch.empty(0, dtype=dtype).element_size() / VALUES_PER_ELEMENT.get(dtype, 1)


def format_table():
    """Range and resolution of the formats, from ``torch.finfo`` / ``torch.iinfo`` (a DataFrame).

    ``eps`` is the gap between 1.0 and the next value (relative resolution);
    integers have a resolution of exactly 1 over their whole range.
    """
    import pandas as pd

    rows = {}
    for name, dtype in [("FP32", torch.float32), ("FP16", torch.float16), ("BF16", torch.bfloat16)]:
        fi = torch.finfo(dtype)
        rows[name] = {
            "bits": fi.bits,
            "bytes/value": bytes_per_value(name),
            "min": float(fi.min),
            "max": float(fi.max),
            "smallest normal": float(fi.smallest_normal),
            "eps": float(fi.eps),
        }
    for name, dtype in [("INT8", torch.int8), ("UINT8", torch.uint8)]:
        ii = torch.iinfo(dtype)
        rows[name] = {"bits": ii.bits, "bytes/value": 1.0, "min": float(ii.min), "max": float(ii.max),
                      "smallest normal": 1.0, "eps": 1.0}
    rows["INT4"] = {"bits": 4, "bytes/value": bytes_per_value("INT4"), "min": -8.0, "max": 7.0,
                    "smallest normal": 1.0, "eps": 1.0}
    return pd.DataFrame.from_dict(rows, orient="index")


def model_size_table(models: Mapping[str, nn.Module]):
    """Parameter count of each model and its weight size in MB (10^6 bytes) in each format (a DataFrame)."""
    import pandas as pd

    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict of models by name, e.g. {{'MLP': mlp}}, not {type(models).__name__}")
    for name, model in models.items():
        check_float_model(model, f"models[{name!r}]")
    if not models:
        raise ValueError("model_size_table() needs at least one model")
    rows = {}
    for name, model in models.items():
        n = sum(p.numel() for p in model.parameters())
        row: dict[str, float] = {"parameters": n}
        for fmt in FORMATS:
            row[f"{fmt} (MB)"] = n * bytes_per_value(fmt) / 1e6
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["parameters"] = table["parameters"].astype(int)
    return table


def relative_cast_error(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``|x - float(dtype(x))| / |x|`` for each value: inf where ``x`` overflows, 1 where it flushes to zero."""
    if not isinstance(values, torch.Tensor) or values.is_complex() or values.is_quantized:
        raise TypeError(f"values must be a real torch.Tensor, e.g. torch.logspace(-8, 6, 500), not {type(values).__name__}")
    check_float_dtype(dtype)
    if values.numel() == 0:
        raise ValueError("values is empty: give the values to cast, e.g. torch.logspace(-8, 6, 500)")
    if not torch.isfinite(values).all():
        raise ValueError("values holds NaN/inf: the relative error is defined for finite values only")
    x = values.detach().double()
    if (x == 0).any():
        raise ValueError("relative error is undefined at 0: pass non-zero values (e.g. torch.logspace)")
    back = x.float().to(dtype).double()
    err = (x - back).abs() / x.abs()
    return torch.where(torch.isinf(back), torch.full_like(err, float("inf")), err)
