# Set-up is written once here; `make demo` and `make test` (the README's two commands) both depend on it.
# The decisions (which torch, which CUDA toolkit and architectures, which cached mmcv wheel) live in
# mec_cli/setup_env.py, a standard-library module the system python runs before the venv exists.
# It is idempotent: a stamp keyed by constraints.txt, pyproject.toml, the device and the CUDA architectures
# makes a second run a no-op, and the compiled mmcv wheel is cached outside the repo, so only the very first
# set-up on a machine pays its build.
#   make setup                                   CPU or CUDA, from whether nvidia-smi lists a GPU
#   make setup DEVICE=cuda CUDA_ARCHS="8.0 9.0"  mmcv's CUDA kernels for these compute capabilities
#   make setup VENV=/path/to/venv                another venv (the wheel cache is shared)
#   TORCH_CPU_INDEX=URL make setup               a mirror of PyTorch's CPU wheel index
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEVICE ?= $(shell $(PYTHON) -m mec_cli.setup_env device)
CUDA_ARCHS ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
WHEEL_CACHE ?= $(HOME)/.cache/mec/wheels
STAMP := $(VENV)/.mec-setup-$(shell (cat constraints.txt pyproject.toml; echo '$(DEVICE) $(CUDA_ARCHS)') | sha256sum | cut -c1-12)-$(DEVICE)
DEMO_OUT ?= mec-demo
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean-venv
# After the venv, the evaluator's numba kernels (mec_cli/evaluation/warmup.py): compiled for this machine into the
# user's cache, keyed by the kernels' contents, so a `git pull` that changes them recompiles them here and not in
# the user's first `mec eval`; a no-op (0.1 s) when they are compiled already.
setup: $(STAMP)
	@$(PY) -m mec_cli.evaluation.warmup

$(STAMP): constraints.txt pyproject.toml
	$(PYTHON) -m mec_cli.setup_env setup --venv '$(VENV)' --device '$(DEVICE)' --cuda-archs '$(CUDA_ARCHS)' \
	  --cpu-index '$(TORCH_CPU_INDEX)' --wheel-cache '$(WHEEL_CACHE)' --python '$(PYTHON)'
	@rm -f $(VENV)/.mec-setup-* && touch $@

demo: setup
	$(VENV)/bin/mec demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff, pinned in constraints.txt and configured in pyproject.toml: pyflakes, pycodestyle (120 columns), isort, and
# no imports inside functions except where start-up time needs them
lint: setup
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
