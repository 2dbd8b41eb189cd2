"""Seeing a DisAlign stage-2 classifier's predictions with MMPretrain's own tools:
``tools/test.py --show-dir`` paints the test images with their predicted class, and
``mmpretrain.apis.ImageClassificationInferencer`` takes the stage-2 config and checkpoint as
they are. The checkpoint comes from a two-iteration stage 2 run by the stock
``tools/train.py``."""

import glob
import os

import pytest
import torch
from cls_testing import MMPRETRAIN_TOOLS, TINY, run_tool
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.registry import MODELS

from disalign_cls import DisAlignImageClassifier
from disalign_demo.cls import generate_cls_synthetic

STAGE1 = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
NUM_CLASSES = 16


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """(data root, stage-2 checkpoint) from MMPretrain's stock tools/train.py."""
    tmp = tmp_path_factory.mktemp("cls_inference")
    root = str(tmp / "data")
    generate_cls_synthetic(root, seed=2, test_per_class=1)
    init_default_scope("mmpretrain")  # a module fixture runs before conftest's per-test scope
    os.environ["DISALIGN_CLS_DATA"] = root  # Config.fromfile reads it
    try:
        stage1 = MODELS.build(Config.fromfile(STAGE1).model)
    finally:
        del os.environ["DISALIGN_CLS_DATA"]
    ckpt1 = str(tmp / "stage1.pth")
    torch.save({"state_dict": stage1.state_dict(), "meta": {}}, ckpt1)
    work = tmp / "stage2"
    run_tool(
        [os.path.join(MMPRETRAIN_TOOLS, "train.py"), STAGE2, "--work-dir", str(work)]
        + ["--cfg-options", f"model.stage1_checkpoint={ckpt1}", "train_cfg.max_iters=2"]
        + ["train_cfg.val_interval=2", "param_scheduler.end=2"]
        + ["default_hooks.checkpoint.interval=2", "train_dataloader.batch_size=8"],
        env=dict(DISALIGN_CLS_DATA=root),
    )
    return root, str(work / "iter_2.pth")


def test_stock_test_script_paints_the_predictions(stage2, tmp_path):
    root, ckpt = stage2
    show = tmp_path / "show"
    out = run_tool(
        [os.path.join(MMPRETRAIN_TOOLS, "test.py"), STAGE2, ckpt, "--show-dir", str(show)]
        + ["--work-dir", str(tmp_path / "work")],
        env=dict(DISALIGN_CLS_DATA=root),
    )
    assert "accuracy/top1" in out
    painted = glob.glob(str(show / "**" / "*.png"), recursive=True)
    assert len(painted) == NUM_CLASSES, painted  # one test image per class


def test_inferencer_with_the_stage2_config(stage2, tmp_path, monkeypatch):
    root, ckpt = stage2
    monkeypatch.setenv("DISALIGN_CLS_DATA", root)
    inferencer = ImageClassificationInferencer(STAGE2, pretrained=ckpt, device="cpu")
    assert isinstance(inferencer.model, DisAlignImageClassifier)
    # The stage-2 checkpoint's calibration, not the identity start, is what predicts.
    assert torch.count_nonzero(inferencer.model.head.calibration.beta) > 0
    images = sorted(glob.glob(os.path.join(root, "test", "*.png")))[:2]
    show = tmp_path / "show"
    results = inferencer(images, show_dir=str(show))
    assert len(results) == 2
    for r in results:
        assert 0 <= r["pred_label"] < NUM_CLASSES
        assert len(r["pred_scores"]) == NUM_CLASSES
        assert abs(float(sum(r["pred_scores"])) - 1.0) < 1e-4
        assert r["pred_score"] == pytest.approx(float(max(r["pred_scores"])))
    assert len(glob.glob(str(show / "*.png"))) == 2
