"""qhelpers: the helper package behind the qcourse notebooks, one module per concept.

From the bottom layer up (a module imports only from its own layer or below;
see ARCHITECTURE.md):

- base: ``checks`` (argument checks), ``record`` (results and claims),
  ``repro`` (seeds, threads, engine), ``hardware`` (what the CPU can do);
- math: ``quant`` (affine quantization), ``ranges`` (clipping ranges),
  ``formats`` (number formats);
- data and models: ``data``, ``models``;
- training: ``train`` (fit, evaluate, checkpoint cache), ``zoo`` (the trained models);
- quantization: ``ptq`` (eager, FX, PT2E), ``qat`` (fake quantization, low-bit,
  QAT), ``convert`` (FP16/BF16 casts, dynamic INT8), ``sensitivity``;
- measurement: ``bench`` (size, storage, latency), ``plots``, ``exercises``;
- ``book``: the course runner (``python -m qhelpers.book``).
"""

from .record import claim, claim_limits, record

__all__ = ["claim", "claim_limits", "record", "setup"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``setup`` is loaded on first use: it imports torch (about 2 s), which ``python -m qhelpers.book`` must not wait
    for before it can answer Ctrl-C or a bad command line with one line."""
    if name == "setup":
        from .repro import setup

        globals()["setup"] = setup
        return setup
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
