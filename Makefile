# Two commands do all the set-up on a fresh machine:
#   make article   # install everything into .venv (Hugo included) and build the whole article
#   make test      # install everything (Chromium too) and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DOIT_ARGS ?=

.PHONY: article test serve bench clean
article: $(VENV)/.installed
	$(BIN)/doit $(DOIT_ARGS)

test: $(VENV)/.installed
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
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
