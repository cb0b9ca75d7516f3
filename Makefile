# Fresh-machine entry points (see README): `make demo` sets everything up and runs the demo,
# `make test` sets everything up and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of this torch lies on the development machines' disk; override elsewhere.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: system setup native demo test bench docs

# GStreamer, PyGObject's build headers and the build tools (Debian/Ubuntu; installs what is missing)
system:
	scripts/system_packages.sh

$(BIN)/asl-edge: pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/asl-edge

# The CPU torch ops (CMake against the venv's torch; incremental after the first build).
native: setup
	$(BIN)/asl-edge build-ext --jobs 2

demo: setup
	$(BIN)/asl-edge demo

# pytest exits 5 when it collects no tests: here that is a failure, said as such.
test: native
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

bench: native
	mkdir -p out
	$(BIN)/python benchmarks/bench_ops.py --out out/bench_ops.json
	$(BIN)/python benchmarks/bench_export.py --out out/bench_export.json
	$(BIN)/python benchmarks/bench_train.py --iteration --out out/bench_train.json

# The docs site (MkDocs + Material; API pages from the docstrings): site/index.html. --strict
# turns a broken link, anchor or a page missing from the nav into a failure.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
