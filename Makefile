# srha_hf: `make demo` (install, then train + evaluate on the embedded synthetic benchmark) and
# `make test` (install into .venv if needed, then ruff and the offline CPU test suite; `make test-fast` is its unit lane). The demo installs
# the package alone; the tests add the [test], [app] (gradio, for the browser test of scripts/app.py), [robustness] and [timm] extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# accelerate launch would give the demo's one process a single thread (OMP_NUM_THREADS=1) on a machine
# without a GPU: every core instead
NPROC ?= $(shell nproc 2>/dev/null || echo 1)
CORE_STAMP := $(VENV)/.srha_core_installed
STAMP := $(VENV)/.srha_installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast wheel-check bench clean

# The package and what it needs to run (enough for the demo) ...
$(CORE_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(CORE_STAMP)

# ... then the test, app, robustness and timm extras (pytest, ruff, onnx, selenium, cityscapesscripts, gradio,
# imagecorruptions-imaug, timm).
$(STAMP): $(CORE_STAMP)
	$(PY) -m pip install --quiet -e '.[test,app,robustness,timm]'
	touch $(STAMP)

# and transformers' common model tests from the sdist of the installed transformers (into
# $(VENV)/transformers_common_tests/; tests/transformers_common/fetch.py): on every install, fetched anew only
# when the installed transformers (or our stand-in modules) changed since, a no-op otherwise
install: $(STAMP)
	$(PY) tests/transformers_common/fetch.py

demo: $(CORE_STAMP)
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		--num_cpu_threads_per_process $(NPROC) scripts/train.py --config configs/demo.yaml

test: install
	$(VENV)/bin/ruff check srha_hf scripts tests benchmarks experiments
	$(PY) -m pytest -q

# The unit lane, to run while working: tests/ without the subprocess (slow) and whole-tool (integration) tests.
test-fast: install
	$(VENV)/bin/ruff check srha_hf scripts tests benchmarks experiments
	$(PY) -m pytest -q -m "not slow and not integration" tests

# The package as installed from a wheel, away from the source tree (also run by .ci/run).
wheel-check:
	bash .ci/wheel_check.sh

# the timing scripts, as modules from the repository root (benchmarks/README.md); GPU ones say so on a CPU
bench: install
	for script in benchmarks/bench_*.py; do module=$$(basename $$script .py); echo "== benchmarks.$$module"; $(PY) -m benchmarks.$$module || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache outputs/demo
