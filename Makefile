# srha_hf: `make demo` (install, then train + evaluate on the embedded synthetic benchmark) and
# `make test` (install into .venv if needed, then ruff and the offline CPU test suite). The install has
# the [app] extra (gradio) so that the suite's browser test of scripts/app.py runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.srha_installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test wheel-check bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,app]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		scripts/train.py --config configs/demo.yaml

test: install
	$(VENV)/bin/ruff check srha_hf scripts tests benchmarks
	$(PY) -m pytest -q

# The package as installed from a wheel, away from the source tree (also run by .ci/run).
wheel-check:
	bash .ci/wheel_check.sh

bench: install
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache outputs/demo
