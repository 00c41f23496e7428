# The two commands of the course (see README.md):
#   make course   create .venv if absent, install, resolve the data, run every chapter into build/
#   make test     unit tests, then nbval regression checks of the committed notebooks
#   make test-avx2  the same suite with every kernel library capped at AVX2 without VNNI (the other CPU class)
#   make course-avx2  the course on that class (e.g. `make course-avx2 PROFILE=smoke`, which CI runs on both classes)
#   make lab      JupyterLab on notebooks/ with the course's kernel
#   make book     the book (build/committed/book/index.html) from the committed notebooks, without running them
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= full
# An offline data mirror beside the checkout is used when present (development machines, CI).
ifneq ($(wildcard ../shared/data),)
export QHELPERS_DATA_MIRROR ?= $(abspath ../shared/data)
endif

.PHONY: course course-avx2 test test-avx2 unit nbval data notebooks lab book clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

data: $(VENV)/.installed
	$(PY) -m qhelpers.course.datasets mnist tinyshakespeare

course: data
	$(PY) -m qhelpers.course.book run --profile $(PROFILE)

test: unit nbval

lab: data
	$(PY) -m qhelpers.course.book lab

book: $(VENV)/.installed
	$(PY) -m qhelpers.course.book html --committed

# The CPU class of most laptops and of AMD Zen 1-3: AVX2, no AVX-512 and no VNNI. The libraries read the
# variables of `qhelpers.hardware --caps` when they load; `--expect avx2` checks that they took effect.
# AVX2_ENV runs the command after it with the caps, once `--expect avx2` has checked them.
AVX2_ENV = caps="$$($(PY) -m qhelpers.hardware --caps)" && env $$caps $(PY) -m qhelpers.hardware --expect avx2 && env $$caps

test-avx2: data
	$(AVX2_ENV) $(MAKE) --no-print-directory unit nbval PYTEST_ARGS='-m "not browser"'

course-avx2: data
	$(AVX2_ENV) $(PY) -m qhelpers.course.book run --profile $(PROFILE)

# PYTEST_ARGS: e.g. -m "not browser" (test-avx2 skips the browser tests: the pages and JupyterLab do not depend on the CPU)
unit: data
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

nbval: data
	$(PY) -m pytest -q --nbval notebooks/

# Re-execute the committed notebooks in place (do this before committing them).
notebooks: data
	$(PY) -m qhelpers.course.book execute-in-place

clean:
	rm -rf build
