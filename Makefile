# Set-up is written once here; `make demo` and `make test` (the README's two commands) both depend on it.
# It is idempotent: a stamp keyed by constraints.txt and pyproject.toml makes a second run a no-op,
# and the compiled mmcv wheel is cached outside the repo, so only the very first set-up pays its build.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIN = $(shell sed -n 's/^$(1)==//p' constraints.txt)
TORCH_VERSION := $(call PIN,torch)
MMCV_VERSION := $(call PIN,mmcv)
# CUDA where a driver answers, else the CPU wheel; override with `make setup DEVICE=cpu|cuda`.
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
TORCH_SPEC := $(if $(filter cpu,$(DEVICE)),torch==$(TORCH_VERSION)+cpu,torch==$(TORCH_VERSION))
WHEEL_CACHE ?= $(HOME)/.cache/mec/wheels
STAMP := $(VENV)/.mec-setup-$(shell cat constraints.txt pyproject.toml | sha256sum | cut -c1-12)-$(DEVICE)
DEMO_OUT ?= mec-demo
PYTEST_ARGS ?=

.PHONY: setup demo test clean-venv
setup: $(STAMP)

$(STAMP): constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt setuptools wheel ninja numpy
	$(PIP) install -q -c constraints.txt '$(TORCH_SPEC)'
	@key=mmcv-$(MMCV_VERSION)_torch-$$($(PY) -c 'import torch;print(torch.__version__)')_$$($(PY) -c 'import sys;print("cp%d%d"%sys.version_info[:2])'); \
	dir=$(WHEEL_CACHE)/$$key; \
	if ! ls $$dir/mmcv-*.whl >/dev/null 2>&1; then \
	  echo "Building mmcv $(MMCV_VERSION) with its compiled ops into $$dir (about 17 min on 2 cores, once per machine)"; \
	  mkdir -p $(WHEEL_CACHE) && tmp=$$(mktemp -d $(WHEEL_CACHE)/.tmp.XXXXXX); \
	  MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-$$(nproc)} $(PIP) wheel -q --no-build-isolation --no-deps mmcv==$(MMCV_VERSION) -w $$tmp || { rm -rf $$tmp; exit 1; }; \
	  rm -rf $$dir && mv $$tmp $$dir; \
	else echo "Using cached mmcv wheel $$dir"; fi; \
	$(PIP) install -q -c constraints.txt $$dir/mmcv-*.whl
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PY) -m mec_cli.cli doctor --quiet
	@rm -f $(VENV)/.mec-setup-* && touch $@

demo: setup
	$(VENV)/bin/mec demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
