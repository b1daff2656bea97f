# Two commands do all the set-up on a fresh machine (Python 3.10+ and pip):
#   make demo   install into .venv and run the demo study (segaug-simclr demo)
#   make test   install into .venv and run the whole test suite (what CI runs)
# `make help` lists every target.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_ID := $(shell date +%Y%m%d-%H%M%S)
NB     ?=
PRESET ?= demo

.PHONY: help install demo reproduce lab test test-cluster check export lesson lint hooks bench

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

install: $(VENV)/.installed  ## create .venv and install the package with its dev tools

$(VENV)/.installed: setup.py settings.ini
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The demo study: standard against SegAug SimCLR on the synthetic benchmark with spurious backgrounds, two seeds,
# linear + kNN evaluation, figures and results.md in outputs/demo/<run-id>/ (CPU, offline, minutes).
demo: install  ## run the demo study on the CPU into outputs/demo/<date-time>
	$(BIN)/segaug-simclr demo --out outputs/demo/$(RUN_ID)

# Every study that reproduces a table or figure, then one report (REPORT.md, REPORT.html) beside the published numbers.
reproduce: install  ## every study of a preset, then the report: make reproduce PRESET=demo (outputs/reproduction/<preset>)
	$(BIN)/segaug-simclr reproduce --preset $(PRESET)

lab: install  ## JupyterLab on the lessons and run notebooks
	$(BIN)/jupyter lab nbs/

test: install  ## the whole test suite but the SLURM tests (CI runs it, then test-cluster; about four minutes on two cores)
	bash tools/test.sh

# The executors against a real one-node SLURM that the tests start and stop themselves (root; Debian's slurm-wlm and
# munge). About four and a half minutes on two cores; interrupted after eight (SIGINT, so that the cluster is still stopped).
test-cluster: install  ## the SLURM tests on a throwaway one-node cluster (root, slurm-wlm + munge; about 5 minutes)
	timeout --signal=INT --kill-after=60 480 $(BIN)/python -m pytest -q -m cluster --durations=10 tests/test_cluster.py

check: install  ## the edit loop's quick pass: sync, clean, lint and the fast tests (under two minutes)
	bash tools/test.sh quick

export: install  ## regenerate segaug_simclr/ from the notebooks in nbs/
	$(BIN)/nbdev_export

lesson: install  ## execute one library notebook in place, outputs kept: make lesson NB=nbs/07_train.ipynb
	@test -n "$(NB)" || { echo "usage: make lesson NB=nbs/<notebook>.ipynb" >&2; exit 2; }
	$(BIN)/nbdev_export
	$(BIN)/python tools/run_nbs.py $(NB)

hooks: install  ## clean notebooks when JupyterLab saves them and when git commits them (nbdev's hooks + tools/pre-commit)
	$(BIN)/nbdev_install_hooks
	install -m 755 tools/pre-commit .git/hooks/pre-commit

lint: install  ## ruff (pyflakes rules) over the package, tests, benchmarks and tools
	$(BIN)/ruff check segaug_simclr tests benchmarks tools

bench: install  ## the pretraining throughput benchmark
	$(BIN)/python benchmarks/train_throughput.py
