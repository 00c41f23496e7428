"""Saving a quantized model, and loading it again in a fresh process (taught in chapter 07).

A quantized model is only useful once it leaves the process that made it. PyTorch's formats
(``SAVE_FORMATS``) store different things, so each needs something different to load:

- ``"state_dict"`` (``torch.save`` of ``model.state_dict()``) holds the tensors only. Loading needs the
  model's Python code, rebuilt into the same structure (:class:`Builder`): for torch.ao's eager and FX
  models, ``prepare`` + ``convert`` without calibration (the file holds every scale and zero-point); for
  torchao's tensor subclasses, the float model built on the ``meta`` device, then
  ``load_state_dict(assign=True)``, which puts the file's ``Int8Tensor`` weights in place.
- ``"safetensors"`` holds plain tensors and a JSON header: torchao's ``flatten_tensor_state_dict`` splits
  each subclass into its inner tensors, ``unflatten_tensor_state_dict`` rebuilds it; then as above.
- ``"export"`` (``torch.export.save``) holds the graph and its tensors: loading needs torch and the
  graph's operators registered (``import torchao`` for a PT2E model's quantize/dequantize ops), not the
  model's code.
- ``"aoti"`` (an AOTInductor package) holds compiled machine code and its constants: loading needs
  torch's runtime (``torch._inductor.aoti_load_package``) only.

The check of a format is a round trip: save in this process, load and run in a *fresh* one
(:func:`reload_in_fresh_process` runs ``python -m qhelpers.serialization load-all ...``), where nothing of the
saving process (imported modules, registered classes, caches) can help, and compare the outputs with
:func:`bit_identical` (``torch.equal``: same dtype, same shape, every bit the same).

``torch.load(weights_only=True)`` (the default since torch 2.6) unpickles only tensors and allow-listed
classes: torchao's ``Int8Tensor`` is allow-listed when torchao is imported (it calls
``torch.serialization.add_safe_globals`` itself), so a loader must ``import torchao`` first.

Bad arguments (a path that does not exist, an unknown format, a builder that cannot be imported, inputs
that are not a tensor) raise a TypeError, ValueError or FileNotFoundError before any file is written.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .checks import check_file, check_flag, check_int, check_module, describe

__all__ = [
    "SAVE_FORMATS", "FLOWS", "Builder", "FunctionModule", "quantized_skeleton", "without_unused_tensors",
    "save_state_dict", "save_safetensors", "save_exported", "save_aoti", "load", "Reloaded",
    "reload_in_fresh_process", "reload_all_in_fresh_process", "bit_identical", "main",
]

SAVE_FORMATS = ("state_dict", "safetensors", "export", "aoti")
FLOWS = ("float", "eager", "fx", "torchao")  # what structure a state dict loads into (see Builder)
_MODULE = "qhelpers.serialization"  # what `python -m` runs in the fresh process


# --- the structure a state dict loads into ------------------------------------------------------------------------

@dataclass(frozen=True)
class Builder:
    """How a fresh process rebuilds the module a state dict loads into.

    ``function`` is an importable ``"package.module:function"`` (a class works too) returning the *float*
    model, called with ``kwargs`` (JSON values); ``flow`` says what to make of it:

    - ``"float"``: the float model itself;
    - ``"eager"``: torch.ao eager mode's quantized structure (``fuse`` names the fusion: a method of the
      model called with ``is_qat=False``, e.g. ``"fuse_model"``, or groups of module names);
    - ``"fx"``: FX graph mode's quantized structure, traced with a zero input of ``example_shape``;
    - ``"torchao"``: the float model built on the ``meta`` device (no memory, no initialization), whose
      parameters ``load_state_dict(assign=True)`` replaces with the file's tensors, subclasses included.

    Example: ``Builder("qhelpers.models:resnet18_mnist", {"stem": "small_pool"}, "eager", fuse="fuse_model")``.
    """

    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    flow: str = "float"
    fuse: str | list[list[str]] | None = None
    example_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.function, str) or self.function.count(":") != 1 or not all(self.function.split(":")):
            raise ValueError(f"function={self.function!r} must name an importable function as 'package.module:function', "
                             "e.g. 'qhelpers.models:SimpleCNN'")
        if not isinstance(self.kwargs, dict) or not all(isinstance(k, str) for k in self.kwargs):
            raise TypeError(f"kwargs must be a dict of keyword arguments, e.g. {{'stem': 'small_pool'}}, not {describe(self.kwargs)}")
        try:
            json.dumps(self.kwargs)
        except TypeError:
            raise TypeError(f"kwargs={self.kwargs!r} must hold JSON values (numbers, strings, lists): a fresh process "
                            "receives them as text") from None
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r}; choose one of {list(FLOWS)}")
        if self.flow == "fx" and not _is_shape(self.example_shape):
            raise ValueError(f"flow='fx' traces the model: give example_shape, the shape of one input batch, e.g. (1, 1, 28, 28); "
                             f"got {self.example_shape!r}")
        if self.fuse is not None and self.flow != "eager":
            raise ValueError(f"fuse is for flow='eager' (FX fuses by itself); got flow={self.flow!r}")
        if self.fuse is not None and not isinstance(self.fuse, (str, list)):
            raise TypeError(f"fuse must be a method name such as 'fuse_model' or a list of groups of module names, "
                            f"not {describe(self.fuse)}")

    def build_float(self) -> nn.Module:
        """The float model: ``function(**kwargs)``, in eval mode."""
        module_name, name = self.function.split(":")
        try:
            fn = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {self.function!r} ({type(exc).__name__}: {exc}); the fresh process must be "
                             "able to import it too (a function of a module on its sys.path, not of a notebook)") from None
        model = fn(**self.kwargs)
        check_module(model, f"{self.function}(**{self.kwargs})")
        return model.eval()

    def build(self) -> nn.Module:
        """The module a saved state dict of this flow loads into (for ``"torchao"``: on the ``meta`` device)."""
        if self.flow == "torchao":
            with torch.device("meta"):
                return self.build_float()
        model = self.build_float()
        if self.flow == "float":
            return model
        example = (torch.zeros(self.example_shape),) if self.example_shape else None
        return quantized_skeleton(model, self.flow, example_inputs=example, fuse=self.fuse)

    def to_json(self) -> str:
        return json.dumps({"function": self.function, "kwargs": self.kwargs, "flow": self.flow, "fuse": self.fuse,
                           "example_shape": list(self.example_shape) if self.example_shape else None})

    @classmethod
    def from_json(cls, text: str) -> "Builder":
        d = json.loads(text)
        if d.get("example_shape") is not None:
            d["example_shape"] = tuple(d["example_shape"])
        return cls(**d)


def _is_shape(shape: object) -> bool:
    return isinstance(shape, tuple) and len(shape) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)


def quantized_skeleton(model: nn.Module, flow: str, *, example_inputs: tuple | None = None,
                       fuse: str | list[list[str]] | None = None) -> nn.Module:
    """The quantized structure of ``model`` under torch.ao's ``flow`` (``"eager"`` or ``"fx"``), uncalibrated.

    ``prepare`` then ``convert`` with the x86 default qconfig (per-channel weights), as :mod:`qhelpers.ptq`
    quantizes, but with no calibration: the observers have seen nothing, so the scales are placeholders
    (1.0, 0), and a saved state dict's ``load_state_dict`` replaces every one of them. A copy of ``model``
    is used; ``model`` is left as it is.
    """
    from torch.ao.quantization import convert, get_default_qconfig, get_default_qconfig_mapping, prepare
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    check_module(model)
    if flow not in ("eager", "fx"):
        raise ValueError(f"flow={flow!r}: a quantized skeleton is torch.ao's 'eager' or 'fx' structure")
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # "must run observer before calling calculate_qparams": on purpose here
        warnings.filterwarnings("ignore", message=".*must run observer before calling calculate_qparams.*")
        if flow == "eager":
            if isinstance(fuse, str):
                getattr(m, fuse)(is_qat=False)
            elif fuse:
                torch.ao.quantization.fuse_modules(m, fuse, inplace=True)
            m.qconfig = get_default_qconfig("x86")
            prepare(m, inplace=True)
            return convert(m, inplace=True).eval()
        if not isinstance(example_inputs, tuple):
            raise TypeError("flow='fx' needs example_inputs, a tuple of inputs to trace with, e.g. (torch.zeros(1, 1, 28, 28),)")
        if fuse is not None:
            raise ValueError("fuse is for flow='eager'; FX finds the patterns to fuse itself")
        from .ptq import views_as_reshapes  # the same rewrite ptq.ptq_fx makes before tracing

        prepared = prepare_fx(views_as_reshapes(m), get_default_qconfig_mapping("x86"), example_inputs)
        return convert_fx(prepared).eval()


def without_unused_tensors(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of ``gm`` without the parameters and buffers its graph never reads.

    After ``convert_pt2e`` the module still carries every FP32 weight, unused: the graph reads the folded
    INT8 copies. ``torch.export`` would save both (an INT8 ResNet-18 file larger than the FP32 one).
    """
    if not isinstance(gm, torch.fx.GraphModule):
        raise TypeError(f"without_unused_tensors needs a torch.fx.GraphModule (what ptq_pt2e returns), not {describe(gm)}")
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    out = copy.deepcopy(gm)
    for name, _ in [*out.named_parameters(), *out.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            mod = out.get_submodule(owner) if owner else out
            mod._parameters.pop(attr, None)
            mod._buffers.pop(attr, None)
    return out


class FunctionModule(nn.Module):
    """An ``nn.Module`` whose ``forward`` calls ``fn``: a loaded AOTInductor package, an ONNX Runtime session
    or an ExecuTorch method, wrapped so that ``train.evaluate`` and ``bench.latency`` take it like any model."""

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str = "runtime") -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be a function of one input tensor, not {describe(fn)}")
        self.fn, self.name = fn, str(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


# --- saving -----------------------------------------------------------------------------------------------------

def _check_inputs(example_inputs: object) -> tuple:
    if not isinstance(example_inputs, tuple) or not example_inputs or not all(isinstance(t, Tensor) for t in example_inputs):
        raise TypeError(f"example_inputs must be a non-empty tuple of input tensors, e.g. (x[:2],), not {describe(example_inputs)}")
    return example_inputs


def save_state_dict(model: nn.Module, path: str | os.PathLike) -> int:
    """``torch.save(model.state_dict(), path)``; returns the file's bytes."""
    check_module(model)
    p = check_file(path, exists=False)
    torch.save(model.state_dict(), p)
    return p.stat().st_size


def save_safetensors(model: nn.Module, path: str | os.PathLike) -> int:
    """The state dict as a safetensors file (torchao's subclasses flattened into plain tensors + JSON); bytes.

    safetensors stores plain tensors only: torchao's ``flatten_tensor_state_dict`` splits each
    ``Int8Tensor`` into its ``qdata`` and ``scale`` and describes it in the header. torch.ao's quantized
    tensors (``torch.qint8`` with their scales) are not supported: save those with :func:`save_state_dict`.
    """
    from safetensors.torch import save_file
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    check_module(model)
    p = check_file(path, exists=False)
    state = model.state_dict()
    for name, t in state.items():
        if not isinstance(t, Tensor) or t.is_quantized:
            raise ValueError(f"{name} is {describe(t)}: safetensors holds plain tensors and torchao's subclasses, not "
                             "torch.ao's quantized tensors or packed parameters; use save_state_dict")
    tensors, metadata = flatten_tensor_state_dict(state)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(p), metadata=metadata)
    return p.stat().st_size


