"""--resume through mmseg's stock tools/train.py (the tiny stage-2 config): a changed recipe is
refused unless ``disalign_allow_recipe_change=True``, the work dir keeps the first config,
a full disk during a checkpoint write leaves the previous checkpoint and last_checkpoint intact,
and a broken last_checkpoint falls back to the newest complete checkpoint
(disalign_mmengine.DisAlignRecipeGuardHook, DisAlignCheckpointHook)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from seg_testing import MMSEG_TOOLS, REPO

from disalign_core import write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")
DUMP = os.path.basename(STAGE2)  # the config file mmengine writes into the work dir
TRAIN = os.path.join(MMSEG_TOOLS, "train.py")
RHO = "model.decode_head.loss_decode.rho"

# Runs tools/train.py with its argv; the second checkpoint's file write fails half-way with
# ENOSPC (as on a full disk) in disalign_mmengine's atomic write.
FULL_DISK = r"""
import errno, os, runpy, sys
real_fdopen = os.fdopen

class HalfWritten:
    def __init__(self, f):
        self.f = f
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def __getattr__(self, name):
        return getattr(self.f, name)

def fdopen(fd, *args, **kwargs):
    f = real_fdopen(fd, *args, **kwargs)
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    return HalfWritten(f) if name.startswith(".iter_2.pth.tmp-") else f

os.fdopen = fdopen
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Generated data, its frequency file and a stage-1 checkpoint of the tiny FCN."""
    root = tmp_path_factory.mktemp("resume_guard")
    data = str(root / "data")
    meta = generate_ade20k_synthetic(data, SyntheticLongTailSpec(num_train=4, num_val=2), seed=3)
    write_class_frequencies(
        os.path.join(data, "pixel_frequencies.json"),
        [100.0 - i for i in range(14)],
        meta["classes"],
    )
    cfg = Config.fromfile(os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py"))
    init_default_scope("mmseg")  # the autouse fixture's scope comes after module fixtures
    stage1 = str(root / "stage1.pth")
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, stage1)
    return data, stage1


def train(inputs, work_dir, max_iters, *options, resume=False, ok=True, wrapper=None):
    """tools/train.py on the tiny stage-2 config: batch 2, a checkpoint every iteration."""
    data, stage1 = inputs
    cmd = [TRAIN, STAGE2, "--work-dir", str(work_dir)] + (["--resume"] if resume else [])
    cmd += ["--cfg-options", f"model.stage1_checkpoint={stage1}", "train_dataloader.batch_size=2",
            f"train_cfg.max_iters={max_iters}", f"train_cfg.val_interval={max_iters + 1}",
            f"param_scheduler.0.end={max_iters}", "default_hooks.checkpoint.interval=1",
            "default_hooks.logger.interval=1", *options]  # fmt: skip
    if wrapper:
        cmd = ["-c", wrapper] + cmd
    env = dict(os.environ, DISALIGN_SEG_DATA=data)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(
        [sys.executable] + cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-5000:]
    return out


def snapshot(folder):
    """{path: bytes} of every file under folder."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_untouched(folder, before):
    """Every file is as it was; new files only in the new run's <timestamp>/ log folder."""
    after = snapshot(folder)
    assert [p for p, data in before.items() if after.get(p) != data] == []
    new = [p.relative_to(folder) for p in set(after) - set(before)]
    old_tops = {p.relative_to(folder).parts[0] for p in before}
    assert all(len(p.parts) > 1 and p.parts[0] not in old_tops for p in new), new
    assert not [p for p in new if p.suffix == ".pth" or p.name == "last_checkpoint"], new


@pytest.fixture(scope="module")
def run2(inputs, tmp_path_factory):
    """A stage-2 run of 2 iterations (iter_1.pth, iter_2.pth), trained with rho 1.0."""
    work = tmp_path_factory.mktemp("stage2")
    train(inputs, work, 2)
    assert (work / "last_checkpoint").read_text() == str(work / "iter_2.pth")
    return work


