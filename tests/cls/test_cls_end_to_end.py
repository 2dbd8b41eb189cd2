"""Both stages end to end on CPU with MMPretrain's own tools/train.py and tools/test.py, on the
demo's generated long-tailed data: stage 1 -> stage 2 from its checkpoint -> test with
many/medium/few accuracy -> --resume of stage 2."""

import os
import re

import torch
from cls_testing import MMPRETRAIN_TOOLS, TINY, run_tool

from disalign_demo.cls import generate_cls_synthetic

STAGE1 = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
CALIBRATION = ("alpha", "beta", "confidence_weight", "confidence_bias")


def _iters(n, ckpt_every, end=None):
    return [
        f"train_cfg.max_iters={n}",
        f"train_cfg.val_interval={n}",
        f"param_scheduler.end={end or n}",
        f"default_hooks.checkpoint.interval={ckpt_every}",
        "default_hooks.logger.interval=1",
        "train_dataloader.batch_size=8",
    ]


def test_two_stages_test_and_resume_with_stock_scripts(tmp_path):
    data = str(tmp_path / "data")
    generate_cls_synthetic(data, seed=1, test_per_class=3)
    env = dict(DISALIGN_CLS_DATA=data)
    train = os.path.join(MMPRETRAIN_TOOLS, "train.py")
    test = os.path.join(MMPRETRAIN_TOOLS, "test.py")

    # Stage 1: the plain classifier, validated with the long-tail metric.
    w1 = str(tmp_path / "stage1")
    out1 = run_tool([train, STAGE1, "--work-dir", w1, "--cfg-options", *_iters(3, 3)], env=env)
    assert re.search(r"accuracy/few_top1: \d", out1)
    ckpt1 = os.path.join(w1, "iter_3.pth")

    # Stage 2 from the stage-1 checkpoint.
    w2 = str(tmp_path / "stage2")
    stage2 = [train, STAGE2, "--work-dir", w2, "--cfg-options", f"model.stage1_checkpoint={ckpt1}"]
    out2 = run_tool([*stage2, *_iters(4, 2, end=6)], env=env)
    assert f"loading the stage-1 checkpoint {ckpt1}" in out2
    new = re.search(
        r"fits the model: \d+ tensors loaded from it, .*new, at their start \(.*?\): (.*)", out2
    )
    assert new and set(new.group(1).strip().split(", ")) == {
        f"head.calibration.{n}" for n in CALIBRATION
    }
    assert "unexpected key" not in out2 and "missing keys" not in out2
    s1 = torch.load(ckpt1, map_location="cpu")["state_dict"]
    s2 = torch.load(os.path.join(w2, "iter_4.pth"), map_location="cpu")["state_dict"]
    for key, value in s1.items():  # every stage-1 weight landed and stayed frozen
        assert torch.equal(s2[key], value), key
    assert torch.count_nonzero(s2["head.calibration.beta"]) > 0  # the calibration trained

    # Test with the stock test script: overall and per-group top-1.
    out_t = run_tool(
        [test, STAGE2, os.path.join(w2, "iter_4.pth"), "--work-dir", str(tmp_path / "test")],
        env=env,
    )
    for key in ("top1", "many_top1", "medium_top1", "few_top1"):
        assert re.search(rf"accuracy/{key}: \d", out_t), key

    # MMPretrain's plain --resume continues the same run from its last checkpoint (iter 4) to
    # a longer schedule; the frozen stage-1 weights are still those of stage 1.
    out3 = run_tool([*stage2[:4], "--resume", *stage2[4:], *_iters(6, 2)], env=env)
    assert "resumed epoch: 0, iter: 4" in out3
    assert "Iter(train) [5/6]" in out3 and "Iter(train) [1/6]" not in out3
    final = torch.load(os.path.join(w2, "iter_6.pth"), map_location="cpu")
    assert final["meta"]["iter"] == 6
    for key, value in s1.items():
        assert torch.equal(final["state_dict"][key], value), key
    assert not torch.equal(
        final["state_dict"]["head.calibration.beta"], s2["head.calibration.beta"]
    )