def _exported(model: nn.Module, example_inputs: tuple, dynamic_batch: bool) -> torch.export.ExportedProgram:
    check_module(model)
    _check_inputs(example_inputs)
    check_flag("dynamic_batch", dynamic_batch)
    if dynamic_batch and any(t.dim() == 0 or t.shape[0] < 2 for t in example_inputs):
        raise ValueError("dynamic_batch=True needs example inputs with a batch of at least 2 (torch.export fixes a batch of "
                         "1 as a constant): pass e.g. (x[:2],), or dynamic_batch=False")
    shapes = tuple({0: torch.export.Dim.AUTO} for _ in example_inputs) if dynamic_batch else None
    model = without_unused_tensors(model) if isinstance(model, torch.fx.GraphModule) else model
    return torch.export.export(model, example_inputs, dynamic_shapes=shapes)


def save_exported(model: nn.Module, example_inputs: tuple, path: str | os.PathLike, *, dynamic_batch: bool = True) -> int:
    """``torch.export.export`` then ``torch.export.save``: the graph and its tensors in one ``.pt2`` file; bytes.

    For a PT2E model the tensors the graph does not read are dropped first (:func:`without_unused_tensors`).
    ``dynamic_batch`` keeps the batch dimension free, so one file serves every batch size.
    """
    p = check_file(path, exists=False)
    torch.export.save(_exported(model, example_inputs, dynamic_batch), p)
    return p.stat().st_size


