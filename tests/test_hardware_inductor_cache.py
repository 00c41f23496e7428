"""hardware.separate_inductor_cache: one torch.compile cache folder per instruction set."""

from __future__ import annotations

import torch

from qhelpers.hardware import separate_inductor_cache


def test_each_capability_gets_its_own_folder_and_calls_do_not_nest(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    here = separate_inductor_cache()
    assert here == tmp_path / f"isa-{torch.backends.cpu.get_cpu_capability().lower()}" and here.is_dir()
    assert separate_inductor_cache() == here  # idempotent
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    capped = separate_inductor_cache()
    assert capped == tmp_path / "isa-avx2"
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(capped)
