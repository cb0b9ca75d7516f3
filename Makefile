# Fresh-machine entry points (see README): `make demo` sets everything up and runs the demo,
# `make test` sets everything up and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of this torch lies on the development machines' disk; override elsewhere.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test bench

$(BIN)/asl-edge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/asl-edge

demo: setup
	$(BIN)/asl-edge demo

# pytest exits 5 when it collects no tests: here that is a failure, said as such.
test: setup
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

bench: setup
	$(BIN)/python benchmarks/bench_forward.py --out out/bench_forward.json
