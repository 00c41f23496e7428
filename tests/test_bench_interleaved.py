"""qhelpers.bench.interleaved_latency: round-robin timing of several callables."""

from __future__ import annotations

import time

import pytest
import torch

from qhelpers.bench import Latency, interleaved_latency


def test_interleaved_latency_times_every_call_in_rounds():
    order = []
    calls = {"fast": lambda: order.append("fast"), "slow": lambda: (order.append("slow"), time.sleep(0.002))}
    before = torch.get_num_threads()
    got = interleaved_latency(calls, repeats=6, warmup=1, threads=1)
    assert torch.get_num_threads() == before
    assert set(got) == {"fast", "slow"} and all(isinstance(t, Latency) and len(t.samples_ms) == 6 and t.threads == 1 for t in got.values())
    assert got["slow"].median_ms > got["fast"].median_ms and got["slow"].median_ms >= 2.0
    timed = order[2:]  # after one warm-up call each
    assert timed[:2] == ["fast", "slow"] and timed[2:4] == ["slow", "fast"]  # the order rotates each round


def test_interleaved_latency_checks_its_arguments():
    with pytest.raises(ValueError, match="at least one"):
        interleaved_latency({})
    with pytest.raises(ValueError, match="repeats"):
        interleaved_latency({"a": lambda: None}, repeats=0)
    with pytest.raises(TypeError, match="no arguments"):
        interleaved_latency({"a": 3})
