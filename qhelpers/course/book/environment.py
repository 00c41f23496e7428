"""What a run ran on: CPU model and features, the ISA the INT8 kernels used, threads, versions, date, kernel caps.

Measured in a child process of the same Python and environment as the chapters'
kernels (they inherit both), so the runner itself never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["start_capture", "Probe"]

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


class Probe:
    """The environment probe running in its child process: :meth:`result` waits for it and returns the environment
    as one JSON-ready dict (``{"error": ...}`` if the probe could not run)."""

    def __init__(self, timeout: float = 300) -> None:
        self.timeout = timeout
        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)  # a Ctrl-C stops the run, not the probe

    def result(self) -> dict[str, Any]:
        try:
            out, err = self._proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return {"error": f"the environment probe took more than {self.timeout:.0f} s"}
        if self._proc.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            return {"error": f"the environment probe failed: {last}"}
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": "the environment probe printed no JSON"}


def start_capture(timeout: float = 300) -> Probe:
    """Start measuring the environment in a child process (a few seconds: it imports torch) and return at once;
    the runner starts it before the first chapter and reads :meth:`Probe.result` after the last."""
    return Probe(timeout)