def save_aoti(model: nn.Module, example_inputs: tuple, path: str | os.PathLike, *, dynamic_batch: bool = False) -> int:
    """Compile ``model`` ahead of time with AOTInductor into a package (``.pt2``); returns its bytes.

    ``torch._inductor.aoti_compile_and_package`` on the exported program, with weight freezing and under
    ``torch.no_grad()``: inductor applies its freezing passes, which fold a PT2E model's Q/DQ pairs into
    INT8 oneDNN convolutions and linears, only when gradients are off. With gradients on, the package
    runs FP32 convolutions between separate quantize/dequantize kernels, slower than FP32 itself.
    Compiling takes tens of seconds (a C++ compiler builds the package).

    The package is specialised to the example's batch size unless ``dynamic_batch=True``. Measured with
    torch 2.14.1: a PT2E INT8 model whose first convolution has one input channel (the MNIST ResNet-18)
    compiles with a free batch into a package whose outputs are wrong (chance accuracy), because the INT8
    convolution's output layout is assumed wrongly; ``torch.compile(dynamic=True)`` of the same model stops
    with "expected size 64==64, stride 1==784 at dim=1". Check a dynamic package against the model.
    """
    p = check_file(path, exists=False)
    program = _exported(model, example_inputs, dynamic_batch)
    if p.exists():
        p.unlink()  # (the packager appends to an existing archive)
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=str(p), inductor_configs={"freezing": True})
    return p.stat().st_size


