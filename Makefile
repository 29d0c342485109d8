# Two commands matter: `make serve` and `make test`. Both install what they need first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export SCARF_NO_ANALYTICS := true
export DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser serve test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	$(BIN)/pip install -q --disable-pip-version-check --no-deps unstructured-inference==1.6.14
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/cairn serve

# the web UI's end-to-end tests drive Debian's Chromium (no browser downloads on these machines)
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install browser
	$(BIN)/python -m pytest -p no:cacheprovider --durations=15

lint: install
	$(BIN)/ruff check core ingestion retrieval orchestration app tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/search.py

clean:
	rm -rf $(VENV) var
