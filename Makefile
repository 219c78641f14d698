# The README's commands. Each one first runs the idempotent set-up.
PYTHON ?= python3

.PHONY: install test demo bench gpu-check

install:
	PYTHON=$(PYTHON) bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests -q -rs

demo:  # tools/run_demo.sh runs the set-up itself
	PYTHON=$(PYTHON) bash tools/run_demo.sh

bench: install
	$(PYTHON) tools/benchmark_op.py --device cpu

gpu-check:
	bash tools/gpu_check.sh
