"""Prototype for chapter 08: does torchao's GPTQ (torchao.prototype.gptq, torchao 0.18) run on a CPU, and does
qhelpers.gptq agree with it?

    PYTHONPATH=. python proto/gptq_torchao_check.py

1. torchao's own flow (GPTQConfig observe / convert) on a CPU, INT8 per row and INT4: the messages it fails with.
2. Its algorithm (``gptq_quantize``) with the one line that refuses a CPU removed at run time (a copy of the function,
   the installed file untouched), INT8 per row: the codes compared with ``qhelpers.gptq.gptq_weight(..., bits=8,
   PerChannel(0), symmetric=True, scale_dtype=torch.float32)``, the grid torchao's ``Int8Tensor`` uses.
"""

from __future__ import annotations

import inspect
import textwrap
import warnings

import torch
from torch import nn

from qhelpers.gptq import gptq_weight, hessian, output_error
from qhelpers.quant import PerChannel
from qhelpers.weight_only import fake_quantize_affine


def torchao_flow() -> None:
    from torchao.prototype.gptq import GPTQConfig
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerRow

    for label, make in (("Int8WeightOnlyConfig(PerRow())", lambda: Int8WeightOnlyConfig(granularity=PerRow())),
                        ("Int4WeightOnlyConfig(group_size=32)", lambda: Int4WeightOnlyConfig(group_size=32))):
        try:
            m = nn.Sequential(nn.Linear(256, 96, bias=False))
            quantize_(m, GPTQConfig(step="observe", base_config=make()))
            m(torch.randn(64, 256))
            quantize_(m, GPTQConfig(step="convert", base_config=make()))
            print(f"torchao GPTQ, {label}: runs on CPU ({type(m[0].weight).__name__})")
        except Exception as err:  # noqa: BLE001 - the message is the result
            print(f"torchao GPTQ, {label}: {type(err).__name__}: {err}")


def cpu_copy_of_gptq_quantize():
    import torchao.prototype.gptq.api as api

    src = textwrap.dedent(inspect.getsource(api.gptq_quantize))
    refusal = 'assert device.type == "cuda", "GPTQ only supports CUDA currently"'
    assert refusal in src and "torch.cuda.synchronize()" in src
    namespace = dict(vars(api))
    exec(src.replace(refusal, "pass").replace("torch.cuda.synchronize()", "pass"), namespace)  # noqa: S102
    return namespace["gptq_quantize"]


def compare(n_out: int = 96, n_in: int = 512) -> None:
    from torchao.prototype.gptq import GPTQConfig
    from torchao.quantization import Int8Tensor, Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerRow

    gptq_cpu = cpu_copy_of_gptq_quantize()
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n_out, n_in, generator=gen) * 0.05
    x = (torch.randn(4096, n_in, generator=gen) @ (torch.eye(n_in) + torch.randn(n_in, n_in, generator=gen) / n_in**0.5))
    x = x * torch.linspace(0.2, 3.0, n_in)
    H = hessian(x)
    ours = gptq_weight(w, H, 8, PerChannel(0), symmetric=True, scale_dtype=torch.float32)
    rtn = fake_quantize_affine(w, 8, PerChannel(0), symmetric=True, scale_dtype=torch.float32)
    rtn_ao = Int8Tensor.from_hp(w, PerRow()).dequantize(torch.float32)
    print(f"RTN grids identical (ours FP32 scales vs torchao Int8Tensor): {torch.equal(rtn, rtn_ao)}")
    print(f"ours: output error {output_error(w, ours.weight, x) / output_error(w, rtn, x):.3f}x RTN's")
    for block in (n_in, 256, 128):
        cfg = GPTQConfig(step="convert", base_config=Int8WeightOnlyConfig(granularity=PerRow()),
                         gptq_quantize_block_size=block)
        t = gptq_cpu(H.float().clone(), w.clone(), cfg)
        codes = t.qdata.to(torch.int16)
        print(f"torchao, gptq_quantize_block_size={block} (in_features={n_in}): output error "
              f"{output_error(w, t.dequantize(torch.float32), x) / output_error(w, rtn, x):.3f}x RTN's; scales equal "
              f"ours: {torch.equal(t.scale.flatten(), ours.scale.flatten())}; codes differing from ours: "
              f"{float((codes != ours.codes).float().mean()):.2%}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torchao_flow()
    compare()
