"""The main job's driver: runs a framework's half, prints the joint table and draws the plots."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _png(path):
    data = open(path, "rb").read()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_run_demo_quick_det_writes_table_and_figures(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "demo", "run_demo.py"), "--output", str(out), "--quick", "--only", "det"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(out / "det" / "det_results.json") as f:
        det = json.load(f)
    report = (out / "results.md").read_text()
    # Every row of the table carries the numbers of the JSON the det half wrote.
    for key in ("AP", "APr", "APc", "APf"):
        a, b = det["stage1"][key], det["disalign"][key]
        assert f"| detectron2 (box) | {key} | {a:.1f} | {b:.1f} | {b - a:+.1f} |" in report
    assert "MMSegmentation" not in report
    assert len(det["alpha"]) == len(det["class_image_counts"])
    for name in ("calibration_vs_frequency.png", "groups_before_after.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # tools/compare_results.py's LVISEval on the predictions gives LVISEvaluator's numbers,
    # and one box AP per category.
    change = det["per_class_change"]
    assert change["figure"] == str(out / "det" / "per_class_change_det.png") and _png(
        change["figure"]
    )
    assert f"Figure: {change['figure']}" in proc.stdout
    with open(change["json"]) as f:
        compared = json.load(f)
    metrics = {r["metric"]: r for r in compared["metrics"]}
    for key in ("AP", "APr", "APc", "APf"):
        for stage in ("stage1", "disalign"):
            column = "stage1" if stage == "stage1" else "stage2"
            assert metrics[f"bbox/{key}"][column] == pytest.approx(det[stage][key], nan_ok=True)
    rows = compared["per_class"]["bbox/AP"]
    assert [r["count"] for r in rows] == det["class_image_counts"]
    assert [r["name"] for r in rows] == det["class_names"]


def test_run_demo_quick_cls_writes_table_and_figures(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "demo", "run_demo.py"), "--output", str(out), "--quick", "--only", "cls"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(out / "cls" / "cls_results.json") as f:
        cls = json.load(f)
    report = (out / "results.md").read_text()
    # Every row of the table carries the numbers of the JSON the cls half wrote.
    for key in ("top1", "many_top1", "medium_top1", "few_top1"):
        a, b = cls["stage1"][key], cls["disalign"][key]
        assert f"| MMPretrain (top-1) | {key} | {a:.1f} | {b:.1f} | {b - a:+.1f} |" in report
    assert "detectron2" not in report and "MMSegmentation" not in report
    assert len(cls["alpha"]) == len(cls["class_image_counts"]) == 16
    assert sorted(set(cls["groups"])) == ["few", "many", "medium"]
    for name in ("calibration_vs_frequency.png", "groups_before_after.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # tools/compare_results.py on the two test logs: one top-1 per class, whose mean is the
    # top-1 of the class-balanced test set.
    change = cls["per_class_change"]
    assert change["figure"] == str(out / "cls" / "per_class_change_cls.png") and _png(
        change["figure"]
    )
    with open(change["json"]) as f:
        rows = json.load(f)["per_class"]["accuracy/top1"]
    assert [r["count"] for r in rows] == cls["class_image_counts"]
    assert [r["group"] for r in rows] == cls["groups"]
    for stage, column in (("stage1", "stage1"), ("disalign", "stage2")):
        mean = sum(r[column] for r in rows) / len(rows)
        assert mean == pytest.approx(cls[stage]["top1"], abs=0.01)
