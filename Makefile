# semsynth: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv when missing and install torch, torchvision and semsynth with its dev extras (pip).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.semsynth-installed
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo demo-train test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing $(TORCH) and semsynth[dev] into $(VENV) (pip)"
	@$(PY) -m pip install -q --disable-pip-version-check $(TORCH) 2>&1 | grep -v "is ignored" || true
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import torch, torchvision, semsynth" || { echo "install failed"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m semsynth demo $(DEMO_ARGS)

demo-train: $(STAMP)
	$(PY) -m semsynth demo --train $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(TEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_scc.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
