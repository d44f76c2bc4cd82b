# Two commands: `make reproduce` (install + the embedded digits reproduction, end to end, rerun
# from scratch even where committed results exist, with the thread settings of the committed run)
# and `make test` (install + the test suite). Both create .venv on first use.
# bash: the test recipe reads PIPESTATUS
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install reproduce fashion test gpu-check clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The committed results/ were made by one-thread jobs (float reductions, hence the trained weights,
# depend on the thread count), so reproduce runs every job at one thread, as many at once as there
# are cores (coopvaebm and vae train side by side). On x86-64, NumPy/SciPy's OpenBLAS kernels are
# pinned to the ones the committed scores were computed with (Haswell; on an AVX-512 CPU OpenBLAS
# would pick SkylakeX, whose matrix square root and KID sums differ from ~1e-8 on; docs/workflows.md).
# Torch uses MKL/oneDNN, not OpenBLAS: training is unaffected. An OPENBLAS_CORETYPE already set wins.
ONE_THREAD := --set-threads prepare=1 classifier=1 train=1 sample=1 score=1 score_real=1 completion=1 \
	reconstruction=1 interpolation=1 trajectory=1 tables=1 check=1
BLAS_PIN := $(if $(filter x86_64,$(shell uname -m)),OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell})

reproduce: install
	$(BLAS_PIN) snakemake --cores all --forceall digits $(ONE_THREAD)

# Fashion-MNIST (docs/fashion-mnist.md; needs `apt-get install dataset-fashion-mnist`): the whole chain with the
# settings of the committed runs (one-thread jobs, as many at once as there are cores). Hours on a CPU; an
# interrupted run resumes from state/ (--rerun-incomplete). Not part of `make reproduce` or CI.
fashion: install
	$(BLAS_PIN) snakemake --cores all --rerun-incomplete fashion $(ONE_THREAD)

# The SLURM test (tests/test_slurm.py, a localhost cluster) spends most of its minutes waiting on the
# scheduler, so it runs beside the rest of the suite; its report follows the suite's, then the suite's
# summary again. Fails when either fails.
test: install
	@mkdir -p logs; \
	python -m pytest -q -ra tests/test_slurm.py >logs/test-slurm.log 2>&1 & slurm=$$!; \
	python -m pytest -q -ra --durations=12 --ignore=tests/test_slurm.py 2>&1 | tee logs/test-suite.log; \
	rc=$${PIPESTATUS[0]}; wait $$slurm; src=$$?; \
	echo "--- tests/test_slurm.py (ran beside the suite, exit $$src):"; cat logs/test-slurm.log; \
	echo "--- the suite (exit $$rc):"; tail -n 1 logs/test-suite.log; \
	exit $$(( rc != 0 ? rc : src ))

# On a CUDA machine, in ≤ 8 minutes: the CIFAR-10 chain on fixtures, then the benchmark at the paper
# configuration; tables in benchmarks/gpu_check/cuda.md. Installs nothing (GPU machines may be
# offline): PYTHON=... selects an interpreter with the packages. GPU_CHECK_ARGS="--device cpu": smoke.
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

clean-results:
	rm -rf results models data/prepared logs .snakemake
