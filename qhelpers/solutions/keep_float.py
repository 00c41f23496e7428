"""Exercise 5 (chapter 05): which layers to keep in FP32 so that FX PTQ reaches a goal.

The approach: rank the layers by how much quantizing each one alone costs (the sensitivity
ranking), then keep the most sensitive ones in float, one more at a time, until the goal
is reached. Any list that reaches it within the allowed number of layers is a right answer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from qhelpers import ptq


def keep_float_for(model: nn.Module, calibration: Sequence[torch.Tensor], example_inputs: tuple,
                   score: Callable[[nn.Module], float], ranking: Sequence[str], *, goal: float,
                   max_layers: int) -> list[str]:
    """The shortest prefix of ``ranking`` (most sensitive first) that, kept in FP32, brings ``score`` to ``goal``."""
    for k in range(max_layers + 1):
        keep = list(ranking[:k])
        if score(ptq.ptq_fx(model, list(calibration), example_inputs, keep_float=keep)) >= goal:
            return keep
    raise ValueError(f"keeping the {max_layers} most sensitive layers in FP32 does not reach {goal}")
