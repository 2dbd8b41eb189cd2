"""A stage-1 checkpoint of another model is refused before the first iteration (mmengine's
non-strict load would only warn, and stage 2 would calibrate on top of random frozen layers):
through mmseg's stock tools/train.py, and in-process for tensors of another shape."""

import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from seg_testing import MMSEG_TOOLS, REPO

from disalign_core import write_class_frequencies
from disalign_core.stage1_checkpoint import Stage1CheckpointMismatch
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
FCN_STAGE1 = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
DEEPLAB_STAGE1 = os.path.join(TINY, "deeplabv3plus_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
FCN_STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wrong_ckpt") / "data")
    spec = SyntheticLongTailSpec(num_train=4, num_val=2, tail_train_images=1)
    meta = generate_ade20k_synthetic(root, spec, seed=2)
    counts = [100.0 - i for i in range(spec.num_classes)]
    write_class_frequencies(os.path.join(root, "pixel_frequencies.json"), counts, meta["classes"])
    return root


def _save_plain(config, path, monkeypatch, data_root, **model_changes):
    """A stage-1 checkpoint of ``config``'s plain model, as mmengine's runner saves it."""
    monkeypatch.setenv("DISALIGN_SEG_DATA", data_root)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(model=model_changes))
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, path)
    return str(path)


def test_fcn_stage2_refuses_a_deeplabv3plus_checkpoint(data_root, tmp_path, monkeypatch):
    ckpt = _save_plain(
        DEEPLAB_STAGE1, tmp_path / "deeplabv3plus_iter_600.pth", monkeypatch, data_root
    )
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, os.path.join(MMSEG_TOOLS, "train.py"), FCN_STAGE2, "--work-dir", str(work)]
        + ["--cfg-options", f"model.stage1_checkpoint={ckpt}"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, DISALIGN_SEG_DATA=data_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "Stage1CheckpointMismatch" in out
    message = out[out.index("Stage1CheckpointMismatch") :]
    assert f"the stage-1 checkpoint {ckpt} (model.stage1_checkpoint) does not fit" in message
    assert "Not in the checkpoint" in message and "decode_head.convs.0.conv.weight" in message
    assert "In the checkpoint but not in the model" in message
    assert "decode_head.image_pool.1.conv.weight" in message
    assert "Likely cause: the weights of decode_head differ" in message
    assert "probably the checkpoint of another architecture or head" in message
    assert "Fix: set model.stage1_checkpoint to the stage-1 checkpoint" in message
    assert "Iter(train)" not in out
    assert glob.glob(str(work / "**" / "*.pth"), recursive=True) == []
    assert not (work / "last_checkpoint").exists()


def test_tensors_of_another_shape_are_refused(data_root, tmp_path, monkeypatch):
    # Same keys, another width of the decode head: torch would skip those tensors.
    ckpt = _save_plain(
        FCN_STAGE1, tmp_path / "fcn_16ch.pth", monkeypatch, data_root, decode_head=dict(channels=16)
    )
    cfg = Config.fromfile(FCN_STAGE2)
    cfg.model.stage1_checkpoint = ckpt
    model = MODELS.build(cfg.model)
    with pytest.raises(
        Stage1CheckpointMismatch,
        match=r"fcn_16ch.pth \(model.stage1_checkpoint\) does not fit the stage-2 model.*"
        r"Of another shape \(6 tensors\): .*decode_head.convs.0.conv.weight: "
        r"\(16, 128, 3, 3\) in the checkpoint, \(32, 128, 3, 3\) in the model",
    ):
        model.init_weights()


def test_a_checkpoint_that_is_no_dict_of_weights(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DISALIGN_SEG_DATA", data_root)
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    cfg = Config.fromfile(FCN_STAGE2)
    cfg.model.stage1_checkpoint = str(path)
    with pytest.raises(
        Stage1CheckpointMismatch,
        match=r"tensor.pth \(model.stage1_checkpoint\) " r"holds a Tensor, not a dict of weights",
    ):
        MODELS.build(cfg.model).init_weights()
