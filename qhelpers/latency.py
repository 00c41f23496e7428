"""Latency of several models compared fairly: timed round-robin, so that they share the machine's good and bad moments.

Timing models one after the other lets a burst of background load land on
one of them only; on a shared or busy machine that can change a ratio
several-fold. :func:`interleaved_latency` warms every model up, then times one
call of each in turn, ``repeats`` rounds over, and reports each model's
median and 10th/90th percentiles. The order within a round is rotated, so no
model always runs right after the same neighbour.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

__all__ = ["Timing", "interleaved_latency"]


@dataclass(frozen=True)
class Timing:
    """Wall time of one call, in milliseconds, over the rounds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, n={self.samples})"


def interleaved_latency(
    calls: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 50,
    warmup: int = 5,
    threads: int = 2,
    progress: Callable | None = None,
) -> dict[str, Timing]:
    """Time every zero-argument callable in ``calls`` round-robin, in inference mode with ``threads`` threads.

    ``progress``, if given, is a progress bar (e.g. ``train.progress(total=repeats)``)
    updated once per round. The previous thread count is restored afterwards.
    """
    if not calls:
        raise ValueError("interleaved_latency needs at least one callable")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive int")
    for name, fn in calls.items():
        if not callable(fn):
            raise TypeError(f"calls[{name!r}] must be a function of no arguments, not {type(fn).__name__}")
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    calls[name]()
            for r in range(repeats):
                k = r % len(names)
                for name in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    calls[name]()
                    samples[name].append((time.perf_counter() - t0) * 1e3)
                if progress is not None:
                    progress.update(1)
    finally:
        torch.set_num_threads(old_threads)
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=10) if len(s) > 1 else [s[0]] * 9
        out[name] = Timing(statistics.median(s), q[0], q[-1], len(s))
    return out
