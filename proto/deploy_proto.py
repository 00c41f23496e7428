"""Prototype of chapter 07 (deploy): every format and runtime on the course's ResNet-18, one table.

    PYTHONPATH=. python proto/deploy_proto.py --profile full   # or smoke
    env $(python -m qhelpers.hardware --caps) PYTHONPATH=. python proto/deploy_proto.py --profile full

Two ResNet-18s, as in chapter 05: the one trained on MNIST (28x28, zoo) gives the files' bytes, the
fresh-process reload (time, bit-identical outputs) and the accuracy; torchvision's 224x224 ResNet-18
(random weights: they do not change the speed) gives the latency at batch 1 and 8, 2 threads.
Then the errors learners hit, reproduced. Each step's wall time is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from qhelpers import bench, data, models, ptq, runtimes, serialization
from qhelpers.course import zoo
from qhelpers.models import plain_resnet
from qhelpers.serialization import Builder
from qhelpers.train import evaluate

# eval_images: MNIST test images; calibration_batches: batches of 32 training images; latency_repeats: timed runs per
# (variant, batch). "all" runs every variant (this prototype's report); "full" is the cut proposed for the chapter's
# 4-minute budget; "smoke" the 30-second one (SimpleCNN only).
PROFILES = {
    "all": {"model": "resnet18", "eval_images": 2000, "calibration_batches": 8, "latency_repeats": 10, "reload": "all",
            "fp32_aoti": True, "aoti": True, "compile": True, "executorch": True, "executorch_fp32": True,
            "torchao_configs": 2, "ort_latency_all": True, "errors": True, "aoti_grad_demo": True},
    "full": {"model": "resnet18", "eval_images": 2000, "calibration_batches": 8, "latency_repeats": 5, "reload": "int8",
             "fp32_aoti": False, "aoti": True, "compile": False, "executorch": True, "executorch_fp32": False,
             "torchao_configs": 1, "ort_latency_all": False, "errors": True, "aoti_grad_demo": False},
    "smoke": {"model": "simple_cnn", "eval_images": 256, "calibration_batches": 2, "latency_repeats": 3, "reload": "one",
              "fp32_aoti": False, "aoti": False, "compile": False, "executorch": False, "executorch_fp32": False,
              "torchao_configs": 1, "ort_latency_all": False, "errors": False, "aoti_grad_demo": False},
}
TIMES: dict[str, float] = {}


class step:
    """Times a step of the flow (wall seconds into TIMES)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        TIMES[self.name] = TIMES.get(self.name, 0.0) + time.perf_counter() - self.t0
        print(f"  [{self.name}: {TIMES[self.name]:.1f} s]", file=sys.stderr, flush=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--out", default=None, help="folder for the files (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the table and times here")
    parser.add_argument("--model", choices=("resnet18", "simple_cnn"), default=None, help="default: the profile's")
    parser.add_argument("--set", nargs="*", default=[], help="override profile values, e.g. aoti=1 eval_images=500")
    args = parser.parse_args()
    P = dict(PROFILES[args.profile])
    for item in args.set:
        key, value = item.split("=", 1)
        P[key] = type(P[key])(value) if not isinstance(P[key], bool) else value in ("1", "true", "True")
    args.model = args.model or P["model"]
    from qhelpers import course

    t_all = time.perf_counter()
    print(course.setup(0))
    warnings.filterwarnings("ignore")
    out = Path(args.out or tempfile.mkdtemp(prefix="deploy-"))
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}

    def row(name: str, **values) -> None:
        rows.setdefault(name, {}).update(values)

    # --- the models and data -------------------------------------------------------------------------------------
    with step("models and data"):
        if args.model == "resnet18":
            rn = zoo.resnet18_with_data("none", dataset="mnist", eval_limit=P["eval_images"])
            model = rn.model.eval()  # QuantizableResNet (eager-ready), trained
            plain = plain_resnet(model)  # FX, PT2E, export
            loaders = rn.data
            fuse = lambda m: m.fuse_model(is_qat=False)  # noqa: E731
            float_builder = Builder("qhelpers.models:resnet18_mnist", {"stem": zoo.STEM})
            eager_builder = Builder("qhelpers.models:resnet18_mnist", {"stem": zoo.STEM}, "eager", fuse="fuse_model")
            fx_builder = None  # the plain MNIST ResNet has no one-call builder: the 224x224 twin's FX file is reloaded
            g = torch.Generator().manual_seed(0)
            twin = models.resnet18_imagenet("none", quantizable=True).eval()  # 224x224, times the latency
            twin_plain = plain_resnet(twin)
            twin_calibration = [torch.randn(8, 3, 224, 224, generator=g) for _ in range(2)]
            timing = {"bs1": torch.randn(1, 3, 224, 224, generator=g), "bs8": torch.randn(8, 3, 224, 224, generator=g)}
        else:
            cnn, loaders, _, _ = zoo.trained_simple_cnn("mnist")
            test = loaders.test
            loaders = data.Loaders(loaders.train, loaders.val, torch.utils.data.DataLoader(
                torch.utils.data.Subset(test.dataset, range(P["eval_images"])), batch_size=256), loaders.dataset)
            model = models.QuantReadyCNN.from_simple_cnn(cnn).eval()
            plain = cnn.eval()
            fuse = models.FUSE_PATTERNS
            float_builder = Builder("qhelpers.models:SimpleCNN")
            eager_builder = Builder("qhelpers.models:QuantReadyCNN", flow="eager", fuse=models.FUSE_PATTERNS)
            fx_builder = Builder("qhelpers.models:SimpleCNN", flow="fx", example_shape=(1, 1, 28, 28))
            twin = twin_plain = twin_calibration = None  # latency on the same files, at 28x28
            g = torch.Generator().manual_seed(0)
            timing = {"bs1": torch.randn(1, 1, 28, 28, generator=g), "bs8": torch.randn(8, 1, 28, 28, generator=g)}
        calibration = data.calibration_batches(loaders, P["calibration_batches"], batch_size=32, seed=0)
        example = (calibration[0][:2],)
        test = loaders.test
        test8 = torch.utils.data.DataLoader(test.dataset, batch_size=8)  # ExecuTorch (<= 15), AOTI packages (batch 8)
        example8 = (calibration[0][:8],)  # AOTI: one package per batch size (a free batch compiles wrongly, see save_aoti)
        x_check = calibration[-1][:8]  # the inputs a fresh process runs, compared bit for bit
        twin_example = (twin_calibration[0][:2],) if twin is not None else None
    print(f"{args.model}: {len(test.dataset)} eval images, {len(calibration)} calibration batches of 32; "
          f"latency at {tuple(timing['bs1'].shape[1:])}")

    timed: dict[str, object] = {}

    def latency(name: str, fn) -> None:
        """Keep ``fn`` to be timed at the end, round-robin with every other variant (bench.interleaved_latency):
        a burst of other work on the machine then slows every variant alike."""
        if isinstance(fn, torch.nn.Module):
            fn.eval()
        timed[name] = fn

    def accuracy(name: str, fn, loader=None) -> None:
        row(name, **{"accuracy %": 100 * evaluate(fn, loader or test).accuracy})

    def reload(name: str, fmt: str, path: Path, reference, builder=None, x=None, one: bool = False) -> None:
        if P["reload"] == "one" and not one:
            return  # smoke: one fresh process only (each costs 2-5 s of Python and torch imports)
        x = x_check if x is None else x
        with torch.inference_mode():
            ref = reference(x)
        try:
            r = serialization.reload_in_fresh_process(fmt, path, x, builder)
            row(name, **{"reload s": r.load_s, "warm reload s": r.warm_load_s,
                         "bit-identical": serialization.bit_identical(ref, r.outputs)})
        except RuntimeError as exc:
            row(name, **{"reload s": float("nan"), "bit-identical": first_line(exc)[:60]})

    def timed_twin(make, small):
        """The artifact to time: ``make(twin)`` for the ResNet (224x224), else the small one itself."""
        return make() if twin is not None else small

    def twin_aoti(gm, stem: str):
        """An AOTI package of the 224x224 twin with a free batch (its stem conv has 3 channels: checked against gm)."""
        path = out / f"{stem}_aoti_224.pt2"
        serialization.save_aoti(gm, twin_example, path, dynamic_batch=True)
        package = serialization.load("aoti", path)
        with torch.inference_mode():
            diff = (package(timing["bs8"]) - gm(timing["bs8"])).abs().max().item()
        print(f"  224x224 {stem} AOTI package (free batch) vs the model at bs8: max |diff| {diff:.3g}", file=sys.stderr)
        return package

    do_reload = P["reload"] == "all"  # else only the INT8 formats (and the FP32 state dict in "all")

    # --- PyTorch: FP32 ---------------------------------------------------------------------------------------------
    with step("FP32 state dict"):
        name = "FP32 eager (state_dict)"
        float_model = model if twin is not None else plain  # what float_builder builds
        row(name, bytes=serialization.save_state_dict(float_model, out / "fp32.pt"))
        if do_reload:
            reload(name, "state_dict", out / "fp32.pt", float_model, float_builder)
        accuracy(name, plain)
        latency(name, timed_twin(lambda: twin_plain, plain))
    if P["fp32_aoti"]:
        with step("FP32 AOTInductor"):
            name = "FP32 compiled (AOTI package)"
            row(name, bytes=serialization.save_aoti(plain, example8, out / "fp32_aoti.pt2"))
            aoti32 = serialization.load("aoti", out / "fp32_aoti.pt2")
            if do_reload:
                reload(name, "aoti", out / "fp32_aoti.pt2", aoti32)
            accuracy(name, aoti32, test8)
            latency(name, timed_twin(lambda: twin_aoti(twin_plain, "fp32"), aoti32))

    # --- PyTorch: INT8 torch.ao eager and FX: state dict, rebuilt by prepare + convert -----------------------------
    with step("INT8 eager"):
        name = "INT8 eager (state_dict)"
        q_eager = ptq.ptq_eager(model, calibration, fuse=fuse, desc=None)
        row(name, bytes=serialization.save_state_dict(q_eager, out / "int8_eager.pt"))
        reload(name, "state_dict", out / "int8_eager.pt", q_eager, eager_builder)
        accuracy(name, q_eager)
        latency(name, timed_twin(lambda: ptq.ptq_eager(twin, twin_calibration, fuse=fuse, desc=None), q_eager))
    with step("INT8 FX"):
        name = "INT8 FX (state_dict)"
        q_fx = ptq.ptq_fx(plain, calibration, example, desc=None)
        row(name, bytes=serialization.save_state_dict(q_fx, out / "int8_fx.pt"))
        accuracy(name, q_fx)
        q_fx_timed = timed_twin(lambda: ptq.ptq_fx(twin_plain, twin_calibration, twin_example, desc=None), q_fx)
        latency(name, q_fx_timed)
        if fx_builder is not None:
            reload(name, "state_dict", out / "int8_fx.pt", q_fx, fx_builder)
        else:
            serialization.save_state_dict(q_fx_timed, out / "int8_fx_224.pt")
            reload(name, "state_dict", out / "int8_fx_224.pt", q_fx_timed,
                   Builder("qhelpers.models:resnet18_imagenet", {"weights": "none", "quantizable": False}, "fx",
                           example_shape=(1, 3, 224, 224)), x=timing["bs8"])
            if "bit-identical" in rows[name]:
                rows[name]["bit-identical"] = f"{rows[name]['bit-identical']} (224 twin)"

    # --- PyTorch: INT8 PT2E: torch.export.save, AOTInductor -------------------------------------------------------
    with step("INT8 PT2E quantize"):
        q_pt2e = ptq.ptq_pt2e(plain, calibration, example, desc=None)
        q_pt2e_twin = ptq.ptq_pt2e(twin_plain, twin_calibration, twin_example, desc=None) if twin is not None else q_pt2e
    with step("INT8 PT2E export"):
        name = "INT8 PT2E (torch.export)"
        row(name, bytes=serialization.save_exported(q_pt2e, example, out / "int8_pt2e.pt2"))
        if P["reload"] != "one":
            row(name, **{"bytes with unused FP32": len(_export_bytes(q_pt2e, example))})
        reload(name, "export", out / "int8_pt2e.pt2", q_pt2e, one=True)
        accuracy(name, q_pt2e)
    if P["aoti"]:
        with step("INT8 PT2E AOTInductor"):
            name = "INT8 PT2E compiled (AOTI package)"
            row(name, bytes=serialization.save_aoti(q_pt2e, example8, out / "int8_aoti.pt2"))
            aoti8 = serialization.load("aoti", out / "int8_aoti.pt2")
            reload(name, "aoti", out / "int8_aoti.pt2", aoti8)
            accuracy(name, aoti8, test8)
            latency(name, timed_twin(lambda: twin_aoti(q_pt2e_twin, "int8"), aoti8))
    if P["compile"]:
        with step("torch.compile (bench.compile_for_cpu)"):
            latency("FP32 torch.compile (in process)", bench.compile_for_cpu(timed_twin(lambda: twin_plain, plain)))
            latency("INT8 PT2E torch.compile (in process)", bench.compile_for_cpu(q_pt2e_twin))

    # --- torchao tensor subclasses: state dict and safetensors --------------------------------------------------------
    with step("torchao"):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

        # torchao's INT8 configs quantize nn.Linear only: on ResNet-18 that is its fc (0.05 % of the weights), so the
        # file would stay 44.7 MB. They are shown on the SimpleCNN (fc1, fc2: 98 % of its weights), at 28x28.
        cnn, _, _, _ = zoo.trained_simple_cnn("mnist")
        row("torchao: SimpleCNN FP32 (state_dict)", bytes=serialization.save_state_dict(cnn, out / "cnn_fp32.pt"))
        accuracy("torchao: SimpleCNN FP32 (state_dict)", cnn)
        configs = (("W8A8 dynamic", Int8DynamicActivationInt8WeightConfig()), ("W8 weight-only", Int8WeightOnlyConfig()))
        for label, config in configs[: P["torchao_configs"]]:
            m = models.SimpleCNN()
            m.load_state_dict(cnn.state_dict())
            quantize_(m.eval(), config)
            builder = Builder("qhelpers.models:SimpleCNN", flow="torchao")
            for fmt, suffix in (("state_dict", "pt"), ("safetensors", "safetensors")):
                name = f"torchao: SimpleCNN {label} ({fmt})"
                path = out / f"torchao_{label.split()[0]}.{suffix}"
                save = serialization.save_state_dict if fmt == "state_dict" else serialization.save_safetensors
                row(name, bytes=save(m, path))
                reload(name, fmt, path, m, builder)
            accuracy(f"torchao: SimpleCNN {label} (state_dict)", m)

    # --- ONNX Runtime ---------------------------------------------------------------------------------------------------
    def onnx_pair(stem: str, make_small, make_twin=None):
        """Write {stem}.onnx (accuracy, bytes) and, for the ResNet, {stem}_224.onnx (latency); the small file's bytes."""
        n = make_small(out / f"{stem}.onnx")
        if twin is not None and make_twin is not None:
            make_twin(out / f"{stem}_224.onnx")
        return n

    timed_onnx = (lambda stem: out / f"{stem}_224.onnx") if twin is not None else (lambda stem: out / f"{stem}.onnx")
    with step("ONNX export"):
        row("ORT FP32", bytes=onnx_pair("fp32", lambda p: runtimes.export_onnx(plain, example, p),
                                        lambda p: runtimes.export_onnx(twin_plain, twin_example, p)))
        onnx_pair("fp32_pre", lambda p: runtimes.preprocess_onnx(out / "fp32.onnx", p),
                  lambda p: runtimes.preprocess_onnx(out / "fp32_224.onnx", p))
    variants = {f"ORT INT8 static {m}": {"method": m} for m in runtimes.CALIBRATION_METHODS}
    variants["ORT INT8 static minmax reduce_range"] = {"reduce_range": True}
    variants["ORT INT8 static minmax U8U8"] = {"weights": "uint8"}
    with step("ORT quantize"):
        for name, kw in variants.items():
            stem = name.replace(" ", "_")
            time_it = P["ort_latency_all"] or kw.get("method") in (None, "minmax")  # same graph, other scales: same speed
            row(name, bytes=onnx_pair(stem, lambda p: runtimes.quantize_onnx_static(out / "fp32_pre.onnx", p, calibration, **kw),
                                      (lambda p: runtimes.quantize_onnx_static(out / "fp32_pre_224.onnx", p, twin_calibration, **kw))
                                      if time_it else None))
        row("ORT INT8 dynamic", bytes=onnx_pair("ORT_INT8_dynamic",
                                                lambda p: runtimes.quantize_onnx_dynamic(out / "fp32_pre.onnx", p),
                                                lambda p: runtimes.quantize_onnx_dynamic(out / "fp32_pre_224.onnx", p)))
    with step("ONNX export of the PT2E model"):
        name = "ORT from PT2E QDQ export"
        try:
            row(name, bytes=onnx_pair("ORT_from_PT2E_QDQ_export", lambda p: runtimes.export_onnx(q_pt2e, example, p),
                                      lambda p: runtimes.export_onnx(q_pt2e_twin, twin_example, p)))
        except Exception as exc:  # noqa: BLE001 (report whatever it is)
            row(name, **{"bit-identical": first_line(exc)[:80]})
    with step("ORT evaluate and time"):
        for name in ["ORT FP32", *variants, "ORT INT8 dynamic", "ORT from PT2E QDQ export"]:
            stem = "fp32" if name == "ORT FP32" else name.replace(" ", "_")
            if not (out / f"{stem}.onnx").exists():
                continue
            accuracy(name, runtimes.ort_module(out / f"{stem}.onnx"))
            if not timed_onnx(stem).exists():
                continue
            latency(name, runtimes.ort_module(timed_onnx(stem)))
            ops = runtimes.ort_op_counts(timed_onnx(stem))
            row(name, convs=" ".join(f"{k}:{v}" for k, v in ops.items() if k in ("Conv", "QLinearConv", "ConvInteger")))

    # --- ExecuTorch -----------------------------------------------------------------------------------------------------
    if P["executorch"] and runtimes.executorch_version():
        with step("ExecuTorch"):
            variants_et = (("ExecuTorch XNNPACK FP32", lambda m, c, e: m), ("ExecuTorch XNNPACK INT8", runtimes.quantize_xnnpack))
            for name, build in variants_et[0 if P["executorch_fp32"] else 1:]:
                stem = name.split()[-1].lower()
                row(name, bytes=runtimes.save_executorch(build(plain, calibration, example), example, out / f"et_{stem}.pte"))
                et = runtimes.executorch_module(out / f"et_{stem}.pte")
                accuracy(name, et, test8)
                if twin is not None:
                    runtimes.save_executorch(build(twin_plain, twin_calibration, twin_example), twin_example, out / f"et_{stem}_224.pte")
                    et = runtimes.executorch_module(out / f"et_{stem}_224.pte")
                latency(name, et)

    with step("latency (round-robin)"):
        for label, x in timing.items():
            calls = {name: (lambda fn=fn, x=x: fn(x)) for name, fn in timed.items()}
            for name, lat in bench.interleaved_latency(calls, repeats=P["latency_repeats"], warmup=2, threads=2).items():
                row(name, **{f"{label} ms": lat.median_ms})
    table = pd.DataFrame.from_dict(rows, orient="index")
    cols = [c for c in ("bytes", "bytes with unused FP32", "reload s", "warm reload s", "bit-identical", "accuracy %",
                        "bs1 ms", "bs8 ms", "convs") if c in table]
    table = table[cols]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 60)
    print(table.to_string(float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"))
    with step("errors"):
        errors = reproduce_errors(out, q_pt2e, example8, P["aoti_grad_demo"]) if P["errors"] else {}
    for k, v in errors.items():
        print(f"\n[{k}]\n{v}")
    TIMES["total"] = time.perf_counter() - t_all
    print("\nstep times (s):", json.dumps({k: round(v, 1) for k, v in TIMES.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps({"table": json.loads(table.to_json(orient="index")), "times": TIMES,
                                               "errors": errors, "profile": args.profile,
                                               "caps": {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")}}, indent=1))


def _export_bytes(gm, example) -> bytes:
    """torch.export.save of the PT2E module as it is, FP32 weights included (what without_unused_tensors avoids)."""
    import io

    buf = io.BytesIO()
    torch.export.save(torch.export.export(gm, example, dynamic_shapes=({0: torch.export.Dim.AUTO},)), buf)
    return buf.getvalue()


def reproduce_errors(out: Path, q_pt2e, example, aoti: bool) -> dict[str, str]:
    """The errors of section 4, each with its real message (first lines)."""
    from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare

    errors: dict[str, str] = {}
    x = torch.randn(2, 1, 28, 28)

    def catch(label: str, fn) -> None:
        try:
            fn()
            errors[label] = "(no error)"
        except Exception as exc:  # noqa: BLE001
            errors[label] = "\n".join(f"{type(exc).__name__}: {exc}".strip().splitlines()[:3])[:600]

    def no_stub():  # eager quantization of SimpleCNN, which has no QuantStub: a float tensor reaches quantized::conv2d
        m = models.SimpleCNN().eval()
        m.qconfig = get_default_qconfig("x86")
        q = convert(prepare(m))
        q(x)
    catch("float tensor into a quantized conv (no QuantStub)", no_stub)

    def plain_add():  # eager quantization of torchvision's plain ResNet (out += identity), stubs added by QuantWrapper
        m = QuantWrapper(models.resnet18_mnist(stem="small_pool"))
        m.module = plain_resnet(m.module)
        m.eval().qconfig = get_default_qconfig("x86")
        prepare(m, inplace=True)
        m(x)
        convert(m, inplace=True)
        m(x)
    catch("aten::add on QuantizedCPU (skip connection without FloatFunctional)", plain_add)

    def into_float():  # an FX-quantized SimpleCNN's state dict loaded into the float SimpleCNN
        serialization.save_state_dict(ptq.ptq_fx(models.SimpleCNN().eval(), [x], (x,), desc=None), out / "fx_cnn.pt")
        models.SimpleCNN().load_state_dict(torch.load(out / "fx_cnn.pt", weights_only=True))
    catch("quantized state_dict into the float model", into_float)

    def fresh(code: str) -> str:
        """stdout of ``python -c code`` in a fresh process, and the first line of its log naming a cause."""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        cause = [ln.split("] ", 1)[-1] for ln in done.stderr.splitlines() if "We failed to resolve" in ln]
        return "\n".join(done.stdout.strip().splitlines()[-3:] + cause[:1])[:900]

    path = out / "torchao_W8A8.pt"
    key = "fc.weight" if "fc.weight" in torch.load(path, weights_only=False) else "fc1.weight"
    errors["torchao weights_only=True, torchao not imported (fresh process)"] = fresh(
        f"import torch\ntry:\n    torch.load({str(path)!r}, weights_only=True); print('loaded')\n"
        "except Exception as e:\n    print(type(e).__name__, [l for l in str(e).splitlines() if 'Unsupported global' in l][0].strip())")
    errors["torchao weights_only=True after import torchao (fresh process)"] = fresh(
        f"import torch, torchao\nfrom torchao.quantization import Int8Tensor\n"
        "print('Int8Tensor allow-listed by torchao itself:', Int8Tensor in torch.serialization.get_safe_globals())\n"
        f"sd = torch.load({str(path)!r}, weights_only=True); print('loaded:', type(sd[{key!r}]).__name__)")
    errors["torch.export.load of the PT2E file, torchao not imported (fresh process)"] = fresh(
        f"import torch\ntry:\n    torch.export.load({str(out / 'int8_pt2e.pt2')!r}); print('loaded')\n"
        "except Exception as e:\n    print(type(e).__name__, str(e)[:200])")
    if not aoti:
        return errors
    try:
        with torch.enable_grad():
            t0 = time.perf_counter()
            torch._inductor.aoti_compile_and_package(
                torch.export.export(serialization.without_unused_tensors(q_pt2e), example),
                package_path=str(out / "int8_aoti_grad.pt2"), inductor_configs={"freezing": True})
            compile_s = time.perf_counter() - t0
        slow = serialization.load("aoti", out / "int8_aoti_grad.pt2")
        fast = serialization.load("aoti", out / "int8_aoti.pt2")
        xb = example[0]
        lat = {k: bench.latency(f, xb, repeats=10, warmup=2).median_ms for k, f in (("grad on", slow), ("no_grad", fast))}
        errors["AOTI compiled with gradients on (no error: FP32 convolutions between Q/DQ)"] = (
            f"compile {compile_s:.1f} s; 28x28 bs8: {lat['grad on']:.2f} ms with gradients on vs {lat['no_grad']:.2f} ms "
            "under no_grad (INT8 qconv)")
    except Exception as exc:  # noqa: BLE001
        errors["AOTI compiled with gradients on"] = first_line(exc)
    return errors


if __name__ == "__main__":
    main()
