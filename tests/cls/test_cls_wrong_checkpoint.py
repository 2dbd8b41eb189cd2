"""MMPretrain's stock tools/train.py refuses a stage-1 checkpoint of another model (here a
segmentation checkpoint) before the first iteration, naming the file, the config key, keys and
the likely cause; no checkpoint is written."""

import glob
import os
import subprocess
import sys

from cls_testing import MMPRETRAIN_TOOLS, REPO, TINY

from disalign_demo.cls import generate_cls_synthetic

STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
SEG_STAGE1 = os.path.join(
    REPO, "configs", "mmseg", "tiny", "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py"
)
# In a process of its own: this test process imports MMPretrain only.
SAVE_SEG_CHECKPOINT = """
import sys, torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
init_default_scope("mmseg")
model = MODELS.build(Config.fromfile(sys.argv[1]).model)
torch.save({"state_dict": model.state_dict(), "meta": {"iter": 600}}, sys.argv[2])
"""


def _run(args, env):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_classifier_stage2_refuses_a_segmentation_checkpoint(tmp_path):
    data = str(tmp_path / "data")
    generate_cls_synthetic(data, seed=1, test_per_class=1)
    ckpt = str(tmp_path / "fcn_iter_600.pth")
    rc, out = _run(["-c", SAVE_SEG_CHECKPOINT, SEG_STAGE1, ckpt], env={})
    assert rc == 0, out[-3000:]

    work = tmp_path / "work"
    rc, out = _run(
        [os.path.join(MMPRETRAIN_TOOLS, "train.py"), STAGE2, "--work-dir", str(work)]
        + ["--cfg-options", f"model.stage1_checkpoint={ckpt}"],
        env=dict(DISALIGN_CLS_DATA=data),
    )
    assert rc != 0, out[-4000:]
    assert "Stage1CheckpointMismatch" in out
    message = out[out.index("Stage1CheckpointMismatch") :]
    assert f"the stage-1 checkpoint {ckpt} (model.stage1_checkpoint) does not fit" in message
    assert "Not in the checkpoint" in message and "head.fc.weight" in message
    assert "In the checkpoint but not in the model" in message
    assert "decode_head: " in message and "auxiliary_head: " in message
    assert "Likely cause: " in message
    assert "Fix: set model.stage1_checkpoint to the stage-1 checkpoint" in message
    assert "Iter(train)" not in out
    assert glob.glob(str(work / "**" / "*.pth"), recursive=True) == []
