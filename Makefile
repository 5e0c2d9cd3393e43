# Fresh-machine entry points (see README.md):
#   make bench   the main job: stock timm Swin vs the patched model (GPU if present, else a small CPU preset)
#   make test    the test suite (Triton kernels under the interpreter when there is no GPU)
# Both create .venv, install torch and the package into it, then run.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
# The install's own lines and ninja's compile steps, one short line each (the full log stays in install.log).
BUILD_FILTER := { grep --line-buffered -E '^ *(\[semask-kernels\]|\[[0-9]+/[0-9]+\] )' \
	| sed -u -E 's@^ *@@; s@^(\[[0-9]+/[0-9]+\]) .* -c ([^ ]+) .*@  \1 compiling \2@; s@^(\[[0-9]+/[0-9]+\]) .* -o ([^ ]+[.]so)( .*)?$$@  \1 linking \2@' \
	| awk '!seen[$$0]++ { print; fflush() }'; true; }

.PHONY: setup bench test cmake-build info clean

setup: $(STAMP)

$(STAMP): setup.py pyproject.toml semask_kernels/_build_plan.py
	@start=$$SECONDS; \
	$(PYTHON) -m venv $(VENV) \
	&& $(PY) -m pip install -q "setuptools>=64" wheel ninja \
	&& echo "== installing $(TORCH_PINS) into $(VENV)" \
	&& $(PY) -m pip install -q $(TORCH_PINS) \
	&& echo "== torch installed ($$((SECONDS - start))s); installing semask-kernels (log: $(VENV)/install.log)" \
	&& { $(PY) -m pip install --no-build-isolation -v -e ".[test,bench,train]" 2>&1 | tee $(VENV)/install.log \
		| $(BUILD_FILTER) || { tail -n 60 $(VENV)/install.log; \
		echo "install failed: full log in $(VENV)/install.log"; exit 1; }; } \
	&& $(PY) -c "import semask_kernels" \
	&& touch $(STAMP) \
	&& echo "== setup done in $$((SECONDS - start))s"

bench: setup
	$(PY) -m benchmarks compare-swin

test: setup
	@echo "== make test: the whole suite; about 20 minutes on 2 CPU cores without a GPU (16 CPU-minutes; GPU-only tests skip)"
	$(PY) -m pytest -q

info: setup
	$(PY) -m semask_kernels.info

# The same csrc/ sources as a Torch extension library, for C++ development.
cmake-build: setup
	cmake -S . -B build-cmake -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
		-DCMAKE_CUDA_ARCHITECTURES="$${CMAKE_CUDA_ARCHITECTURES:-90}"
	cmake --build build-cmake -j "$${MAX_JOBS:-2}"

clean:
	rm -rf build build-cmake *.egg-info semask_kernels/_C*.so
