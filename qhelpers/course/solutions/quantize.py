"""Exercise 1 (chapter 01): the affine quantize step, from torch.round, torch.clamp and arithmetic."""

import torch


def my_quantize(x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> torch.Tensor:
    # round(x / scale) + zero_point, kept inside the integer range (multiplying by 1/scale, as PyTorch does)
    return torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, quant_min, quant_max).to(torch.int32)
