# Two commands do all the set-up on a fresh machine (Python 3.10+ and pip):
#   make demo   install into .venv and run the demo study (segaug-simclr demo)
#   make test   install into .venv and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_ID := $(shell date +%Y%m%d-%H%M%S)

.PHONY: install demo test bench

install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The demo study: standard against SegAug SimCLR on the synthetic benchmark with spurious backgrounds, two seeds,
# linear + kNN evaluation, figures and results.md in outputs/demo/<run-id>/ (CPU, offline, minutes).
demo: install
	$(BIN)/segaug-simclr demo --out outputs/demo/$(RUN_ID)

test: install
	bash tools/test.sh

bench: install
	$(BIN)/python benchmarks/train_throughput.py
