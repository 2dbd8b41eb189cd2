"""Both stages end to end on CPU with mmseg's own tools/train.py and tools/test.py."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import torch
from seg_testing import MMSEG_TOOLS, REPO, run_tool

from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic

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
    meta = generate_ade20k_synthetic(data, spec, seed=1)
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

    # Stage 2 from the stage-1 checkpoint, given as the model's stage1_checkpoint.
    w2 = str(tmp_path / "stage2")
    stage1_opt = f"model.stage1_checkpoint={ckpt1}"
    out2 = run_tool(
        [train, STAGE2, "--work-dir", w2, "--cfg-options", stage1_opt, *_iters(4, 2)], env=env
    )
    assert f"loading the stage-1 checkpoint {ckpt1}" in out2
    new = re.search(
        r"fits the model: \d+ tensors loaded from it, .*new, at their start \(.*?\): (.*)", out2
    )
    assert new and set(new.group(1).strip().split(", ")) == {
        f"decode_head.calibration.{n}"
        for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
    }
    assert "unexpected key" not in out2 and "missing keys" not in out2
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

    # Multi-scale + flip test (the paper's ADE20K Table 6 setting): mmseg's SegTTAModel wraps
    # the DisAlign segmentor; 3 scales x 2 flips, merged by averaging the softmax scores.
    out_tta = run_tool(
        [test, STAGE2, os.path.join(w2, "iter_4.pth"), "--tta", "--work-dir", str(tmp_path / "t")],
        env=env,
    )
    for key in ("mIoU", "head_mIoU", "tail_mIoU"):
        assert re.search(rf"\b{key}: (\d|nan)", out_tta), key
    # The run's config dump: the TTA wrapper around the DisAlign segmentor, TTA pipeline.
    tta_model = re.search(
        r"\nmodel = dict\(\s*_scope_='mmseg',\s*module=dict\((.*?)\n\S", out_tta, re.S
    )
    assert tta_model and "type='DisAlignEncoderDecoder'),\n    type='SegTTAModel')" in out_tta
    assert "type='TestTimeAug'" in out_tta

    # Kill -9 a stage-2 run once it has written a checkpoint, then mmseg's plain --resume.
    w3 = str(tmp_path / "stage2_killed")
    n = 8
    cmd = [train, STAGE2, "--work-dir", w3, "--cfg-options", stage1_opt, *_iters(n, 2)]
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(
        [sys.executable] + cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    last = os.path.join(w3, "last_checkpoint")
    deadline = time.time() + 240
    while not os.path.exists(last) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-4000:]
    resumed_from = open(last).read().strip()
    done = int(re.search(r"iter_(\d+)\.pth", resumed_from).group(1))
    assert done < n
    out3 = run_tool([*cmd[:4], "--resume", *cmd[4:]], env=env)  # the same command + --resume
    assert f"Auto resumed from the latest checkpoint {resumed_from}" in out3
    assert f"resumed epoch: 0, iter: {done}" in out3
    w = len(str(n))  # mmengine pads the iteration to the width of max_iters
    assert f"Iter(train) [{done + 1:>{w}}/{n}]" in out3 and f"Iter(train) [{1:>{w}}/" not in out3
    final = torch.load(os.path.join(w3, f"iter_{n}.pth"), map_location="cpu")
    assert final["meta"]["iter"] == n
    for key, value in s1.items():  # the resumed run still holds the frozen stage-1 weights
        assert torch.equal(final["state_dict"][key], value), key
