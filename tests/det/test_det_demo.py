"""tools/demo/det_demo.py --quick writes det_results.json with the documented fields."""

import json
import math
import os
import subprocess
import sys

from det_testing import REPO

DEMO = os.path.join(REPO, "tools", "demo", "det_demo.py")


def test_det_demo_quick(tmp_path):
    proc = subprocess.run(
        [sys.executable, DEMO, "--output", str(tmp_path), "--quick"],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "det_results.json") as f:
        results = json.load(f)
    # the table it prints is the json's
    for name, key in (("stage 1", "stage1"), ("DisAlign", "disalign")):
        row = f"{name:10s}" + "".join(
            f"{results[key][m]:8.2f}" for m in ("AP", "APr", "APc", "APf")
        )
        assert row in proc.stdout.splitlines()
    k = len(results["class_names"])
    assert k == len(results["class_image_counts"]) == len(results["alpha"]) == len(results["beta"])
    for stage in ("stage1", "disalign"):
        assert set(results[stage]) == {"AP", "APr", "APc", "APf"}
        assert all(math.isfinite(v) for v in results[stage].values())
    counts = results["class_image_counts"]
    assert min(counts) <= 10 and max(counts) > 100
    assert any(a != 0.0 for a in results["alpha"]) and any(b != 0.0 for b in results["beta"])
    commands = results["commands"]
    # stage 1, stage 2 (train_net.py), then the per-class comparison (tools/compare_results.py)
    assert len(commands) == 3 and all("train_net.py --demo --register" in c for c in commands[:2])
    assert "disalign_faster_rcnn_tiny_synth.yaml" in commands[1]
    assert "compare_results.py --framework det" in commands[2]
    assert results["seconds"] > 0
