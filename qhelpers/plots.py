"""The matplotlib figures the chapters share. Each returns its ``Figure`` for the notebook to show.

Each checks its data before drawing: tensors where tensors are expected,
series of matching lengths, names that exist, finite values where a scale
needs them. A mismatch raises a ValueError or TypeError naming it, instead of
an error from inside matplotlib or, worse, a plot of the wrong thing.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .quant import QParams, PerTensor, dequantize

# --- argument checks ------------------------------------------------------------------------------

def _check_tensor(name: str, value: object, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """A non-empty real tensor (with one of ``dims`` dimensions, if given)."""
    if not isinstance(value, torch.Tensor) or value.is_complex() or value.is_quantized:
        raise TypeError(f"{name} must be a real torch.Tensor, not {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}): there is nothing to draw")
    if dims is not None and value.dim() not in dims:
        raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {' or '.join(f'{d}-D' for d in dims)}")
    return value


def _check_mapping(name: str, value: object, example: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, e.g. {example}, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty: there is nothing to draw; give e.g. {example}")
    return value


def _check_series(name: str, values: object, n: int | None = None, what: str = "") -> int:
    """A sequence (list, tuple, tensor, pandas Series) of finite numbers, of length ``n`` if given; its length."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of numbers, not {type(values).__name__}")
    if n is not None and len(values) != n:
        raise ValueError(f"{name} has {len(values)} values but {what} has {n}: give one value per point")
    for v in values:
        v = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must hold numbers, but holds {type(v).__name__} {v!r}")
    return len(values)


__all__ = [
    "changed_predictions",
    "weight_histogram",
    "error_vs_bits",
    "sensitivity",
    "training_curves",
    "format_precision",
    "clipping_tradeoff",
    "per_channel_error",
    "ste",
]


def weight_histogram(values: torch.Tensor, qparams: QParams | None = None, *, bins: int = 120, title: str = "") -> Figure:
    """Histogram of a tensor's values with the quantization grid (and clipping range) drawn over it.

    With more than 64 grid levels only the clipping range is drawn, as the
    lines would merge. ``qparams`` must be per-tensor (one grid).
    """
    _check_tensor("values", values)
    if not torch.isfinite(values).all():
        raise ValueError("values holds NaN/inf: a histogram needs finite values")
    if qparams is not None and not isinstance(qparams, QParams):
        raise TypeError(f"qparams must be a QParams (from quant.choose_qparams) or None, not {type(qparams).__name__}")
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
        raise TypeError(f"bins={bins!r} must be an int (the number of histogram bars), not {type(bins).__name__}")
    if bins < 1:
        raise ValueError(f"bins={bins} must be at least 1")
    x = values.detach().float().flatten()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(x.numpy(), bins=bins, color="tab:blue", alpha=0.75)
    if qparams is not None:
        if not isinstance(qparams.granularity, PerTensor):
            raise ValueError("weight_histogram draws one grid: pass per-tensor qparams (e.g. of one channel)")
        levels = dequantize(torch.arange(qparams.quant_min, qparams.quant_max + 1), qparams)
        lo, hi = float(levels[0]), float(levels[-1])
        if len(levels) <= 64:
            for v in levels.tolist():
                ax.axvline(v, color="tab:orange", lw=0.6, alpha=0.7)
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.08, label=f"{qparams.bits}-bit range [{lo:.3g}, {hi:.3g}]")
        ax.legend(loc="upper right")
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.set_title(title or "value histogram")
    fig.tight_layout()
    return fig


def error_vs_bits(bits: Sequence[int], curves: Mapping[str, Sequence[float]], *, ylabel: str = "SQNR (dB)", title: str = "") -> Figure:
    """One line per method of an error metric (e.g. SQNR) against bit-width."""
    n = _check_series("bits", bits)
    _check_mapping("curves", curves, "{'per-tensor': [10.1, 22.3, 46.0]}")
    for label, ys in curves.items():
        _check_series(f"curves[{label!r}]", ys, n, "bits")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, ys in curves.items():
        ax.plot(list(bits), list(ys), marker="o", label=label)
    ax.set_xlabel("bits")
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(bits))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{ylabel} vs bit-width")
    fig.tight_layout()
    return fig


