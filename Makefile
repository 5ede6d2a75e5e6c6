# The two README commands, `make demo` and `make test`, create or update .venv themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install constraints demo test test-fast lint format bench bench-1m bench-engines bench-personas bench-workers soak clean

# constraints.txt pins every package to the versions the tests last passed with (`make
# constraints` refreshes it from .venv).
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first, as the CPU build: anything else pulls gigabytes of CUDA packages.
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e '.[local,tui,test,ray]'
	touch $(STAMP)

install: $(STAMP)

# After upgrading packages in .venv (and `make test` passing): pin what is installed now.
# torch stays at $(TORCH), the version the install step puts first (its freeze line names the
# local CPU build, +cpu, which only the CPU wheel index has).
constraints:
	test -x $(PY)
	{ echo '# pip constraints for `make install`: made by `make constraints` from .venv; do not edit.'; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==.*/$(TORCH)/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

demo: $(STAMP)
	$(PY) -m personaloom.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/layers.py imports
	$(PY) tools/layers.py types
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration"

# ruff, the import contracts in pyproject.toml and mypy (tools/layers.py).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/layers.py imports
	$(PY) tools/layers.py types

# Every bench/*.py with a main(): tables on stdout, JSON in bench/results/ (docs/benchmarks.md).
bench: $(STAMP)
	$(PY) bench/run_all.py

# The near-duplicate check at 1M stored vectors: filling the store alone takes longer than
# all of `make bench`, so it has its own target.
bench-1m: $(STAMP)
	$(PY) bench/novelty_scale.py --sizes 10000,100000,1000000

# 5,000 samples in one run: memory, file sizes and time per sample from start to end
# (docs/benchmarks.md#soak). Longer than CI wants; not part of `make bench` either.
soak: $(STAMP)
	$(PY) bench/soak.py --samples 5000
# The streaming engine against the batch engine, side by side (docs/benchmarks.md#engines):
# fixed and long-tailed 200 ms endpoints, MiniLM-bound, CPU per sample. About 10 minutes.
bench-engines: $(STAMP)
	$(PY) bench/engines.py

# Ray workers against one process, Ray's start-up and memory, a simulated two-node cluster
# (docs/benchmarks.md#workers). About 3 minutes.
bench-workers: $(STAMP)
	$(PY) bench/workers.py

# Persona quality before and after the persona gate, on the embedded model: two runs of 20
# samples, 15 to 60 minutes on 2 shared cores (docs/benchmarks.md).
bench-personas: $(STAMP)
	$(PY) bench/persona_quality.py

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info
