# Two commands: `make demo` (train NormFace and ProxyDR on the synthetic taxonomy
# set and evaluate them) and `make test` (the test suite).  Both create .venv.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DIR ?= record/demo

.PHONY: demo test bench clean-demo

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(PYTHON) train.py --method normface --record_dir $(DEMO_DIR) --overwrite
	$(PYTHON) train.py --method DR --record_dir $(DEMO_DIR) --overwrite
	$(PYTHON) evaluate.py $(DEMO_DIR)

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q

bench: $(VENV)/.installed
	$(PYTHON) bench/bench_heads.py
	$(PYTHON) bench/bench_evaluate.py

clean-demo:
	rm -rf $(DEMO_DIR)