# --- loading ----------------------------------------------------------------------------------------------------

def load(fmt: str, path: str | os.PathLike, builder: Builder | None = None) -> nn.Module:
    """The model saved at ``path`` in format ``fmt``, ready to run (an ``nn.Module``).

    ``"state_dict"`` and ``"safetensors"`` need ``builder`` (the model's code, :class:`Builder`);
    ``"export"`` and ``"aoti"`` refuse one: their files hold the program itself.
    """
    if fmt not in SAVE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(SAVE_FORMATS)}")
    p = check_file(path, exists=True)
    needs_code = fmt in ("state_dict", "safetensors")
    if needs_code and not isinstance(builder, Builder):
        raise TypeError(f"format {fmt!r} stores tensors only: pass builder=Builder(...), the code that rebuilds the model, "
                        f"not {describe(builder)}")
    if not needs_code and builder is not None:
        raise ValueError(f"format {fmt!r} holds the whole program and loads without the model's code: pass no builder")
    if fmt == "aoti":
        return FunctionModule(torch._inductor.aoti_load_package(str(p)), f"AOTInductor package {p.name}")
    if fmt == "export" or fmt == "safetensors" or builder is not None and builder.flow == "torchao":
        import torchao  # noqa: F401  (registers its tensor classes as safe to unpickle, and PT2E's Q/DQ operators)
    if fmt == "export":
        return torch.export.load(p).module()
    assert builder is not None
    if fmt == "state_dict":
        state = torch.load(p, weights_only=True, map_location="cpu")
    else:
        from safetensors import safe_open
        from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

        with safe_open(str(p), "pt") as f:
            metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        state, leftover = unflatten_tensor_state_dict(tensors, metadata)
        if leftover:
            raise ValueError(f"{p.name}: tensors {sorted(leftover)[:5]} are not described in its header")
    model = builder.build()
    try:
        model.load_state_dict(state, assign=builder.flow == "torchao")
    except RuntimeError as exc:  # "Error(s) in loading state_dict for X:\n\tMissing key(s) ..."
        lines = str(exc).strip().splitlines()
        raise ValueError(f"{p.name} does not fit the model {builder.function} built for flow={builder.flow!r}: "
                         f"{' '.join(line.strip() for line in lines[1:3])[:300]}") from None
    return model.eval()


