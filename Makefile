# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test` (the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(BIN)/pip
TORCH_VERSION ?= 2.13.0
# Where no GPU is present, torch comes from PyTorch's CPU wheel index (a small CPU build, not the CUDA one).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# GPU=1: torch's CUDA 13 build, tensorflow[and-cuda] (CUDA 12) and onnxruntime-gpu's CUDA 13 libraries (the `gpu`
# extra; docs/gpu.md). Default: 1 where `nvidia-smi -L` lists a GPU.
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && echo 1 || echo 0)
RUN ?= runs/demo
TRAIN_RUN ?= runs/demo-train
# The demo's data: fashion_mnist (the embedded default) or openclipart (64x64 RGB clip art, Debian's openclipart-png).
DATA ?= fashion_mnist
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
OPENCLIPART_DIR ?= /usr/share/openclipart/png
STAMP := $(VENV)/.installed-gpu$(GPU)

.PHONY: setup data test lint demo demo-train bench gpu-check

setup: $(STAMP) data

# 1. venv  2. torch first  3. the project with every extra the tests need (+ the `gpu` extra on a GPU).
# CPU: torch $(TORCH_VERSION) from the CPU index, unless a torch is already installed (e.g. the user's own build).
# GPU: torch $(TORCH_VERSION) from PyPI (the CUDA build), replacing a CPU build if one is there.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if [ "$(GPU)" = 1 ]; then \
	  if [ "$$($(PY) -c 'import torch; print(torch.version.cuda is not None)' 2>/dev/null)" != True ]; then \
	    echo "GPU: installing torch $(TORCH_VERSION) (CUDA 13 build)"; \
	    $(PIP) uninstall -q -y torch 2>/dev/null; $(PIP) install -q "torch==$(TORCH_VERSION)"; \
	  fi; \
	  echo "GPU: the project with tensorflow[and-cuda] (CUDA 12) and onnxruntime-gpu[cuda,cudnn] (CUDA 13)"; \
	  $(PIP) install -q -e ".[all,gpu,test]"; \
	else \
	  if $(PY) -c "import torch" 2>/dev/null; then \
	    echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	  else \
	    echo "no GPU: installing the CPU build of torch $(TORCH_VERSION)"; \
	    $(PIP) install -q --retries 0 --timeout 20 "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX); \
	  fi; \
	  $(PIP) install -q -e ".[all,test]"; \
	fi
	touch $(STAMP)

# Fashion-MNIST from Debian's package when we can install it; otherwise the loader falls back to keras.datasets.
data:
	@if [ -d "$(FMNIST_DIR)" ]; then echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    && echo "Fashion-MNIST installed in $(FMNIST_DIR)" \
	    || echo "note: could not install dataset-fashion-mnist; the loader will use keras.datasets.fashion_mnist"; \
	else echo "note: no dataset-fashion-mnist package here; the loader will use keras.datasets.fashion_mnist"; fi
	@if [ -d "$(OPENCLIPART_DIR)" ]; then echo "openclipart: $(OPENCLIPART_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -qq openclipart-png >/dev/null 2>&1 \
	    && echo "openclipart (--data openclipart) installed in $(OPENCLIPART_DIR)" \
	    || echo "note: could not install openclipart-png; --data openclipart will say how"; \
	else echo "note: no openclipart-png here (optional: --data openclipart, RGB clip-art)"; fi

test: setup
	$(PY) -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# The main job on the embedded default (Fashion-MNIST): samples from the shipped run in seconds.
demo: setup
	$(PY) pipelines/demo.py --run $(RUN) --data $(DATA)

# Reproduce the shipped run from scratch (VAE, encode, export, diffusion, sample); rerun to resume/skip stages.
demo-train: setup
	$(PY) pipelines/demo.py --train --run $(TRAIN_RUN) --data $(DATA)

# Benchmarks, all in pipelines/bench/ (figures: docs/benchmarks.md, docs/bench/, docs/gpu.md). Minutes on 2 cores.
bench: setup
	$(PY) pipelines/bench/train_steps.py
	$(PY) pipelines/bench/unet_modes.py
	$(PY) pipelines/bench/vae_steps.py --tf-image-ssim
	$(PY) pipelines/bench/decode_engines.py
	$(PY) pipelines/bench/latent_vs_pixel.py --sizes 32,64
	$(PY) pipelines/bench/latent_vs_pixel.py --estimate --preset guided128 --sizes 128,256 --precisions fp32 \
	  --budget 16GiB,24GiB,80GiB --out runs/bench/estimate

# The one-shot GPU check (~5-8 minutes on one GPU): writes docs/bench/gpu.md; without a GPU it says so, exit 0.
gpu-check: setup
	$(PY) pipelines/bench/gpu_check.py
