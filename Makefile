# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint lint-cypher bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# `run` exits 3 when it quarantined documents and 6 when some failed: the demo shows both as results.
demo: install
	@$(BIN)/extractor run examples/docs; rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 3 ] && [ $$rc -ne 6 ]; then exit $$rc; fi

test: install
	$(BIN)/python -m pytest -q

# Every gate, each reported even when an earlier one fails; .ci/run runs it before `make test`.
lint: install
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	$(BIN)/lint-imports || status=1; \
	exit $$status

# Neo4j's own Cypher linter over every statement the Neo4j store sends (the same check runs in `make test`
# when node and npm are there; here their absence is an error, not a skip).
lint-cypher: install
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "lint-cypher needs node and npm (apt-get install nodejs npm)" >&2; exit 2; }
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/graph/test_cypher_lint.py

# Every benchmark at its documented size (long: see docs/benchmarks.md); bench-quick runs each at a small size.
bench: install
	$(BIN)/python -m benchmarks

bench-quick: install
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