@dataclass(frozen=True)
class Reloaded:
    """What a fresh process measured: the outputs on the inputs it was given, and its times in seconds."""

    outputs: Tensor
    load_s: float  # the first load: importing what the format needs, reading the file, building the model
    warm_load_s: float  # a second load in the same process: reading the file and building the model alone
    first_call_s: float  # the first forward pass (lazy initialization, weight packing)
    process_s: float  # the whole process, Python and torch's import included


def reload_in_fresh_process(fmt: str, path: str | os.PathLike, inputs: Tensor, builder: Builder | None = None, *,
                            threads: int = 2, timeout_s: float = 600.0) -> Reloaded:
    """Load ``path`` in a new Python process and run it on ``inputs`` there: :class:`Reloaded`.

    The process runs ``python -m qhelpers.serialization load-all FILES INPUTS OUTPUT`` (see :func:`main`), which
    calls :func:`load` and writes the outputs to a file; nothing of this process
    (imports, registered classes, compiled code in memory) reaches it. A failure raises a RuntimeError
    with the last line of its error output.
    """
    return reload_all_in_fresh_process([(fmt, path, builder)], inputs, threads=threads, timeout_s=timeout_s)[0]


def reload_all_in_fresh_process(files: Sequence[tuple[str, str | os.PathLike, Builder | None]],
                                inputs: Tensor | Sequence[Tensor], *, threads: int = 2, timeout_s: float = 600.0) -> list[Reloaded]:
    """:func:`reload_in_fresh_process` of several files, ``(format, path, builder or None)`` each, in *one* new process.

    ``inputs`` is one batch every file runs on, or a list of batches, one per file (e.g. images for a CNN,
    token ids for a GPT).

    One process pays Python's and torch's imports once (a few seconds) instead of once per file. The files
    are loaded in the order given, so the first load of each format includes importing what that format
    needs (torchao, AOTInductor's runtime) if an earlier file did not; compare formats by ``warm_load_s``.
    Every ``process_s`` is the whole process's time. Everything is checked before the process starts.
    """
    if isinstance(files, (str, bytes)) or not isinstance(files, Sequence) or not files:
        raise TypeError(f"files must be a non-empty list of (format, path, builder or None), not {describe(files)}")
    jobs = []
    for item in files:
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError(f"each file must be a tuple (format, path, builder or None), e.g. ('export', 'model.pt2', None), "
                            f"not {describe(item)}")
        fmt, path, builder = item
        if fmt not in SAVE_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {list(SAVE_FORMATS)}")
        check_file(path, exists=True)
        if builder is not None and not isinstance(builder, Builder):
            raise TypeError(f"builder must be a Builder or None, not {describe(builder)}")
        jobs.append({"format": fmt, "path": str(path), "builder": builder.to_json() if builder is not None else None})
    if isinstance(inputs, Tensor):
        batches = [inputs] * len(jobs)
    elif isinstance(inputs, Sequence) and len(inputs) == len(jobs) and all(isinstance(t, Tensor) for t in inputs):
        batches = list(inputs)
    else:
        raise TypeError(f"inputs must be one input batch as a torch.Tensor, or a list of {len(jobs)} tensors (one per file), "
                        f"not {describe(inputs)}")
    check_int("threads", threads, 1)
    with tempfile.TemporaryDirectory(prefix="reload-") as tmp:
        src, dst, spec = Path(tmp) / "inputs.pt", Path(tmp) / "outputs.pt", Path(tmp) / "files.json"
        torch.save([t.detach().cpu() for t in batches], src)
        spec.write_text(json.dumps(jobs))
        cmd = [sys.executable, "-m", _MODULE, "load-all", str(spec), str(src), str(dst), "--threads", str(threads)]
        # The child imports the same qhelpers as this process (not another copy on its path).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        process_s = time.perf_counter() - t0
        if done.returncode != 0:
            last = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["(no error output)"]
            failed = next((line.split("loading ", 1)[1] for line in done.stderr.splitlines() if line.startswith("loading ")), None)
            where = f"{Path(failed.split(' as ')[0]).name} as {failed.split(' as ')[1]!r}" if failed and " as " in failed else "the files"
            raise RuntimeError(f"the fresh process could not load {where}: {last[-1].strip()}")
        results = torch.load(dst, weights_only=True)
    return [Reloaded(r["outputs"], float(r["load_s"]), float(r["warm_load_s"]), float(r["first_call_s"]), process_s)
            for r in results]


