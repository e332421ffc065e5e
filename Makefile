# mobile-bert-distill — `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MBD    := $(VENV)/bin/mbd
STAMP  := $(VENV)/.installed

.PHONY: venv install test test-fast demo demo-tiny clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

# End-to-end demo on the built-in tiny configuration (no network needed).
demo: $(STAMP)
	$(PY) -m mobile_bert_distill.demo --out demo_out

clean:
	rm -rf demo_out out bench .pytest_cache
