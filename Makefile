# The project's commands. Each one creates the environment first when it is missing
# (tools/setup_env.sh; a no-op when .venv already matches requirements/pins.txt).
PY := .venv/bin/python
OUT ?= output/demo

.PHONY: setup demo test bench full-size lint clean

setup:
	bash tools/setup_env.sh

# The main job: stage 1 and DisAlign stage 2 with detectron2 and MMSegmentation on built-in data.
demo: setup
	$(PY) tools/demo/run_demo.py --output $(OUT)

# The whole test suite.
test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=15

# Speed/memory and post-hoc-baseline benchmarks (ratios measured in one run).
bench: setup
	$(PY) benchmarks/run_all.py

# Every shipped LVIS, ADE20K and classification config family at full size on generated data
# (hours on 2 CPU cores): stage 1 -> checkpoint -> stage 2 -> the config's evaluator, plus
# stage-2 cost.
full-size: setup
	$(PY) benchmarks/full_size_configs.py --out output/full_size

# Formatting and lint (black, isort, ruff; settings in pyproject.toml). CI runs it.
lint: setup
	$(PY) -m black --check --quiet .
	$(PY) -m isort --check-only --quiet .
	$(PY) -m ruff check --quiet .

clean:
	rm -rf output work_dirs
