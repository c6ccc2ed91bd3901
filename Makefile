# Two commands on a fresh machine (see README.md):
#   make demo   # install, then detect faces in a real clip: summary table + out/faces.parquet
#   make test   # install, then run the test suite
SHARED ?= ../shared
VENV   ?= .venv
PY      = $(VENV)/bin/python
export REKOLAB_MODEL_DIR ?= $(abspath $(SHARED)/models)
export REKOLAB_SHARED    ?= $(abspath $(SHARED))

.PHONY: demo test install bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -e '.[all,test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/rekolab faces $(SHARED)/media/video/short_hamilton_clip.mp4 --attributes ALL -o out/faces.parquet

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) bench/bench_ops.py --out BENCHMARKS.md
