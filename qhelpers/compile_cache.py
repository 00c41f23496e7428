"""One on-disk cache of ``torch.compile`` per instruction set, so that a capped run never loads another ISA's kernels.

On a CPU, inductor (``torch.compile``'s compiler) generates C++ kernels for the
vector instruction set that ``ATEN_CPU_CAPABILITY`` allows: AVX-512 by default
on a CPU that has it, AVX2 under :data:`qhelpers.hardware.ISA_CAPS`. It caches
the compiled graphs on disk (``TORCHINDUCTOR_CACHE_DIR``, by default
``/tmp/torchinductor_<user>``), and in torch 2.14 the cache key does not
include that choice: on one machine, a run capped at AVX2 after an uncapped
run (or the other way round) is handed kernels generated for the other
instruction set, and computes NaN or corrupts memory (seen with this course's
GPT decoder). :func:`separate_inductor_cache` gives each instruction set its
own cache folder. Call it before the first ``torch.compile`` of a process.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["separate_inductor_cache"]

_PREFIX = "isa-"


def separate_inductor_cache() -> Path:
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at ``<cache>/isa-<capability>`` (e.g. ``isa-avx512``); returns that folder.

    ``<cache>`` is the folder ``TORCHINDUCTOR_CACHE_DIR`` named (or inductor's
    default); calling it again, or after a change of capability, replaces the
    ``isa-`` part rather than nesting.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    base = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    if base.name.startswith(_PREFIX):
        base = base.parent
    folder = base / f"{_PREFIX}{torch.backends.cpu.get_cpu_capability().lower()}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
