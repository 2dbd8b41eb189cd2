"""End to end through projects/DisAlign/train_net.py on CPU: stage 1, DisAlign stage 2 from its
checkpoint, LVIS evaluation, resume of an interrupted stage 2, and a two-process stage 2."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.engine import HookBase

from disalign_core import grw_class_weights

from det_testing import NUM_CLASSES, REPO, TRAIN, VAL

TRAIN_NET = os.path.join(REPO, "projects", "DisAlign", "train_net.py")
Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")


def load_train_net():
    spec = importlib.util.spec_from_file_location("disalign_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net = load_train_net()


def common_opts(output_dir, max_iter, test=True):
    return [
        "DATASETS.TRAIN", f"('{TRAIN}',)",
        "DATASETS.TEST", f"('{VAL}',)" if test else "()",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "TEST.DETECTIONS_PER_IMAGE", "20",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.IMS_PER_BATCH", "4",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip


def run(argv):
    return train_net.main(train_net.argument_parser().parse_args(argv))


@pytest.fixture(scope="module")
def stage1(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    results = run(["--config-file", STAGE1_CFG, *common_opts(out, 6)])
    return out, results


def lvis_metrics_ok(results):
    assert set(results) >= {"bbox", "segm"}
    for task in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            v = results[task][k]
            assert isinstance(v, float) and 0.0 <= v <= 100.0, (task, k, v)


def test_stage1_then_disalign_stage2(stage1, synth_dataset, tmp_path):
    out1, res1 = stage1
    lvis_metrics_ok(res1)
    out2 = tmp_path / "stage2"
    res2 = run(["--config-file", STAGE2_CFG, *common_opts(out2, 4),
                "MODEL.WEIGHTS", str(out1 / "model_final.pth")])  # fmt: skip
    lvis_metrics_ok(res2)

    s1 = torch.load(out1 / "model_final.pth", weights_only=False)["model"]
    s2 = torch.load(out2 / "model_final.pth", weights_only=False)["model"]
    calib = [k for k in s2 if ".calibration." in k]
    assert calib and not any(k in s1 for k in calib)
    assert any(s2[k].abs().sum() > 0 for k in calib if k.endswith((".alpha", ".beta")))
    # everything from stage 1, BatchNorm statistics included, is bitwise unchanged
    assert set(s1) == set(s2) - set(calib)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)

    # --eval-only of the stage-2 checkpoint reproduces the evaluation at the end of training
    res_eval = run(
        ["--eval-only", "--config-file", STAGE2_CFG, *common_opts(tmp_path / "eval", 4),
         "MODEL.WEIGHTS", str(out2 / "model_final.pth")]
    )  # fmt: skip
    assert res_eval["bbox"] == res2["bbox"]

    with open(out2 / "class_weights_rank0.json") as f:
        weights = json.load(f)["roi_heads.box_predictor"]
    assert weights == grw_class_weights(synth_dataset["train_image_counts"], 0.8).tolist()


class _Interrupt(HookBase):
    def before_step(self):
        if self.trainer.iter == 2:
            raise KeyboardInterrupt("simulated interruption at iteration 2")


class _FirstIteration(HookBase):
    first = []

    def before_step(self):
        if not _FirstIteration.first:
            _FirstIteration.first.append(self.trainer.iter)


def test_resume_of_interrupted_stage2(stage1, tmp_path, monkeypatch):
    out1, _ = stage1
    out = tmp_path / "stage2"
    argv = ["--config-file", STAGE2_CFG, *common_opts(out, 4, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"), "SOLVER.CHECKPOINT_PERIOD", "2"]  # fmt: skip
    build_hooks = train_net.Trainer.build_hooks
    monkeypatch.setattr(
        train_net.Trainer, "build_hooks", lambda self: build_hooks(self) + [_Interrupt()]
    )
    with pytest.raises(KeyboardInterrupt):
        run(argv)
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.pth"
    assert not (out / "model_final.pth").exists()

    _FirstIteration.first.clear()
    monkeypatch.setattr(
        train_net.Trainer, "build_hooks", lambda self: build_hooks(self) + [_FirstIteration()]
    )
    run(["--resume", *argv])
    assert _FirstIteration.first == [2]  # continued after the last checkpoint, not from 0
    final = torch.load(out / "model_final.pth", weights_only=False)
    assert final["iteration"] == 3
    interrupted = torch.load(out / "model_0000001.pth", weights_only=False)["model"]
    beta = "roi_heads.box_predictor.calibration.beta"
    assert not torch.equal(final["model"][beta], interrupted[beta])  # it trained on


def test_two_processes_identical_class_weights(stage1, synth_dataset, tmp_path):
    out1, _ = stage1
    out = tmp_path / "ddp"
    info = synth_dataset
    cmd = [
        sys.executable, TRAIN_NET, "--num-gpus", "2", "--dist-url", "auto",
        "--register", TRAIN, info["train_json"], info["image_root"],
        "--config-file", STAGE2_CFG, *common_opts(out, 2, test=False),
        "MODEL.WEIGHTS", str(out1 / "model_final.pth"),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO] + sys.path))
    proc = subprocess.run(
        cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"class_weights_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    expected = grw_class_weights(info["train_image_counts"], 0.8).tolist()
    assert ranks[0]["roi_heads.box_predictor"] == expected
    assert (out / "model_final.pth").exists()


def test_stage2_refuses_checkpoint_of_other_class_count(stage1, tmp_path):
    out1, _ = stage1
    argv = ["--config-file", STAGE2_CFG, *common_opts(tmp_path, 2, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"),
            "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES + 1), "MODEL.DISALIGN.REWEIGHT", "False"]  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"cls_score.weight has shape \(13, 128\) in the checkpoint but \(14, 128\)",
    ):
        run(argv)
