"""The ISA report measures what the kernels do; the AVX2 caps take effect (checked in child processes)."""

import os
import subprocess
import sys

import pytest

from qhelpers import hardware


def _in_child(code: str, **env: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_cpu_features_are_consistent():
    f = hardware.cpu_features()
    assert f["vnni"] in (True, False, None) and f["threads"] >= 1
    if f["avx512"]:
        assert f["avx2"]


def test_kernel_isa_agrees_with_the_saturation_probe():
    k = hardware.kernel_isa()
    assert k["class"] in {"AVX2", "VNNI", "other"}
    assert (k["class"] == "AVX2") == hardware.fbgemm_saturates()
    assert k["ATen"] == __import__("torch").backends.cpu.get_cpu_capability()
    assert k["cpu class"] in {c.label for c in hardware.CPU_CLASSES} | {"below AVX2"}
    assert "kernels:" in hardware.describe()


def test_the_measured_class_agrees_with_the_probes():
    """The class shown follows oneDNN's ISA; fbgemm's probe must agree with it unless only some libraries are capped."""
    d = hardware.dispatch()
    capped = [k for k in hardware.ISA_CAPS if k in os.environ]
    if d.kernels is not None and len(capped) in (0, len(hardware.ISA_CAPS)):
        assert d.kernels.fbgemm_int8_exact != d.fbgemm_saturates, d
        assert hardware.onednn_int8_dot() in (d.kernels.onednn_int8_dot, None)
    if not capped:
        assert d.kernels is d.cpu, d.notes
    lines = hardware.describe().splitlines()
    assert len(lines) == 2 and lines[0].startswith("CPU: ") and "FP16" in lines[0] and "BF16" in lines[0]
    assert lines[1].startswith("kernels: ")


@pytest.mark.skipif(not hardware.cpu_features()["avx2"], reason="the CPU has no AVX2")
def test_avx2_caps_take_effect():
    code = "from qhelpers import hardware; k = hardware.kernel_isa(); print(k['class'], k['ATen'], k['oneDNN'])"
    klass, aten, onednn = _in_child(code, **hardware.ISA_CAPS).split(" ", 2)
    assert (klass, aten) == ("AVX2", "AVX2")
    assert "AVX-512" not in onednn and "AVX2" in onednn
    assert hardware.onednn_isa_class(onednn.split(":")[0]) is hardware.CpuClass.AVX2


@pytest.mark.skipif(not (hardware.cpu_class() and hardware.cpu_class().fbgemm_int8_exact),
                    reason="fbgemm has no exact INT8 path on this CPU (no AVX-512 VNNI; AVX-VNNI is not used by fbgemm)")
def test_without_caps_a_vnni_cpu_is_exact():
    env = {k: v for k, v in os.environ.items() if k not in hardware.ISA_CAPS}
    run = subprocess.run([sys.executable, "-m", "qhelpers.hardware", "--expect", "vnni"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_expect_explains_a_mismatch():
    other = "vnni" if hardware.kernel_isa()["class"] == "AVX2" else "avx2"
    run = subprocess.run([sys.executable, "-m", "qhelpers.hardware", "--expect", other], capture_output=True, text=True)
    assert run.returncode == 1
    assert "expected the" in run.stderr and "Traceback" not in run.stderr


def test_onednn_int8_dot_matches_the_int_mm_result():
    """torch._int_mm (oneDNN) is exact where oneDNN has INT8 dot products; without them it saturates on full-range inputs."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (64, 256), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (256, 32), generator=g, dtype=torch.int8)
    exact = torch.equal(torch._int_mm(a, b).double(), a.double() @ b.double())
    dot = hardware.onednn_int8_dot()
    if dot is not None:  # on an AVX10.1 CPU oneDNN says "Intel AVX 10.1": dot products (test_hardware_classes.py)
        assert exact == dot, f"oneDNN ({hardware.onednn_isa()}) INT8 dot products: {dot}, but _int_mm exact: {exact}"


def test_bf16_dot_products_follow_the_isa():
    f = hardware.cpu_features()
    assert f["bf16"] in (True, False, None)
    dot = hardware.onednn_bf16_dot()
    assert dot in (True, False, None)
    if dot:  # oneDNN can only dispatch to BF16 dot products the CPU has
        assert f["bf16"] is not False
    if __import__("os").environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
        assert dot is False


def _onednn_16_bit(dtype: str) -> bool:
    """Whether torch 2.14 sends a 16-bit GEMM to oneDNN here: ideep's has_bf16_type_support() (oneDNN's ISA at least
    AVX2-VNNI-2, i.e. AVX-512 core or AVX2 with AVX-NE-CONVERT) for BF16, has_fp16_type_support() (at least AVX 10.1,
    or AVX2-VNNI-2) for FP16; otherwise ATen's own GEMM runs."""
    isa = hardware.onednn_isa() or ""
    klass = hardware.onednn_isa_class(isa)
    avx2_vnni_2 = "AVX2" in isa and "float16" in isa
    if dtype == "bfloat16":
        return avx2_vnni_2 or klass in {hardware.CpuClass.AVX512, hardware.CpuClass.AVX512_VNNI,
                                        hardware.CpuClass.AVX512_BF16, hardware.CpuClass.AVX10_1, hardware.CpuClass.AMX}
    return avx2_vnni_2 or (klass is not None and klass.fp16_arithmetic)


@pytest.mark.skipif(hardware.onednn_isa() is None, reason="oneDNN names no ISA here")
def test_16_bit_matmuls_run_where_the_dispatch_rules_say():
    kernels = hardware.matmul_kernels(batch=64, in_features=784, out_features=512)
    assert {(k.dtype, k.op) for k in kernels} == {(d, o) for d in ("float32", "bfloat16", "float16")
                                                  for o in ("linear", "matmul")}
    for k in kernels:
        assert k.gemm_op == ("aten::addmm" if k.op == "linear" else "aten::mm"), k
        entry = "aten::linear" if k.op == "linear" else "aten::matmul"
        assert entry in k.aten_ops, k
        if k.dtype != "float32":
            assert (k.library == "oneDNN") == _onednn_16_bit(k.dtype), k
            assert k.library in {"oneDNN", "ATen"}, k


def test_matmul_timings_table():
    table = hardware.matmul_timings(batch_sizes=(2,), modes=("eager", "autocast"), ops=("linear",), in_features=32,
                                    out_features=16, repeats=2)
    assert list(table.columns) == ["float32", "bfloat16", "float16"]
    assert table.loc[("linear", "autocast", 2), "float32"] != table.loc[("linear", "autocast", 2), "float32"]  # NaN
    assert (table.loc[("linear", "eager", 2)] > 0).all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"dtypes": "bfloat16"}, TypeError, "tuple of names"),
    ({"dtypes": ("int8",)}, ValueError, "must be one of"),
    ({"ops": ()}, ValueError, "at least one"),
    ({"batch": 0}, ValueError, "at least 1"),
    ({"batch": 1.5}, TypeError, "must be an int"),
])
def test_matmul_kernels_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        hardware.matmul_kernels(**kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_sizes": (0,)}, ValueError, "at least 1"),
    ({"batch_sizes": ()}, ValueError, "at least one"),
    ({"modes": ("jit",)}, ValueError, "must be one of"),
    ({"repeats": 0}, ValueError, "at least 1"),
])
def test_matmul_timings_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        hardware.matmul_timings(**kwargs)
