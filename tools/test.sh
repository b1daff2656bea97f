#!/usr/bin/env bash
# The test suite. `tools/test.sh` (make test, what CI runs): notebooks and package in sync, notebooks clean, lint,
# every notebook's tests, the whole pytest suite except the SLURM tests (marked `cluster`: `make test-cluster`).
# `tools/test.sh quick` (make check): sync, clean, lint and the fast tests (pytest -m "not slow"), for the edit loop.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MODE=${1:-full}

# What the working tree looks like (tracked changes with their content, and untracked files).
snapshot() { git status --porcelain --untracked-files=all; git diff; }

before=$(snapshot)
"$BIN/nbdev_export"
if [ "$before" != "$(snapshot)" ]; then
  echo "FAIL: segaug_simclr/ is out of sync with nbs/: run 'make export' and commit the result" >&2
  git status --porcelain --untracked-files=all >&2
  exit 1
fi
"$BIN/nbdev_clean"
if [ "$before" != "$(snapshot)" ]; then
  echo "FAIL: notebooks are not clean: run '$BIN/nbdev_clean' (or 'make hooks' once, so that commits clean them) and commit the result" >&2
  git status --porcelain --untracked-files=all >&2
  exit 1
fi
if [ -n "${CI:-}" ] && [ -n "$before" ]; then
  echo "FAIL: the checkout is not clean before the tests:" >&2; echo "$before" >&2; exit 1
fi
echo "ok: package in sync with notebooks, notebooks clean"

"$BIN/ruff" check segaug_simclr tests benchmarks tools   # pyflakes rules (pyproject.toml); the package is the notebooks' code
echo "ok: lint"

if [ "$MODE" = quick ]; then
  "$BIN/python" -m pytest -q -n 2 --dist worksteal -m "not slow and not cluster" tests
  exit 0
fi
# two notebooks at a time on two cores, one thread each (with torch's default of a thread per core in each, 75 s instead
# of 36 s). Not beside pytest: four busy processes on two cores took longer than one suite after the other.
OMP_NUM_THREADS=1 "$BIN/nbdev_test" --n_workers 2
"$BIN/python" -m pytest -q -n 2 --dist worksteal -m "not cluster" --durations=15 tests   # the SLURM tests: make test-cluster
