# LoaPhuong: `make run` brings the whole system up locally; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test deps test-deps venv bench clean docs

run: deps $(STAMP)
	$(PY) scripts/run.py

test: test-deps $(STAMP)
	$(PY) -m pytest

deps:
	@scripts/install-deps.sh

test-deps:
	@WITH_CHROMIUM=1 scripts/install-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

docs: $(STAMP)
	$(PY) scripts/gen_protocol_docs.py

bench: deps $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var instance .pytest_cache