def sensitivity(scores: Mapping[str, float], *, xlabel: str = "accuracy drop (pp)", title: str = "") -> Figure:
    """Horizontal bars of a per-layer sensitivity score, most sensitive at the top."""
    _check_mapping("scores", scores, "{'conv1': 0.4, 'fc': 2.1}")
    _check_series("scores' values", list(scores.values()))
    if not all(math.isfinite(float(v)) for v in scores.values()):
        raise ValueError("scores holds NaN/inf: give each layer a finite score")
    items = sorted(scores.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:red")
    ax.set_xlabel(xlabel)
    ax.set_title(title or "per-layer sensitivity")
    fig.tight_layout()
    return fig


def training_curves(history, *, title: str = "") -> Figure:
    """Training/validation loss and validation accuracy per epoch, from a ``train.History``."""
    if not all(hasattr(history, k) for k in ("train_loss", "val_loss", "val_accuracy")):
        raise TypeError(f"history must be a train.History (train_loss, val_loss, val_accuracy), not {type(history).__name__}")
    n = _check_series("history.train_loss", history.train_loss)
    if n == 0:
        raise ValueError("history.train_loss is empty: train for at least one epoch first")
    for name in ("val_loss", "val_accuracy"):
        if len(getattr(history, name)):
            _check_series(f"history.{name}", getattr(history, name), n, "history.train_loss")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    epochs = range(1, len(history.train_loss) + 1)
    ax1.plot(epochs, history.train_loss, marker="o", label="train")
    if history.val_loss:
        ax1.plot(epochs, history.val_loss, marker="o", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    if history.val_accuracy:
        ax2.plot(epochs, [100 * a for a in history.val_accuracy], marker="o", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (%)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- chapters 01-03 -------------------------------------------------------------------------


def format_precision(values: torch.Tensor, errors: Mapping[str, torch.Tensor], *, limits: Mapping[str, float] | None = None,
                     title: str = "") -> Figure:
    """Relative rounding error of storing ``values`` in each format (log-log); overflow (inf) is drawn at the top.

    ``errors`` maps a format name to the relative error at each value (``inf``
    where the value overflowed, 1.0 where it flushed to zero); ``limits``
    marks e.g. the largest finite value of a format.
    """
    _check_tensor("values", values, (1,))
    _check_mapping("errors", errors, "{'FP16': dynamic.relative_cast_error(values, torch.float16)}")
    for label, err in errors.items():
        _check_tensor(f"errors[{label!r}]", err)
        if err.shape != values.shape:
            raise ValueError(f"errors[{label!r}] has shape {tuple(err.shape)} but values {tuple(values.shape)}: "
                             "give one error per value")
    if limits is not None:
        _check_mapping("limits", limits, "{'FP16 max': 65504.0}")
        _check_series("limits' values", list(limits.values()))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    v = values.double().numpy()
    top = 2.0
    for label, err in errors.items():
        e = err.double().clamp(min=1e-12)
        finite = torch.isfinite(e)
        ax.loglog(v[finite.numpy()], e[finite].numpy(), lw=0.8, label=label)
        if (~finite).any():
            ax.scatter(v[(~finite).numpy()], [top] * int((~finite).sum()), marker="x", s=12, label=f"{label}: overflow to inf")
    for label, x in (limits or {}).items():
        ax.axvline(x, color="gray", ls="--", lw=0.8)
        ax.text(x, 1e-9, f" {label}", rotation=90, va="bottom", fontsize=8, color="gray")
    ax.set_ylim(1e-10, top * 2)
    ax.set_xlabel("value")
    ax.set_ylabel("relative error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "where FP16 and BF16 lose precision or overflow")
    fig.tight_layout()
    return fig


def clipping_tradeoff(sweep: Mapping[str, Sequence[float]], *, marks: Mapping[str, float] | None = None, title: str = "") -> Figure:
    """Rounding, clipping and total MSE against the clipping range (from ``calibration.clip_sweep``).

    ``marks`` draws vertical lines, e.g. the ranges chosen by each calibration method.
    """
    _check_mapping("sweep", sweep, "calibration.clip_sweep(x, fractions)")
    missing = [k for k in ("clip", "rounding", "clipping", "total") if k not in sweep]
    if missing:
        raise ValueError(f"sweep lacks {missing}: pass what calibration.clip_sweep returns")
    n = _check_series("sweep['clip']", sweep["clip"])
    for key in ("rounding", "clipping", "total"):
        _check_series(f"sweep[{key!r}]", sweep[key], n, "sweep['clip']")
    if marks is not None:
        _check_mapping("marks", marks, "{'best': 1.7}")
        _check_series("marks' values", list(marks.values()))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, style in (("rounding", "-"), ("clipping", "-"), ("total", "k--")):
        ys = [y if y > 0 else float("nan") for y in sweep[key]]  # 0 (nothing clipped) has no place on a log axis
        ax.semilogy(sweep["clip"], ys, style, label=f"{key} error")
    for label, x in (marks or {}).items():
        ax.axvline(x, lw=0.8, color="gray", ls=":")
        ax.text(x, ax.get_ylim()[1], f" {label}", rotation=90, va="top", fontsize=8)
    ax.set_xlabel("clipping range (max |value| kept)")
    ax.set_ylabel("mean squared error")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "rounding error vs clipping error")
    fig.tight_layout()
    return fig


def per_channel_error(errors: Mapping[str, Sequence[float]], *, ylabel: str = "MSE", title: str = "") -> Figure:
    """Grouped bars: the error of each output channel under each scheme (per-tensor, per-channel, ...)."""
    _check_mapping("errors", errors, "{'per-tensor': [...], 'per-channel': [...]}")
    first = next(iter(errors))
    n = _check_series(f"errors[{first!r}]", errors[first])
    for label, ys in errors.items():
        _check_series(f"errors[{label!r}]", ys, n, f"errors[{first!r}]")
    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = 0.8 / len(errors)
    for i, (label, ys) in enumerate(errors.items()):
        ax.bar([c + i * width for c in range(n)], list(ys), width=width, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("output channel")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.set_title(title or "quantization error per output channel")
    fig.tight_layout()
    return fig


def ste(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, *, title: str = "") -> Figure:
    """Fake quantization's staircase (left) and the gradient autograd gives it (right)."""
    for name, t in (("x", x), ("y", y), ("grad", grad)):
        _check_tensor(name, t, (1,))
    if not x.shape == y.shape == grad.shape:
        raise ValueError(f"x, y and grad must have the same shape (what quant.ste_curve returns), got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(grad.shape)}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    xs = x.detach().numpy()
    ax1.plot(xs, xs, color="gray", lw=0.8, ls="--", label="identity")
    ax1.plot(xs, y.detach().numpy(), label="fake_quantize(x)")
    ax1.set_xlabel("x")
    ax1.legend()
    ax1.set_title("forward: values snap to the grid")
    ax2.plot(xs, grad.detach().numpy(), color="tab:red")
    ax2.set_ylim(-0.1, 1.2)
    ax2.set_xlabel("x")
    ax2.set_ylabel("d output / d x")
    ax2.set_title("backward: straight-through, 0 where clipped")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def changed_predictions(
    images: torch.Tensor,
    labels: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    *,
    names: tuple[str, str] = ("FP32", "INT8"),
    class_names: Sequence[str] | None = None,
    max_images: int = 24,
):
    """A grid of the images whose predicted class differs between two models, both predictions shown.

    Titles read ``FP32 7 / INT8 9 (true 7)``; green when the second model is
    right, red when it is wrong. Returns the matplotlib ``Figure``.
    """
    _check_tensor("images", images, (3, 4))
    if images.dim() == 4 and images.shape[1] != 1:
        raise ValueError(f"images has shape {tuple(images.shape)}; this grid draws grey-scale images, "
                         "(N, 1, H, W) or (N, H, W)")
    for name, t in (("labels", labels), ("before", before), ("after", after)):
        _check_tensor(name, t, (1,))
        if t.is_floating_point():
            raise TypeError(f"{name} must hold class indices (integers), not {t.dtype} values: pass predictions, "
                            "e.g. logits.argmax(1)")
    if not (len(images) == len(labels) == len(before) == len(after)):
        raise ValueError("images, labels and both predictions must have the same length")
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise TypeError(f"names must be two strings, e.g. ('FP32', 'INT8'), not {names!r}")
    if isinstance(max_images, bool) or not isinstance(max_images, numbers.Integral):
        raise TypeError(f"max_images={max_images!r} must be an int, not {type(max_images).__name__}")
    if max_images < 1:
        raise ValueError(f"max_images={max_images} must be at least 1")
    if class_names is not None:
        top = int(max(labels.max(), before.max(), after.max()))
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise TypeError(f"class_names must be a list of names, one per class, not {type(class_names).__name__}")
        if len(class_names) <= top:
            raise ValueError(f"class_names must be a list with a name for every class 0..{top}, got {len(class_names)} names")
    idx = torch.nonzero(before != after).flatten()[:max_images].tolist()
    cols = 8
    rows = max(1, -(-len(idx) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    name = (lambda c: class_names[c]) if class_names is not None else str
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        ax.imshow(images[i].squeeze(0).numpy(), cmap="gray")
        ok = int(after[i]) == int(labels[i])
        ax.set_title(
            f"{names[0]} {name(int(before[i]))}\n{names[1]} {name(int(after[i]))} (true {name(int(labels[i]))})",
            fontsize=7,
            color="tab:green" if ok else "tab:red",
        )
    if not idx:
        axes.flat[0].text(0.5, 0.5, "no prediction changed", ha="center", va="center")
    fig.suptitle(f"{len(torch.nonzero(before != after))} test images whose prediction changed ({names[0]} -> {names[1]})")
    fig.tight_layout()
    return fig
