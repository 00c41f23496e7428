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
    assert "kernels:" in hardware.describe()


@pytest.mark.skipif(not hardware.cpu_features()["avx2"], reason="the CPU has no AVX2")
def test_avx2_caps_take_effect():
    code = "from qhelpers import hardware; k = hardware.kernel_isa(); print(k['class'], k['ATen'], k['oneDNN'])"
    klass, aten, onednn = _in_child(code, **hardware.ISA_CAPS).split(" ", 2)
    assert (klass, aten) == ("AVX2", "AVX2")
    assert "AVX-512" not in onednn and "AVX2" in onednn


@pytest.mark.skipif(not hardware.cpu_features()["vnni"], reason="the CPU has no VNNI")
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
    if dot is not None:
        assert exact == dot, f"oneDNN INT8 dot products: {dot}, but _int_mm exact: {exact}"


def test_bf16_dot_products_follow_the_isa():
    f = hardware.cpu_features()
    assert f["bf16"] in (True, False, None)
    dot = hardware.onednn_bf16_dot()
    assert dot in (True, False, None)
    if dot:  # oneDNN can only dispatch to BF16 dot products the CPU has
        assert f["bf16"] is not False
    if __import__("os").environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
        assert dot is False
