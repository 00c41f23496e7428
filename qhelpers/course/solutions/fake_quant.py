"""Exercise 3 (chapter 03): fake quantization with the clipped straight-through gradient."""

import torch


def my_fake_quant(x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> torch.Tensor:
    q = torch.round(x * (1.0 / scale)) + zero_point               # the integer code, before clamping
    inside = (q >= quant_min) & (q <= quant_max)                   # where the gradient may pass
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
    return x_hat.detach() + (x - x.detach()) * inside              # value of x_hat, gradient of x (masked)
