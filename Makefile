# fiftyone-dataops developer entry points. Every target that runs code first
# runs scripts/install.sh, which returns in about a second when .venv is
# already up to date.
#
#   make install              # .venv with extras all,dev (EXTRAS=dev: light, no torch/sam2)
#   make test                 # the whole test suite (what CI runs)
#   make test-fast            # without tests marked slow or integration
#   make demo                 # end-to-end demo into demo_out/
#   make labelstudio          # label-studio in its own venv (.venv-labelstudio)
#   make labelstudio-serve    # run it on 127.0.0.1:8080; then, in another shell:
#                             #   source .labelstudio/labelstudio.env
#   make bench                # benchmarks (bench/*.py; figures in bench/RESULTS.md)
#   make lint                 # ruff
#   make clean                # caches and outputs (make distclean: also .venv)
#
# Variables: VENV (default .venv), EXTRAS (default all,dev), INSTALL_FLAGS
# (more scripts/install.sh options, e.g. --with-browser), PYTEST_ARGS,
# DATAOPS_FIXTURES (default ../shared/fixtures when it exists).

SHELL := /bin/bash
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV ?= $(ROOT)/.venv
EXTRAS ?= all,dev
INSTALL_FLAGS ?=
PYTEST_ARGS ?=
PY := $(VENV)/bin/python

# Real third-party files for tests live beside the project in shared/.
ifeq ($(origin DATAOPS_FIXTURES),undefined)
ifneq ($(wildcard $(ROOT)/../shared/fixtures/.),)
DATAOPS_FIXTURES := $(abspath $(ROOT)/../shared/fixtures)
endif
endif
ifneq ($(DATAOPS_FIXTURES),)
export DATAOPS_FIXTURES
endif

export VENV

# Tests never reach a model hub (a missing hub weight would hang ~47 s).
TEST_ENV := HF_HUB_OFFLINE=1 FIFTYONE_DO_NOT_TRACK=true

.PHONY: install labelstudio labelstudio-serve demo test test-fast bench lint clean distclean help

help:
	@sed -n '1,/^$$/p' $(lastword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

install:
	@"$(ROOT)/scripts/install.sh" --extras "$(EXTRAS)" $(INSTALL_FLAGS)

# The tests start a real Label Studio server from this venv (one per session).
labelstudio:
	@"$(ROOT)/scripts/install_labelstudio.sh"

LS_PORT ?= 8080
labelstudio-serve: install labelstudio
	cd "$(ROOT)" && "$(VENV)/bin/dataops" labelstudio serve --data-dir .labelstudio \
		--document-root "$(ROOT)" --port $(LS_PORT)

demo: install
	cd "$(ROOT)" && "$(VENV)/bin/dataops" demo --out demo_out

# pytest's exit code 5 (no tests collected) fails the target like any other.
test: install labelstudio
	@cd "$(ROOT)" && $(TEST_ENV) "$(PY)" -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; fi; \
	exit $$rc

test-fast: install
	@cd "$(ROOT)" && $(TEST_ENV) "$(PY)" -m pytest -q -m "not slow and not integration" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests: failing" >&2; fi; \
	exit $$rc

bench: install labelstudio
	cd "$(ROOT)" && "$(PY)" bench/run.py
	cd "$(ROOT)" && HF_HUB_OFFLINE=1 "$(PY)" bench/bench_hard_negatives.py
	cd "$(ROOT)" && HF_HUB_OFFLINE=1 "$(PY)" bench/bench_embeddings.py
	cd "$(ROOT)" && "$(PY)" bench/bench_labelstudio.py

lint: install
	cd "$(ROOT)" && "$(VENV)/bin/ruff" check .

clean:
	cd "$(ROOT)" && rm -rf demo_out bench/out build dist .pytest_cache .ruff_cache *.egg-info
	find "$(ROOT)" -path "$(VENV)" -prune -o -path "$(ROOT)/.venv*" -prune -o -path "$(ROOT)/.git" -prune -o \
		-type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)"
