"""Both stages end to end on CPU with mmseg's own tools/train.py and tools/test.py."""

import json
import os
import re
import shutil

import torch

from disalign_seg.synthetic import SyntheticLongTailSpec, generate_dataset

from seg_testing import MMSEG_TOOLS, REPO, run_tool

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
STAGE1 = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")


def _iters(n, ckpt_every):
    return [
        f"train_cfg.max_iters={n}",
        f"train_cfg.val_interval={n}",
        f"param_scheduler.0.end={n}",
        f"default_hooks.checkpoint.interval={ckpt_every}",
        "default_hooks.logger.interval=1",
        "train_dataloader.batch_size=4",
    ]


def test_two_stages_test_and_resume_with_stock_scripts(tmp_path):
    data = str(tmp_path / "data")
    spec = SyntheticLongTailSpec(num_train=24, num_val=6, body_image_share=0.4, tail_train_images=1)
    meta = generate_dataset(data, spec, seed=1)
    env = dict(DISALIGN_SEG_DATA=data)
    train, test = os.path.join(MMSEG_TOOLS, "train.py"), os.path.join(MMSEG_TOOLS, "test.py")

    freq = os.path.join(data, "pixel_frequencies.json")
    run_tool(
        [
            "tools/compute_pixel_frequencies.py",
            os.path.join(data, "annotations", "training"),
            "--config",
            STAGE1,
            "--out",
            freq,
        ],
        env=env,
    )
    stored = json.load(open(freq))
    assert stored["names"] == meta["classes"] and len(stored["counts"]) == spec.num_classes

    # Stage 1: the plain FCN.
    w1 = str(tmp_path / "stage1")
    out1 = run_tool([train, STAGE1, "--work-dir", w1, "--cfg-options", *_iters(4, 4)], env=env)
    assert "tail_mIoU" in out1  # validation with the long-tail metric
    ckpt1 = os.path.join(w1, "iter_4.pth")

    # Stage 2 from the stage-1 checkpoint via load_from.
    w2 = str(tmp_path / "stage2")
    out2 = run_tool(
        [train, STAGE2, "--work-dir", w2, "--cfg-options", f"load_from={ckpt1}", *_iters(4, 2)],
        env=env,
    )
    assert f"Load checkpoint from {ckpt1}" in out2
    missing = re.search(r"missing keys in source state_dict: (.*)", out2)
    assert missing and set(missing.group(1).strip().split(", ")) == {
        f"decode_head.calibration.{n}"
        for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
    }
    assert "unexpected key" not in out2 and "size mismatch" not in out2
    s1 = torch.load(ckpt1, map_location="cpu")["state_dict"]
    s2 = torch.load(os.path.join(w2, "iter_4.pth"), map_location="cpu")["state_dict"]
    for key, value in s1.items():  # every stage-1 weight landed and stayed frozen
        assert torch.equal(s2[key], value), key
    assert torch.count_nonzero(s2["decode_head.calibration.beta"]) > 0  # calibration trained

    # Test with the stock test script: head/body/tail metrics reported.
    out_t = run_tool(
        [test, STAGE2, os.path.join(w2, "iter_4.pth"), "--work-dir", str(tmp_path / "test")],
        env=env,
    )
    for key in ("aAcc", "mIoU", "mAcc", "head_mIoU", "body_mIoU", "tail_mIoU", "tail_mAcc"):
        assert re.search(rf"\b{key}: (\d|nan)", out_t), key  # nan: group absent from val

    # Resume an interrupted stage 2: keep only its iteration-2 checkpoint, then --resume.
    # (mmengine resumes from load_from when it is set, so the stage-1 path is cleared.)
    w3 = str(tmp_path / "stage2_resumed")
    os.makedirs(w3)
    shutil.copy(os.path.join(w2, "iter_2.pth"), w3)
    with open(os.path.join(w3, "last_checkpoint"), "w") as f:
        f.write(os.path.join(w3, "iter_2.pth"))
    out3 = run_tool(
        [
            train,
            STAGE2,
            "--work-dir",
            w3,
            "--resume",
            "--cfg-options",
            "load_from=None",
            *_iters(4, 2),
        ],
        env=env,
    )
    assert "resumed epoch: 0, iter: 2" in out3
    assert "Iter(train) [3/4]" in out3 and "Iter(train) [1/4]" not in out3
    resumed = torch.load(os.path.join(w3, "iter_4.pth"), map_location="cpu")
    assert resumed["meta"]["iter"] == 4
