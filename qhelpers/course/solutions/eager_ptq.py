"""Exercise 4 (chapter 04): static INT8 PTQ in eager mode, with torch.ao.quantization's own calls."""

import copy

import torch
from torch import nn
from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare


def my_ptq_eager(model: nn.Module, calibration: list[torch.Tensor], fuse: list[list[str]]) -> nn.Module:
    m = copy.deepcopy(model).eval()              # never change the caller's model
    fuse_modules(m, fuse, inplace=True)          # conv+relu, linear+relu -> one module each
    m.qconfig = get_default_qconfig("x86")       # histogram activations, per-channel symmetric INT8 weights
    prepare(m, inplace=True)                     # insert observers
    with torch.inference_mode():
        for x in calibration:                    # calibrate: the observers record ranges
            m(x)
    return convert(m, inplace=True)              # observers -> scales; modules -> INT8 kernels