def bit_identical(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` have the same dtype, shape and every bit (a quantized output is dequantized first)."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, not {describe(t)}")
    a = a.dequantize() if a.is_quantized else a
    b = b.dequantize() if b.is_quantized else b
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


# --- the loader a fresh process runs ------------------------------------------------------------------------------

def _load_and_run(fmt: str, path: str, builder: Builder | None, x: Tensor) -> dict:
    """Load ``path`` twice (timed: the first load imports what the format needs, the second only reads and
    builds) and run the first model on ``x`` (timed): what a fresh process reports for one file."""
    print(f"loading {path} as {fmt}", file=sys.stderr, flush=True)  # (names the file if it fails)
    t0 = time.perf_counter()
    model = load(fmt, path, builder)
    t1 = time.perf_counter()
    load(fmt, path, builder)
    t2 = time.perf_counter()
    with torch.inference_mode():
        y = model(x)
    t3 = time.perf_counter()
    y = y.dequantize() if y.is_quantized else y
    return {"outputs": y, "load_s": t1 - t0, "warm_load_s": t2 - t1, "first_call_s": t3 - t2}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qhelpers.serialization load-all FILES_JSON INPUTS OUTPUT [--threads N]``: FILES_JSON is a JSON
    list of ``{"format", "path", "builder"}`` (``builder``: ``Builder.to_json()`` or null), INPUTS a saved list of
    input batches, one per file.

    Loads each file with :func:`load` twice (timed: the first load imports what the format needs, the second
    only reads and builds), runs the first model on its input batch (timed) and saves the list of
    ``{"outputs", "load_s", "warm_load_s", "first_call_s"}`` to ``OUTPUT``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    every = sub.add_parser("load-all", help="load saved models, one after the other, and run each on its saved inputs")
    every.add_argument("files", help="a JSON file: a list of {format, path, builder}")
    every.add_argument("inputs", help="a torch.save'd list of input batches, one per file")
    every.add_argument("output")
    every.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.load(args.inputs, weights_only=True)
    jobs = json.loads(Path(args.files).read_text())  # x: one input batch per file
    torch.save([_load_and_run(j["format"], j["path"], Builder.from_json(j["builder"]) if j["builder"] else None, xj)
                for j, xj in zip(jobs, x)], args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
