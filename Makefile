# Two commands do all the set-up on a fresh machine (Python 3.10+ and pip):
#   make demo   install into .venv and run the demo study
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

# Short SimCLR pretraining on the CPU (ResNet-18 at width 0.25 on the embedded synthetic shapes benchmark, kNN every 2 epochs).
demo: install
	$(BIN)/python -m segaug_simclr.pretrain --dataset synthetic --depth 18 --width 0.25 --epochs 8 \
		--batch-size 256 --lr 1.0 --warmup-epochs 1 --temperature 0.2 --crop-min 0.2 --amp bf16 --channels-last \
		--knn-every 2 --knn-images 1000 --out outputs/demo/$(RUN_ID)

test: install
	bash tools/test.sh

bench: install
	$(BIN)/python benchmarks/train_throughput.py
