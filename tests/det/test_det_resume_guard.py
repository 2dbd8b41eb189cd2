"""--resume through disalign_det.engine (what projects/DisAlign/train_net.py runs): a changed
recipe is refused unless --allow-recipe-change, OUTPUT_DIR/config.yaml keeps the first start's
config, checkpoint writes are atomic (a full disk leaves the previous checkpoint and
last_checkpoint intact), and a broken last_checkpoint falls back to the newest complete
checkpoint."""

import errno
import io
import os
import shutil

import pytest
import torch
from det_testing import CONFIGS, NUM_CLASSES, TRAIN

from disalign_demo.det import add_tiny_backbone_config
from disalign_det import engine

STAGE1_CFG = os.path.join(CONFIGS, "quick_schedules", "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(CONFIGS, "quick_schedules", "disalign_mask_rcnn_tiny_instant_test.yaml")
pytestmark = pytest.mark.usefixtures("synth_dataset")


def opts(output_dir, max_iter):
    return [
        "DATASETS.TRAIN", f"('{TRAIN}',)",
        "DATASETS.TEST", "()",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip


def run(argv):
    """``train_net.py --demo ARGV`` in this process."""
    return engine.main(engine.argument_parser().parse_args(argv), (add_tiny_backbone_config,))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp("guard_stage1")
    run(["--config-file", STAGE1_CFG, *opts(out, 2)])
    return out / "model_final.pth"


def stage2_argv(stage1, out, max_iter, *extra):
    return ["--config-file", STAGE2_CFG, *opts(out, max_iter), "MODEL.WEIGHTS", str(stage1),
            *extra]  # fmt: skip


@pytest.fixture(scope="module")
def stage2(stage1, tmp_path_factory):
    """A stage-2 run of 2 iterations: model_0000000.pth, model_0000001.pth, model_final.pth."""
    out = tmp_path_factory.mktemp("guard_stage2")
    run(stage2_argv(stage1, out, 2))
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    return out


def snapshot(folder):
    """{path: bytes} of every file under folder."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def iteration(path):
    return torch.load(path, weights_only=True)["iteration"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (["MODEL.DISALIGN.RHO", "0.5"], "MODEL.DISALIGN.RHO: 0.8 in the checkpoint, 0.5 now"),
        (["MODEL.DISALIGN.MARGIN", "False"], "MODEL.DISALIGN.MARGIN: True in the checkpoint"),
        (
            ["MODEL.DISALIGN.FREQUENCY_TYPE", "instances"],
            "MODEL.DISALIGN.FREQUENCY_TYPE: 'images' in the checkpoint, 'instances' now",
        ),
    ],
)
def test_resume_with_another_recipe_is_refused_and_nothing_changes(
    stage1, stage2, change, expected
):
    before = snapshot(stage2)
    with pytest.raises(ValueError) as e:
        run(["--resume", *stage2_argv(stage1, stage2, 4, *change)])
    msg = str(e.value)
    assert f"--resume in OUTPUT_DIR '{stage2}'" in msg and str(stage2 / "model_final.pth") in msg
    assert expected in msg
    assert "--allow-recipe-change" in msg and "another OUTPUT_DIR" in msg
    assert snapshot(stage2) == before  # config.yaml, checkpoints, pointer, log: all as they were


def test_allowed_recipe_change_continues_and_keeps_the_first_config(stage1, stage2, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(stage2, out)
    first_config = (out / "config.yaml").read_bytes()
    run(["--resume", "--allow-recipe-change", *stage2_argv(stage1, out, 3, "MODEL.DISALIGN.RHO",
         "0.5")])  # fmt: skip
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 2 and final["disalign_recipe"]["MODEL.DISALIGN.RHO"] == 0.5
    assert (out / "config.yaml").read_bytes() == first_config  # the first start's config
    (this_start,) = out.glob("config.resume-*.yaml")
    assert "RHO: 0.5" in this_start.read_text() and "RHO: 0.8" in first_config.decode()
    log = (out / "log.txt").read_text()
    assert "MODEL.DISALIGN.RHO: 0.8 in the checkpoint, 0.5 now" in log
    assert f"{out / 'config.yaml'} keeps the config of the run's first start" in log
    # the changed recipe is now the run's: a plain resume with it goes on
    run(["--resume", *stage2_argv(stage1, out, 4, "MODEL.DISALIGN.RHO", "0.5")])
    assert iteration(out / "model_final.pth") == 3


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(stage1, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half written, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError) as e:
        run(stage2_argv(stage1, out, 3))
    monkeypatch.undo()
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and "No space left on device" in msg
    assert f"could not write the checkpoint {out / 'model_0000001.pth'}" in msg
    assert "nothing was half-written" in msg and "still names 'model_0000000.pth'" in msg
    assert "then run the same command with --resume" in msg
    assert sorted(p.name for p in out.glob("model_*")) == ["model_0000000.pth"]
    assert not list(out.glob(".*tmp*"))  # the partial temporary file is gone
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"
    assert iteration(out / "model_0000000.pth") == 0

    run(["--resume", *stage2_argv(stage1, out, 3)])  # the same command with --resume
    assert iteration(out / "model_final.pth") == 2


@pytest.mark.parametrize("damage", ["empty pointer", "truncated checkpoint", "no pointer"])
def test_resume_falls_back_to_the_newest_complete_checkpoint(stage1, stage2, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(stage2, out)
    pointer = out / "last_checkpoint"
    if damage == "empty pointer":
        pointer.write_text("")
        expected, problem = "model_final.pth", f"{pointer} is empty"
    elif damage == "truncated checkpoint":
        data = (out / "model_final.pth").read_bytes()
        (out / "model_final.pth").write_bytes(data[: len(data) // 2])
        expected = "model_0000001.pth"
        problem = f"{pointer} names 'model_final.pth', which is empty or truncated"
    else:
        pointer.unlink()
        expected, problem = "model_final.pth", f"there is no {pointer}"
    run(["--resume", *stage2_argv(stage1, out, 3)])
    log = (out / "log.txt").read_text()
    assert f"{problem} (cut off while being written?)" in log or problem in log
    assert f"resuming from {out / expected}, the newest complete checkpoint of {out}" in log
    assert iteration(out / "model_final.pth") == 2  # continued after iteration 1
    assert pointer.read_text() == "model_final.pth"
