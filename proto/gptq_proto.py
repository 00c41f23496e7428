"""Prototype for chapter 08: GPTQ vs RTN / activation-aware / k-means on chapter 06's GPT, per seed.

    PYTHONPATH=. python proto/gptq_proto.py --seeds 0 1 2 --bits 4 3 2 --groups 32 64

Prints, per seed, bits and group size, the validation loss of each method (and KL / top-1 agreement vs FP32), and the
share of RTN's loss increase each method wins back. ``--sweep`` adds the calibration / damping / order study at 3 bits.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from qhelpers import course, quant, transformer, weight_only
from qhelpers.activation_aware import awq_search
from qhelpers.activations import capture_inputs
from qhelpers.codebook import fake_quantize_codebook
from qhelpers.course import zoo
from qhelpers.fidelity import next_token_fidelity
from qhelpers.gptq import gptq_quantize


def calibration_windows(splits, count: int, seed: int, length: int = 64) -> torch.Tensor:
    """Chapter 06's calibration: ``count`` random training windows of 64 characters, seeded."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(splits.train) - length - 1, (count,), generator=gen).tolist()
    return torch.stack([splits.train[s:s + length] for s in starts])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2])
    ap.add_argument("--groups", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--calibration", type=int, default=16)
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hqq", action="store_true", help="only torchao's CPU INT4 (tinygemm grid) with and without HQQ")
    args = ap.parse_args()
    rows, sweep_rows = [], []
    for seed in args.seeds:
        course.setup(seed, threads=args.threads)
        t0 = time.time()
        model, splits, history, cached = zoo.trained_gpt(iters=args.iters, seed=seed)
        print(f"seed {seed}: model {'loaded' if cached else 'trained'} in {time.time() - t0:.0f} s "
              f"(training took {history.seconds:.0f} s)", flush=True)
        val = transformer.eval_windows(splits.val, 64, args.eval_windows)
        calibration = calibration_windows(splits, args.calibration, seed)
        inputs = capture_inputs(model, calibration)
        fp32 = transformer.lm_loss(model, val)
        if args.hqq:
            rows += hqq_rows(model, val, fp32, seed, args.groups)
            continue
        for bits in args.bits:
            for g in args.groups:
                gran = quant.PerGroup(g)
                t = time.time()
                variants = {
                    "RTN": weight_only.replace_weights(model, lambda n, m: weight_only.fake_quantize_affine(m.weight.detach(), bits, gran)),
                    "activation-aware": weight_only.replace_weights(
                        model, lambda n, m: awq_search(m.weight.detach(), inputs[n], bits, gran).weight),
                    "k-means": weight_only.replace_weights(model, lambda n, m: fake_quantize_codebook(m.weight.detach(), bits, gran)),
                }
                t_other = time.time() - t
                for ao in (False, True):
                    t = time.time()
                    m, layers = gptq_quantize(model, calibration, bits, gran, act_order=ao)
                    variants["GPTQ act-order" if ao else "GPTQ"] = m
                    ratio = sum(l.error for l in layers.values()) / sum(l.rtn_error for l in layers.values())
                    worse = sum(l.error > l.rtn_error for l in layers.values())
                    print(f"  {bits}b g{g} GPTQ{' act-order' if ao else ''}: {time.time() - t:.1f} s; summed layer error "
                          f"{ratio:.2f}x RTN's, {worse}/{len(layers)} layers worse than RTN", flush=True)
                losses = {k: transformer.lm_loss(v, val) for k, v in variants.items()}
                for k, v in variants.items():
                    f = next_token_fidelity(model, v, val)
                    rows.append({"seed": seed, "bits": bits, "group": g, "method": k, "loss": losses[k],
                                 "increase": losses[k] - fp32, "KL": f.kl, "top1": f.top1_agreement,
                                 "won back": (losses["RTN"] - losses[k]) / (losses["RTN"] - fp32)})
        rows.append({"seed": seed, "bits": 32, "group": 0, "method": "FP32", "loss": fp32, "increase": 0.0, "KL": 0.0,
                     "top1": 1.0, "won back": float("nan")})
        if args.sweep:
            sweep_rows += sweep(model, splits, val, fp32, seed)
    df = pd.DataFrame(rows)
    if args.hqq:
        print(df.pivot_table(index=["group", "method"], columns="seed", values=["increase", "KL"]).round(4).to_string())
        return
    pd.set_option("display.width", 200)
    print(df.pivot_table(index=["bits", "group", "method"], columns="seed", values="increase").round(4).to_string())
    print("\nshare of RTN's loss increase won back")
    print(df[df.method != "RTN"].pivot_table(index=["bits", "group", "method"], columns="seed", values="won back").round(3).to_string())
    print("\nKL (nats) and top-1 agreement vs FP32, mean over seeds")
    print(df.groupby(["bits", "group", "method"])[["KL", "top1"]].mean().round(4).to_string())
    if sweep_rows:
        s = pd.DataFrame(sweep_rows)
        print("\n3-bit sweep: share of RTN's loss increase won back")
        print(s.pivot_table(index=["group", "setting"], columns="seed", values="won back").round(3).to_string())
    df.to_csv("/tmp/gptq_proto.csv", index=False)


def hqq_rows(model, val, fp32: float, seed: int, groups: list[int]) -> list[dict]:
    """torchao's CPU INT4 (``PrototypeInt4WeightOnlyConfig``, tinygemm's grid) with its default and its HQQ qparams."""
    import copy

    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import quantize_

    out = []
    for g in groups:
        for algo in ("tinygemm", "hqq"):
            m = copy.deepcopy(model)
            t = time.time()
            quantize_(m, PrototypeInt4WeightOnlyConfig(group_size=g, int4_choose_qparams_algorithm=algo,
                                                       set_inductor_config=False),
                      filter_fn=lambda mod, fqn: weight_only.in_blocks(fqn, mod))
            loss, f = transformer.lm_loss(m, val), next_token_fidelity(model, m, val)
            out.append({"seed": seed, "bits": 4, "group": g, "method": f"torchao INT4 CPU {algo}", "loss": loss,
                        "increase": loss - fp32, "KL": f.kl, "top1": f.top1_agreement})
            print(f"  g{g} {algo}: {loss - fp32:+.4f} ({time.time() - t:.1f} s)", flush=True)
    return out


def sweep(model, splits, val, fp32: float, seed: int, bits: int = 3) -> list[dict]:
    """What moves GPTQ's gain at 3 bits: calibration size and length, damping, act-order, group size."""
    out = []
    for g in (32, 64, 128):
        gran = quant.PerGroup(g)
        rtn = transformer.lm_loss(weight_only.replace_weights(
            model, lambda n, m: weight_only.fake_quantize_affine(m.weight.detach(), bits, gran)), val)
        settings = {}
        for count in (16, 64, 256):
            settings[f"calib {count}x64"] = dict(calibration=calibration_windows(splits, count, seed))
        settings["calib 256x64 act-order"] = dict(calibration=calibration_windows(splits, 256, seed), act_order=True)
        for damp in (0.001, 0.1, 1.0):
            settings[f"calib 256x64 percdamp {damp}"] = dict(calibration=calibration_windows(splits, 256, seed), percdamp=damp)
        settings["calib 512x32 (short windows)"] = dict(calibration=calibration_windows(splits, 512, seed, length=32))
        for label, kw in settings.items():
            t = time.time()
            cal = kw.pop("calibration")
            m, _ = gptq_quantize(model, cal, bits, gran, **kw)
            loss = transformer.lm_loss(m, val)
            out.append({"seed": seed, "group": g, "setting": label, "won back": (rtn - loss) / (rtn - fp32),
                        "increase": loss - fp32})
            print(f"  sweep g{g} {label}: {loss - fp32:+.4f} (RTN {rtn - fp32:+.4f}), {time.time() - t:.1f} s", flush=True)
    return out


if __name__ == "__main__":
    main()
