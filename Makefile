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

$(VENV)/.installed: pyproject.toml scripts/install.py
	$(PYTHON) scripts/install.py $(VENV)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PYTHON) scripts/install.py $(VENV) test
	touch $@
