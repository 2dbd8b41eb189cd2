# The project's commands. Each one creates the environment first when it is missing
# (tools/setup_env.sh; a no-op when .venv already matches requirements/pins.txt).
PY := .venv/bin/python
OUT ?= output/demo

.PHONY: setup demo test bench lint clean

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

clean:
	rm -rf output work_dirs
