"""benchmarks/plot_sweeps.py: which rows the results table picks, and that it draws."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import plot_sweeps  # noqa: E402


def _run(method, tail, overall, **kw):
    run = dict(method=method, init=None, data="train", rho=None, lr=None, tau=None)
    run.update(kw, metrics={"tail": tail, "all": overall})
    return run


SWEEP = {
    "part": "cls",
    "tail_metric": "tail",
    "overall_metric": "all",
    "paper_rho": 1.2,
    "default_lr": 0.1,
    "stage1": {"metrics": {"tail": 5.0, "all": 50.0}},
    "runs": [
        _run("disalign", 20.0, 60.0, init="zero", rho=1.2, lr=0.1),  # the paper's recipe
        _run("disalign", 30.0, 62.0, init="zero", rho=1.0, lr=0.1),
        _run("disalign", 40.0, 45.0, init="zero", rho=2.0, lr=0.1),  # below stage 1 overall
        _run("logit_adjustment", 25.0, 61.0, tau=1.0),
        _run("logit_adjustment", 35.0, 51.0, tau=1.5),
        _run("logit_adjustment", 60.0, 40.0, tau=2.0),  # below stage 1 overall
        _run("tau_norm", 10.0, 49.0, tau=1.0),  # below stage 1 overall: no row
    ],
}


def test_best_rows_keep_overall_accuracy_and_the_plot_is_drawn(tmp_path):
    lines = plot_sweeps.table(SWEEP).splitlines()
    names = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert names == [
        "stage 1",
        "DisAlign, paper recipe (ρ=1.2)",
        "best DisAlign option: DisAlign, zero start, train data, ρ=1",
        "logit adjustment τ=1",
        "best logit adjustment τ=1.5",
    ]
    assert "| 30.0 (+25.0) |" in lines[4]
    with open(tmp_path / "cls_sweep.json", "w") as f:
        json.dump(SWEEP, f)
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "benchmarks", "plot_sweeps.py"),
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "cls_sweep.png").stat().st_size > 10_000
    assert "best logit adjustment τ=1.5" in out.stdout
