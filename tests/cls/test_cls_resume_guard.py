"""--resume through MMPretrain's stock tools/train.py (the tiny stage-2 config) with another rho
is refused and changes nothing on disk (disalign_mmengine.DisAlignRecipeGuardHook, shared with
MMSegmentation: tests/seg/test_seg_resume_guard.py has the allowed change, the full-disk and
the fallback cases; test_cls_end_to_end.py the plain resume with the hooks in place)."""

import os
import subprocess
import sys

import torch
from cls_testing import MMPRETRAIN_TOOLS, REPO, TINY
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from disalign_demo.cls import generate_cls_synthetic

STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
RHO = "model.head.loss.rho"


def train(data, stage1, work_dir, max_iters, *options, resume=False, ok=True):
    cmd = [os.path.join(MMPRETRAIN_TOOLS, "train.py"), STAGE2, "--work-dir", str(work_dir)]
    cmd += ["--resume"] if resume else []
    cmd += ["--cfg-options", f"model.stage1_checkpoint={stage1}", "train_dataloader.batch_size=8",
            f"train_cfg.max_iters={max_iters}", f"train_cfg.val_interval={max_iters + 1}",
            f"param_scheduler.end={max_iters}", "default_hooks.checkpoint.interval=1",
            "default_hooks.logger.interval=1", *options]  # fmt: skip
    env = dict(os.environ, DISALIGN_CLS_DATA=data)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(
        [sys.executable] + cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-5000:]
    return out


def test_resume_with_another_rho_is_refused_and_nothing_changes(tmp_path):
    data = str(tmp_path / "data")
    generate_cls_synthetic(data, seed=1, test_per_class=1)
    init_default_scope("mmpretrain")
    cfg = Config.fromfile(os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py"))
    stage1 = str(tmp_path / "stage1.pth")
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, stage1)
    work = tmp_path / "run"
    train(data, stage1, work, 2)

    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    out = train(data, stage1, work, 3, f"{RHO}=1.5", resume=True, ok=False)
    assert "RecipeChangedError" in out and f"{RHO}: 1.2 in the checkpoint, 1.5 now" in out
    assert "disalign_allow_recipe_change=True" in out and "Iter(train)" not in out
    after = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    assert all(after[p] == data_ for p, data_ in before.items())  # config, checkpoints, pointer
    assert not [p for p in set(after) - set(before) if p.parent == work]  # only a new log dir
