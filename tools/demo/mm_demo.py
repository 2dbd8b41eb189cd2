"""What the MMSegmentation and MMPretrain halves of the demo share: the framework's stock
tools, run with the demo's environment, the test metrics they log, and the per-class picture
of tools/compare_results.py drawn from those logs."""

from __future__ import annotations

import glob
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The test runs' option that makes the long-tail metric log every class's value.
PER_CLASS_OPTION = "test_evaluator.per_class=True"


def mm_tool(package: str, name: str) -> str:
    """The stock ``tools/<name>`` an OpenMMLab package installs (``<package>/.mim/tools``)."""
    module = importlib.import_module(package)
    return os.path.join(os.path.dirname(module.__file__), ".mim", "tools", name)


class Runner:
    """Runs commands from the repository root with the data folder in ``data_env`` (what the
    tiny configs read), echoing each with its elapsed time and recording it."""

    def __init__(self, label: str, data_env: str, data_dir: str):
        self.label, self.data_env = label, data_env
        self.env = dict(os.environ, **{data_env: data_dir})
        self.env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
        self.commands: List[str] = []
        self.start = time.time()

    def __call__(self, step: str, args: list) -> None:
        cmd = [sys.executable] + args
        line = f"{self.data_env}={self.env[self.data_env]} " + shlex.join(cmd)
        self.commands.append(line)
        print(f"\n[{self.label} {time.time() - self.start:5.0f}s] {step}\n$ {line}", flush=True)
        subprocess.run(cmd, env=self.env, cwd=ROOT, check=True)


def schedule_options(n: int, scheduler: str) -> List[str]:
    """--cfg-options that set a tiny config's iteration count to ``n``; ``scheduler`` is the
    key of its LR schedule's ``end`` (``param_scheduler`` or ``param_scheduler.0``)."""
    return [
        f"train_cfg.max_iters={n}",
        f"train_cfg.val_interval={n}",
        f"{scheduler}.end={n}",
        f"default_hooks.checkpoint.interval={n}",
        f"default_hooks.logger.interval={max(10, n // 10)}",
    ]


def test_metrics(work_dir: str, keys: List[str], prefix: str = "") -> Dict[str, float]:
    """``{key: value}`` of the metrics mmengine's LoggerHook dumped after the test loop
    (logged as ``prefix + key``)."""
    logs = sorted(glob.glob(os.path.join(work_dir, "*", "*.json")))
    if not logs:
        raise FileNotFoundError(f"no test metrics under {work_dir}")
    with open(logs[-1]) as f:
        tag = json.loads(f.read().strip().splitlines()[-1])
    return {k: float(tag[prefix + k]) for k in keys}


def per_class_change(
    run: Runner, framework: str, out: str, test_dirs: List[str], frequencies: str, title: str
) -> Dict[str, str]:
    """Run tools/compare_results.py (the command a user runs) on the stage-1 and stage-2 test
    work dirs, whose logs hold the per-class values (``PER_CLASS_OPTION``); no model runs
    again. Writes ``per_class_change_<framework>.png`` and ``per_class_<framework>.json`` in
    ``out`` and returns their paths."""
    figure = os.path.join(out, f"per_class_change_{framework}.png")
    table = os.path.join(out, f"per_class_{framework}.json")
    run(
        "per-class change, DisAlign - stage 1, from the two test logs",
        ["tools/compare_results.py", "--framework", framework, "--stage1", test_dirs[0],
         "--stage2", test_dirs[1], "--frequencies", frequencies, "--plot", figure,
         "--json", table, "--title", title],
    )  # fmt: skip
    return {"figure": figure, "json": table}
