# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint install clean-run lock

run: $(STAMP)
	$(PY) -m pipeline run $(ARGS)

# One worker per core (at most 4: each holds its own TensorFlow). Each test file stays in one
# worker, and files sharing a costly session fixture too (tests/conftest.py groups them), so
# shared pipeline runs are built once. PYTEST_ARGS="-n 0" runs in this process.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# Quick iterations: ruff and the `unit` layer only (no pipeline run; under 2 minutes on 2 cores).
# `make test` stays the whole suite; tests/README.md describes the layers.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadgroup -m unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

install: $(STAMP)

# One stamp per lock: the venv is rebuilt only when the pinned set changes.
$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || exit 1; \
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)" || exit 1; \
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements/lock.txt || exit 1; \
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python -r requirements/nodeps.txt || exit 1; \
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e . || exit 1; \
	echo "install: .venv ready in $$(( $$(date +%s) - start ))s"
	@touch $@

# Re-resolve the lock (needs the package registry; takes seconds with uv).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements/base.in --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_36 -o requirements/lock.txt --no-header --annotation-style line

clean-run:
	rm -rf tfx_root serving_model
