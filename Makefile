# Fresh-machine entry points (see README.md):
#   make bench   the main job: stock timm Swin vs the patched model (GPU if present, else the CPU fallback)
#   make test    the test suite (Triton kernels under the interpreter when there is no GPU)
# Both create .venv, install torch and the package into it, then run.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup bench test cmake-build info clean

setup: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "setuptools>=64" wheel ninja
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install --no-build-isolation -v -e ".[test,bench,train]" > $(VENV)/install.log 2>&1 \
		|| (tail -n 60 $(VENV)/install.log; echo "install failed: full log in $(VENV)/install.log"; exit 1)
	grep -h "\[semask-kernels\]" $(VENV)/install.log || true
	$(PY) -c "import semask_kernels"
	touch $(STAMP)

bench: setup
	$(PY) -m benchmarks compare-swin

test: setup
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
