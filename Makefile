# `make demo` (train NormFace and ProxyDR on the synthetic demo set, evaluate them,
# print them side by side), `make test` (the test suite) and `make reproduce`
# (the paper's grid on the synthetic benchmark at two difficulties, then
# docs/results_synthetic.md).  All create .venv.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DIR ?= record/demo
SEEDS ?= 1-5
GRID_FLAGS ?= --per_gpu 2
BENCH_DIR ?= record/synthetic_bench
HARD_DIR ?= record/synthetic_bench_hard
# The report of the paper's five seeds rewrites the tracked docs/results_synthetic.md, its figures and the
# README block; any other SEEDS writes them under record/ (a partial grid is not the project's finding).
ifeq ($(SEEDS),1-5)
REPORT_FLAGS ?= --out docs/results_synthetic.md --figures docs/figures --readme README.md
else
REPORT_FLAGS ?= --out record/results_synthetic_seeds$(SEEDS).md --figures record/figures_seeds$(SEEDS)
endif
DEMO_CAUTION = One seed on 15 classes shows the pipeline, not a finding: the findings come from make reproduce.

.PHONY: demo test bench reproduce clean-demo

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(PYTHON) train.py --method normface --record_dir $(DEMO_DIR) --overwrite
	$(PYTHON) train.py --method DR --record_dir $(DEMO_DIR) --overwrite
	$(PYTHON) evaluate.py $(DEMO_DIR) --quiet
	$(PYTHON) tools/compare.py $(DEMO_DIR)
	@echo "$(DEMO_CAUTION)"

# The grid, 5 seeds as in the paper, two runs at a time (grid.py skips finished runs,
# so a rerun resumes), the random-weights
# baseline (--epochs 0) of NormFace and ProxyDR, then the findings report.
reproduce: $(VENV)/.installed
	$(PYTHON) grid.py synthetic_bench --seeds $(SEEDS) $(GRID_FLAGS) --record_dir $(BENCH_DIR)
	$(PYTHON) grid.py synthetic_bench --seeds $(SEEDS) $(GRID_FLAGS) --record_dir $(BENCH_DIR) --only normface,DR --extra "--epochs 0" --evaluate
	$(PYTHON) grid.py synthetic_bench_hard --seeds $(SEEDS) $(GRID_FLAGS) --record_dir $(HARD_DIR)
	$(PYTHON) grid.py synthetic_bench_hard --seeds $(SEEDS) $(GRID_FLAGS) --record_dir $(HARD_DIR) --only normface,DR --extra "--epochs 0" --evaluate
	$(PYTHON) tools/results_synthetic.py $(BENCH_DIR) $(HARD_DIR) $(REPORT_FLAGS)

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q

bench: $(VENV)/.installed
	$(PYTHON) bench/bench_heads.py
	$(PYTHON) bench/bench_evaluate.py

clean-demo:
	rm -rf $(DEMO_DIR)
