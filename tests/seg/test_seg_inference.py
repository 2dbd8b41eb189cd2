"""Seeing a DisAlign stage-2 model's predictions with mmseg's own tools: ``tools/test.py
--show-dir`` paints every validation image, and ``mmseg.apis.init_model`` /
``inference_model`` / ``show_result_pyplot`` take the stage-2 config and checkpoint as they are.
The checkpoint comes from a two-iteration stage 2 run by the stock ``tools/train.py``."""

import glob
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.apis import inference_model, init_model, show_result_pyplot
from mmseg.registry import MODELS
from PIL import Image
from seg_testing import MMSEG_TOOLS, REPO, run_tool

from disalign_core import write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic
from disalign_seg import DisAlignEncoderDecoder

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
STAGE1 = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")
NUM_VAL = 3


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """(data root, class names, stage-2 checkpoint) from mmseg's stock tools/train.py."""
    tmp = tmp_path_factory.mktemp("seg_inference")
    root = str(tmp / "data")
    spec = SyntheticLongTailSpec(num_train=4, num_val=NUM_VAL, tail_train_images=1)
    meta = generate_ade20k_synthetic(root, spec, seed=4)
    counts = [100.0 - i for i in range(spec.num_classes)]
    write_class_frequencies(os.path.join(root, "pixel_frequencies.json"), counts, meta["classes"])
    init_default_scope("mmseg")  # a module fixture runs before conftest's per-test scope
    os.environ["DISALIGN_SEG_DATA"] = root  # Config.fromfile reads it
    try:
        stage1 = MODELS.build(Config.fromfile(STAGE1).model)
    finally:
        del os.environ["DISALIGN_SEG_DATA"]
    ckpt1 = str(tmp / "stage1.pth")
    torch.save({"state_dict": stage1.state_dict(), "meta": {}}, ckpt1)
    work = tmp / "stage2"
    run_tool(
        [os.path.join(MMSEG_TOOLS, "train.py"), STAGE2, "--work-dir", str(work), "--cfg-options"]
        + [f"model.stage1_checkpoint={ckpt1}", "train_cfg.max_iters=2", "train_cfg.val_interval=2"]
        + ["param_scheduler.0.end=2", "default_hooks.checkpoint.interval=2"]
        + ["train_dataloader.batch_size=2"],
        env=dict(DISALIGN_SEG_DATA=root),
    )
    return root, meta["classes"], str(work / "iter_2.pth")


def test_stock_test_script_paints_the_predictions(stage2, tmp_path):
    root, _, ckpt = stage2
    show = tmp_path / "show"
    out = run_tool(
        [os.path.join(MMSEG_TOOLS, "test.py"), STAGE2, ckpt, "--show-dir", str(show)]
        + ["--work-dir", str(tmp_path / "work")]
        # mmseg's SegVisualizationHook paints every 50th batch unless told otherwise.
        + ["--cfg-options", "default_hooks.visualization.interval=1"],
        env=dict(DISALIGN_SEG_DATA=root),
    )
    assert "mIoU" in out
    painted = sorted(glob.glob(str(show / "vis_data" / "vis_image" / "*.png")))
    assert len(painted) == NUM_VAL, painted
    w, h = Image.open(painted[0]).size
    assert (w, h) == (2 * 64, 64)  # ground truth and prediction side by side


def test_inference_api_with_the_stage2_config(stage2, tmp_path, monkeypatch):
    root, classes, ckpt = stage2
    monkeypatch.setenv("DISALIGN_SEG_DATA", root)
    model = init_model(STAGE2, ckpt, device="cpu")
    assert isinstance(model, DisAlignEncoderDecoder)
    assert list(model.dataset_meta["classes"]) == list(classes)  # from the checkpoint's meta
    # The stage-2 checkpoint's calibration, not the identity start, is what predicts.
    assert torch.count_nonzero(model.decode_head.calibration.beta) > 0
    img = os.path.join(root, "images", "validation", "v00000.jpg")
    result = inference_model(model, img)
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, 64, 64)
    assert 0 <= int(labels.min()) and int(labels.max()) < len(classes)
    assert tuple(result.seg_logits.data.shape) == (len(classes), 64, 64)
    # The same image as an array (BGR, as mmcv reads it) gives the same prediction.
    again = inference_model(model, np.asarray(Image.open(img))[..., ::-1].copy())
    assert torch.equal(again.pred_sem_seg.data, labels)
    out_file = tmp_path / "painted.png"
    show_result_pyplot(model, img, result, show=False, out_file=str(out_file), draw_gt=False)
    assert out_file.stat().st_size > 0
