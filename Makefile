# Two commands: `make reproduce` (install + the embedded digits reproduction, end to end, rerun
# from scratch even where committed results exist)
# and `make test` (install + the test suite). Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install reproduce test clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

reproduce: install
	snakemake --cores all --forceall digits

test: install
	python -m pytest -q -ra

clean-results:
	rm -rf results models data/prepared logs .snakemake
