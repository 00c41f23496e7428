"""Exercise 5 (chapter 05): a greedy search for the layers to keep in FP32.

Start with every layer in INT8. At each step, try keeping each remaining candidate in FP32 *together with the
layers already chosen*, measure each, and keep the one that measures best; stop once the goal is reached. Re-measuring
at every step is what a ranking of single layers cannot do: two layers can share one source of error (fixing either
fixes it), so the second-best single layer may add little once the best one is in FP32.
"""

from __future__ import annotations

from typing import Callable, Sequence


def choose_fp32_layers(measure: Callable[[list[str]], float], layers: Sequence[str], goal_db: float) -> list[str]:
    keep: list[str] = []
    best = measure(keep)                                      # everything INT8
    while best < goal_db:
        candidates = [name for name in layers if name not in keep]
        if not candidates:
            raise ValueError(f"even with every candidate in FP32 the score is {best:.2f} dB, below {goal_db:.2f} dB")
        scores = {name: measure(keep + [name]) for name in candidates}
        choice = max(scores, key=lambda name: scores[name])  # the layer that helps most, given those already kept
        keep.append(choice)
        best = scores[choice]
    return keep