def copy_of(run2, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(run2, work)
    # last_checkpoint holds an absolute path: point it into the copy
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    return work


@pytest.mark.parametrize("checkpoint", ["with recipe", "saved without the hook"])
def test_resume_with_another_rho_is_refused_and_nothing_changes(inputs, run2, tmp_path, checkpoint):
    work = copy_of(run2, tmp_path)
    if checkpoint == "saved without the hook":  # read the recipe from meta['cfg']
        ckpt = torch.load(work / "iter_2.pth", map_location="cpu")
        del ckpt["meta"]["disalign_recipe"], ckpt["meta"]["disalign_first_config"]
        torch.save(ckpt, work / "iter_2.pth")
    before = snapshot(work)
    out = train(inputs, work, 4, f"{RHO}=0.5", resume=True, ok=False)
    assert "RecipeChangedError" in out and f"--resume in {work} from {work / 'iter_2.pth'}" in out
    assert f"{RHO}: 1.0 in the checkpoint, 0.5 now" in out and "up to iteration 2" in out
    assert "disalign_allow_recipe_change=True" in out and "another --work-dir" in out
    assert "Iter(train)" not in out
    assert_untouched(work, before)  # the first config, the checkpoints, last_checkpoint


def test_allowed_recipe_change_continues_and_keeps_the_first_config(inputs, run2, tmp_path):
    work = copy_of(run2, tmp_path)
    first = (work / DUMP).read_text()
    out = train(inputs, work, 3, f"{RHO}=0.5", "disalign_allow_recipe_change=True", resume=True)
    assert f"{RHO}: 1.0 in the checkpoint, 0.5 now" in out and "resumed epoch: 0, iter: 2" in out
    assert (work / DUMP).read_text() == first and "rho=1.0" in first
    (this_run,) = work.glob(DUMP[:-3] + ".resume-*.py")
    assert "rho=0.5" in this_run.read_text()
    meta = torch.load(work / "iter_3.pth", map_location="cpu")["meta"]
    assert meta["disalign_recipe"][RHO] == 0.5
    assert meta["disalign_first_config"]["text"] == first  # travels on in the checkpoints


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(inputs, tmp_path):
    work = tmp_path / "run"
    # max_keep_ckpts=1: mmengine's CheckpointHook would remove iter_1.pth before writing iter_2
    keep_one = "default_hooks.checkpoint.max_keep_ckpts=1"
    out = train(inputs, work, 3, keep_one, ok=False, wrapper=FULL_DISK)
    assert "No space left on device" in out
    assert f"could not write the checkpoint {work / 'iter_2.pth'}" in out
    assert f"nothing was half-written: {work / 'last_checkpoint'} still names " in out
    assert "then run the same command with --resume" in out
    assert sorted(p.name for p in work.glob("*.pth")) == ["iter_1.pth"]
    assert not list(work.glob(".*tmp*"))  # the half-written temporary file is gone
    assert (work / "last_checkpoint").read_text() == str(work / "iter_1.pth")
    assert torch.load(work / "iter_1.pth", map_location="cpu")["meta"]["iter"] == 1

    out = train(inputs, work, 3, keep_one, resume=True)  # the same command with --resume
    assert "resumed epoch: 0, iter: 1" in out and "Iter(train) [2/3]" in out
    assert torch.load(work / "iter_3.pth", map_location="cpu")["meta"]["iter"] == 3
    assert sorted(p.name for p in work.glob("*.pth")) == ["iter_3.pth"]  # max_keep_ckpts holds


@pytest.mark.parametrize("damage", ["empty last_checkpoint", "truncated checkpoint"])
def test_resume_falls_back_to_the_newest_complete_checkpoint(inputs, run2, tmp_path, damage):
    work = copy_of(run2, tmp_path)
    pointer = work / "last_checkpoint"
    if damage == "empty last_checkpoint":
        pointer.write_text("")
        problem, used, done = f"{pointer} is empty", work / "iter_2.pth", 2
    else:
        data = (work / "iter_2.pth").read_bytes()
        (work / "iter_2.pth").write_bytes(data[: len(data) // 2])
        problem = f"{pointer} names '{work / 'iter_2.pth'}', which is empty or truncated"
        used, done = work / "iter_1.pth", 1
    out = train(inputs, work, 3, resume=True)
    assert f"DisAlign --resume: {problem}" in out
    assert f"resuming from {used}, the newest complete checkpoint of {work}" in out
    assert f"resumed epoch: 0, iter: {done}" in out and f"Iter(train) [{done + 1}/3]" in out
    assert pointer.read_text() == str(work / "iter_3.pth")
