"""What the notebooks *say* about hardware must be true on any CPU class: no sentence may describe one machine.

A sentence that names an instruction set (AVX2, AVX-512, VNNI, AMX, DL Boost) must be phrased as a conditional fact
("where the CPU has ...", "without VNNI ...", "on an AVX2-only CPU ..."); it may never claim what *this* machine has:
that is printed by `qhelpers.hardware.describe()` from a measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
ISA_WORDS = re.compile(r"\b(AVX2|AVX-512|AVX512|VNNI|AVX-VNNI|AMX|DL Boost)\b")
CONDITIONAL = re.compile(r"\b(where|wherever|with|without|if|on an?|such|depends|whose|alone|class|either|both|other)\b", re.I)
ONE_MACHINE = re.compile(r"\b(this|our|the course's) (machine|CPU|computer|one|AVX2 CPU|laptop) (has|have|lacks|is an?)\b"
                         r"|\bthis (AVX2|AVX-512|VNNI)\b|\bthese CPUs\b", re.I)
INTERNAL = re.compile(r"\bthe issue\b|\bissue's\b|\(target \d", re.I)


def _sentences(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`", "CODE", text.replace("\n", " "))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*(-])", text) if s.strip()]


def _markdown(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [s for c in nb.cells if c.cell_type == "markdown" for s in _sentences(c.source)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_isa_sentences_are_conditional(path):
    bad = [s for s in _markdown(path) if ISA_WORDS.search(s) and not CONDITIONAL.search(s)]
    assert not bad, f"{path.name}: sentences that name an instruction set without a condition:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_sentence_describes_one_machine(path):
    bad = [s for s in _markdown(path) if ONE_MACHINE.search(s)]
    assert not bad, f"{path.name}: sentences about one machine's hardware (print a measurement instead):\n" + "\n".join(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_internal_wording(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert not INTERNAL.findall(text), f"{path.name}: words a learner cannot decode: {INTERNAL.findall(text)}"


def test_the_checks_catch_the_old_mistakes():
    assert ONE_MACHINE.search("this machine has AVX2 without VNNI, so read the ratio")
    assert ONE_MACHINE.search("the speed gain on this AVX2 CPU is about 2x")
    assert not CONDITIONAL.search("VNNI makes INT8 four times faster.")
    assert INTERNAL.search("The issue's targets apply") and INTERNAL.search("(target 2.0x)")
