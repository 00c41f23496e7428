"""Reproducibility: one call that fixes seeds, thread count and the quantized engine."""

from __future__ import annotations

import logging
import random
import warnings

import numpy as np
import torch

from ..checks import SEED_MAX, check_int

__all__ = ["setup"]


def setup(seed: int = 0, threads: int = 2, engine: str = "x86", quiet_deprecations: bool = True) -> str:
    """Seed Python, NumPy and torch; fix torch's thread count; pick the quantized CPU engine; one compile cache per ISA.

    Fixed threads make timings comparable and floating-point reductions
    repeatable. ``x86`` is the fbgemm-based engine for these CPUs.
    ``torch.compile``'s disk cache gets a folder per instruction set
    (:func:`qhelpers.hardware.separate_inductor_cache`).
    ``quiet_deprecations`` hides the (expected, repeated) deprecation warnings
    of ``torch.ao.quantization``; the chapters say what replaces it.
    Returns a one-line summary to print. Every argument is checked before
    anything is set, so a bad one changes nothing.
    """
    seed = check_int("seed", seed, 0, SEED_MAX)
    threads = check_int("threads", threads, 1)
    if not isinstance(quiet_deprecations, bool):
        raise TypeError(f"quiet_deprecations={quiet_deprecations!r} must be True or False, "
                        f"not {type(quiet_deprecations).__name__}")
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantized engine {engine!r} not supported here; choose from {torch.backends.quantized.supported_engines}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
    from ..hardware import separate_inductor_cache  # (here: `python -m qhelpers.hardware` must not import itself first)

    separate_inductor_cache()
    if quiet_deprecations:
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\.quantization.*")
        # Known noise that tells a learner nothing: observers built with reduce_range (as every x86 recipe is),
        # inductor's own oneDNN lowering copying a tensor the discouraged way,
        # torchao registering an Enum with torch.compile, inductor noting that there is no CUDA.
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=r"To copy construct from a tensor", module=r"torch\._inductor.*")
        # torch.compile's cache asking torchao's weight tensors for a hash they do not offer (caching still works).
        warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching.*", category=UserWarning)
        # torch.load of a torch.ao quantized state dict: torch's own unpickler touches TypedStorage (nothing to change).
        warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated", module=r"torch\._utils")
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return f"torch {torch.__version__.split('+')[0]} | seed {seed} | {threads} threads | quantized engine {engine}"
