#!/usr/bin/env bash
# The whole test suite: notebooks and package in sync, notebooks clean, notebook tests, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# What the working tree looks like (tracked changes with their content, and untracked files).
snapshot() { git status --porcelain --untracked-files=all; git diff; }

before=$(snapshot)
"$BIN/nbdev_export"
if [ "$before" != "$(snapshot)" ]; then
  echo "FAIL: segaug_simclr/ is out of sync with nbs/: run '$BIN/nbdev_export' and commit the result" >&2
  git status --porcelain --untracked-files=all >&2
  exit 1
fi
"$BIN/nbdev_clean"
if [ "$before" != "$(snapshot)" ]; then
  echo "FAIL: notebooks are not clean: run '$BIN/nbdev_clean' and commit the result" >&2
  git status --porcelain --untracked-files=all >&2
  exit 1
fi
if [ -n "${CI:-}" ] && [ -n "$before" ]; then
  echo "FAIL: the checkout is not clean before the tests:" >&2; echo "$before" >&2; exit 1
fi
echo "ok: package in sync with notebooks, notebooks clean"

"$BIN/nbdev_test" --n_workers 2
"$BIN/python" -m pytest -q --durations=10 tests
