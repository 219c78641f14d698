# The README's commands. Each one first runs the idempotent set-up.
PYTHON ?= python3

.PHONY: install test bench gpu-check

install:
	PYTHON=$(PYTHON) bash tools/install.sh

test: install
	$(PYTHON) -m pytest tests -q -rs

bench: install
	$(PYTHON) tools/benchmark_op.py --device cpu

gpu-check:
	bash tools/gpu_check.sh
