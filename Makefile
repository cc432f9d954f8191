# Two commands do all the set-up on a fresh machine (Debian, Python 3.11):
#   make demo   create .venv, install everything, replay the bundled sample bag, write the report
#   make test   create .venv, install everything, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q test

demo: $(STAMP)
	$(BIN)/python benchmarks/quality.py --quick

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) build *.egg-info
