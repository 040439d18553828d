# Two commands do all the set-up on a fresh machine:
#   make article   # install the pipeline into .venv (Hugo included) and build the whole article
#   make test      # install that and the test tools (pytest, Playwright, Triton's interpreter
#                  # and compiler, Chromium) and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DOIT_ARGS ?=

.PHONY: article test serve bench clean
article: $(VENV)/.installed
	$(BIN)/doit $(DOIT_ARGS)

test: $(VENV)/.installed-test
	bash scripts/ensure-chromium
	$(BIN)/python -m pytest

serve: article
	$(BIN)/python -c "import pipeline.hugo as h; h.serve()"

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/build_speed.py

clean:
	$(BIN)/doit clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
