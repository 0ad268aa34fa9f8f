# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test` (the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(BIN)/pip
TORCH_VERSION ?= 2.13.0
# Where no GPU is present, torch comes from PyTorch's CPU wheel index (a small CPU build, not the CUDA one).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
RUN ?= runs/demo
TRAIN_RUN ?= runs/demo-train
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: setup data test lint demo demo-train bench

setup: $(STAMP) data

# 1. venv  2. torch first (keep a torch the user already has, e.g. their own CUDA build)  3. the project
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing the CUDA build of torch"; $(PIP) install -q "torch>=2.4"; \
	else \
	  echo "no GPU: installing the CPU build of torch $(TORCH_VERSION)"; \
	  $(PIP) install -q --retries 0 --timeout 20 "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

# Fashion-MNIST from Debian's package when we can install it; otherwise the loader falls back to keras.datasets.
data:
	@if [ -d "$(FMNIST_DIR)" ]; then echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    && echo "Fashion-MNIST installed in $(FMNIST_DIR)" \
	    || echo "note: could not install dataset-fashion-mnist; the loader will use keras.datasets.fashion_mnist"; \
	else echo "note: no dataset-fashion-mnist package here; the loader will use keras.datasets.fashion_mnist"; fi

test: setup
	$(PY) -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# The main job on the embedded default (Fashion-MNIST): samples from the shipped run in seconds.
demo: setup
	$(PY) pipelines/demo.py --run $(RUN)

# Reproduce the shipped run from scratch (VAE, encode, export, diffusion, sample); rerun to resume/skip stages.
demo-train: setup
	$(PY) pipelines/demo.py --train --run $(TRAIN_RUN)

# Benchmarks (figures go to docs/benchmarks.md).
bench: setup
	$(PY) pipelines/bench_train.py
	$(PY) pipelines/bench_vae.py --tf-image-ssim
	$(PY) pipelines/benchmark.py --sizes 32,64
