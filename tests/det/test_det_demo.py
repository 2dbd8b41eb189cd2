"""tools/demo/det_demo.py --quick writes det_results.json with the documented fields."""

import importlib.util
import json
import math
import os

from det_testing import REPO

DEMO = os.path.join(REPO, "tools", "demo", "det_demo.py")


def test_det_demo_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("det_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    returned = demo.main(["--output", str(tmp_path), "--quick"])
    with open(tmp_path / "det_results.json") as f:
        results = json.load(f)
    assert results == json.loads(json.dumps(returned))
    k = len(results["class_names"])
    assert k == len(results["class_image_counts"]) == len(results["alpha"]) == len(results["beta"])
    for stage in ("stage1", "disalign"):
        assert set(results[stage]) == {"AP", "APr", "APc", "APf"}
        assert all(math.isfinite(v) for v in results[stage].values())
    counts = results["class_image_counts"]
    assert min(counts) <= 10 and max(counts) > 100
    assert any(a != 0.0 for a in results["alpha"]) and any(b != 0.0 for b in results["beta"])
    assert len(results["commands"]) == 2 and all("train_net.py" in c for c in results["commands"])
    assert "disalign_faster_rcnn_tiny_synth.yaml" in results["commands"][1]
    assert results["seconds"] > 0
