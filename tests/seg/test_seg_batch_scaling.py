"""Stage 2 on fewer processes than the recipe's batch: a plain single-process run of mmseg's own
``tools/train.py`` with the shipped ADE20K stage-2 settings (``auto_scale_lr`` base 32,
``DisAlignBatchSizeHook``) on the tiny stage-2 model trains at the linearly scaled LR and says
so at start; with the scaling switched off it keeps the LR and warns."""

import json
import logging
import os
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from seg_testing import MMSEG_TOOLS, REPO, run_tool

from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic

SHIPPED = os.path.join(REPO, "configs", "mmseg", "disalign_fcn_r50-d8_8xb4-8k_ade20k-512x512.py")
TINY = os.path.join(
    REPO, "configs", "mmseg", "tiny", "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"
)
PER_PROCESS = 2


def _config(tmp_path):
    """The tiny stage-2 config with the shipped stage-2 batch settings (read from the shipped
    config, not copied by hand)."""
    shipped = Config.fromfile(SHIPPED)
    assert shipped.auto_scale_lr == dict(enable=True, base_batch_size=32)
    path = tmp_path / "stage2_shipped_batch_settings.py"
    path.write_text(
        f"_base_ = {TINY!r}\n"
        f"auto_scale_lr = {shipped.auto_scale_lr.to_dict()!r}\n"
        f"custom_hooks = {[dict(h) for h in shipped.custom_hooks]!r}\n"
    )
    return str(path), Config.fromfile(TINY).optim_wrapper.optimizer.lr


def _write_frequencies(data, names):
    """The GRW loss's pixel counts per class (labels 1..K after reduce_zero_label), + 1 so that
    no class is empty: only the learning rate matters here."""
    counts = np.ones(len(names))
    folder = os.path.join(data, "annotations", "training")
    for name in os.listdir(folder):
        labels = np.asarray(Image.open(os.path.join(folder, name))).ravel()
        counts += np.bincount(labels, minlength=len(names) + 1)[1 : len(names) + 1]
    with open(os.path.join(data, "pixel_frequencies.json"), "w") as f:
        json.dump(dict(counts=counts.tolist(), names=list(names)), f)


@pytest.mark.parametrize("enable", [True, False], ids=["scaled", "not_scaled"])
def test_single_process_stage2_scales_and_logs_the_lr(tmp_path, enable):
    data = str(tmp_path / "data")
    spec = SyntheticLongTailSpec(num_train=8, num_val=2, body_image_share=0.4, tail_train_images=1)
    meta = generate_ade20k_synthetic(data, spec, seed=2)
    _write_frequencies(data, meta["classes"])
    config, config_lr = _config(tmp_path)
    work = str(tmp_path / "work")
    out = run_tool(
        [
            os.path.join(MMSEG_TOOLS, "train.py"),
            config,
            "--work-dir",
            work,
            "--cfg-options",
            "model.stage1_checkpoint=None",  # random frozen weights: only the LR matters here
            "train_cfg.max_iters=2",
            "train_cfg.val_interval=2",
            "param_scheduler.0.end=2",
            "default_hooks.checkpoint.interval=2",
            f"train_dataloader.batch_size={PER_PROCESS}",
            f"auto_scale_lr.enable={enable}",
        ],
        env=dict(DISALIGN_SEG_DATA=data),
    )
    expected = config_lr * PER_PROCESS / 32 if enable else config_lr
    # the LR the run really started from (the schedulers' initial_lr) in its checkpoint
    state = torch.load(os.path.join(work, "iter_2.pth"), map_location="cpu", weights_only=False)
    groups = state["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == pytest.approx([expected] * len(groups))
    line = re.search(r"DisAlign stage 2: total batch .*", out)
    assert line, out[-3000:]
    line = line.group(0)
    assert f"total batch {PER_PROCESS} images per iteration = {PER_PROCESS} per process" in line
    assert "x 1 process;" in line and f"learning rate {expected:g}" in line
    if enable:
        assert f"the config's LR {config_lr:g} is for 32 images" in line
        assert f"scaled linearly by {PER_PROCESS}/32" in line
        assert "--cfg-options auto_scale_lr.enable=False" in line
        # mmengine's own line, from Runner.scale_lr
        assert "Scaling the original LR by 0.0625" in out
    else:
        assert "NOT scaled" in line and "--cfg-options auto_scale_lr.enable=True" in line
        assert re.search(r"WARNING - DisAlign stage 2: total batch", out)
        assert "Scaling the original LR" not in out


def test_message_of_each_case():
    """The line's wording for each case (the epoch-based one is MMPretrain's stage 2)."""
    from disalign_mmengine.calibration_stage import batch_size_message

    base = dict(enable=True, base_batch_size=256)
    msg, level = batch_size_message(64, 1, 0.1, [0.025], base, by_epoch=True)
    assert level == logging.INFO and "64 per process" in msg and "x 1 process;" in msg
    assert "learning rate 0.025" in msg and "scaled linearly by 64/256" in msg
    assert "keeps its epochs" in msg
    msg, level = batch_size_message(64, 4, 0.1, [0.1], base)
    assert level == logging.INFO and "total batch 256" in msg and "unscaled" in msg
    msg, level = batch_size_message(64, 2, 0.1, [0.1], dict(base, enable=False))
    assert level == logging.WARNING and "NOT scaled" in msg and "x 2 processes" in msg
    msg, level = batch_size_message(8, 1, 0.1, [0.1], None)
    assert level == logging.INFO and "no auto_scale_lr" in msg
