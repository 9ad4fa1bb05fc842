# Fresh-machine entry points: `make demo` and `make test` each create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned and from pip (it may come from local files), then the package with its test extras.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,ray]"
	# Quantus (a test peer) asks for opencv-python, grad-cam for opencv-python-headless: both write cv2, so
	# Quantus comes without its dependencies and uses the headless build.
	$(BIN)/pip install -q --no-deps quantus==0.6.0
	$(BIN)/pip install -q cython && $(BIN)/pip install -q --no-build-isolation fast-slic || \
		echo "fast-slic could not be built: the fast SLIC backend is skipped"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spixel demo --out demo_out
	@echo "open demo_out/index.html"

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/attribution.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
