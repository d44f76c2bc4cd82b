# Two commands: `make reproduce` (install + the embedded digits reproduction, end to end, rerun
# from scratch even where committed results exist)
# and `make test` (install + the test suite). Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install reproduce test gpu-check clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

reproduce: install
	snakemake --cores all --forceall digits

test: install
	python -m pytest -q -ra --durations=12

# On a CUDA machine, in ≤ 8 minutes: the CIFAR-10 chain on fixtures, then the benchmark at the paper
# configuration; tables in benchmarks/gpu_check/cuda.md. Installs nothing (GPU machines may be
# offline): PYTHON=... selects an interpreter with the packages. GPU_CHECK_ARGS="--device cpu": smoke.
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

clean-results:
	rm -rf results models data/prepared logs .snakemake
