"""What a run ran on: CPU model and features, the ISA the INT8 kernels used, threads, versions, date, kernel caps.

Measured in a child process of the same Python and environment as the chapters'
kernels (they inherit both), so the runner itself never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["capture"]

_PROBE = r"""
import datetime, importlib.metadata as md, json, os, platform
from qhelpers import hardware
model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace")
              if line.startswith("model name")), platform.processor() or "unknown") if os.path.exists("/proc/cpuinfo") else platform.processor()
cpu, kernels = hardware.describe().splitlines()
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"
print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu_model": model,
    "cpu": cpu.removeprefix("CPU: "),
    "kernels": kernels.removeprefix("kernels: "),
    "threads": hardware.cpu_features()["threads"],
    "isa_caps": {k: os.environ[k] for k in hardware.ISA_CAPS if k in os.environ},
    "versions": {"Python": platform.python_version(), **{n: version(n) for n in ("torch", "torchvision", "torchao", "numpy")}},
}))
"""


def capture(timeout: float = 300) -> dict[str, Any]:
    """The environment of this run, as one JSON-ready dict; ``{"error": ...}`` if the probe could not run."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the environment probe took more than {timeout:.0f} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the environment probe failed: {last}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "the environment probe printed no JSON"}
