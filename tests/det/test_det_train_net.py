"""End to end through disalign_det.engine (what projects/DisAlign/train_net.py runs) on CPU:
stage 1, DisAlign stage 2 from its checkpoint, LVIS evaluation, resume of a killed stage 2, a
two-process stage 2 (train_net.py itself), and the errors of bad input (checkpoints, frequency
files, missing images, config keys without --demo)."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from det_testing import NUM_CLASSES, REPO, TRAIN, VAL
from detectron2.engine import HookBase
from detectron2.engine import defaults as d2_defaults

from disalign_core import grw_class_weights
from disalign_demo.det import add_tiny_backbone_config
from disalign_det import engine

TRAIN_NET = os.path.join(REPO, "projects", "DisAlign", "train_net.py")
Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")
# detectron2's own, taken when this module is imported (before any Trainer is built)
D2_CREATE_DDP_MODEL = d2_defaults.create_ddp_model


def common_opts(output_dir, max_iter, test=True):
    return [
        "DATASETS.TRAIN", f"('{TRAIN}',)",
        "DATASETS.TEST", f"('{VAL}',)" if test else "()",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "TEST.DETECTIONS_PER_IMAGE", "20",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.IMS_PER_BATCH", "4",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip


def run(argv, config_hooks=(add_tiny_backbone_config,)):
    """``train_net.py --demo ARGV`` in this process."""
    return engine.main(engine.argument_parser().parse_args(argv), config_hooks)


@pytest.fixture(scope="module")
def stage1(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    results = run(["--config-file", STAGE1_CFG, *common_opts(out, 6)])
    return out, results


def lvis_metrics_ok(results):
    assert set(results) >= {"bbox", "segm"}
    for task in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            v = results[task][k]
            assert isinstance(v, float) and 0.0 <= v <= 100.0, (task, k, v)


def test_stage1_then_disalign_stage2(stage1, synth_dataset, tmp_path):
    out1, res1 = stage1
    lvis_metrics_ok(res1)
    out2 = tmp_path / "stage2"
    res2 = run(["--write-class-weights", "--config-file", STAGE2_CFG, *common_opts(out2, 4),
                "MODEL.WEIGHTS", str(out1 / "model_final.pth")])  # fmt: skip
    lvis_metrics_ok(res2)

    s1 = torch.load(out1 / "model_final.pth", weights_only=False)["model"]
    s2 = torch.load(out2 / "model_final.pth", weights_only=False)["model"]
    calib = [k for k in s2 if ".calibration." in k]
    assert calib and not any(k in s1 for k in calib)
    assert any(s2[k].abs().sum() > 0 for k in calib if k.endswith((".alpha", ".beta")))
    # everything from stage 1, BatchNorm statistics included, is bitwise unchanged
    assert set(s1) == set(s2) - set(calib)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)

    # --eval-only of the stage-2 checkpoint reproduces the evaluation at the end of training
    res_eval = run(
        ["--eval-only", "--config-file", STAGE2_CFG, *common_opts(tmp_path / "eval", 4),
         "MODEL.WEIGHTS", str(out2 / "model_final.pth")]
    )  # fmt: skip
    assert res_eval["bbox"] == res2["bbox"]

    with open(out2 / "class_weights_rank0.json") as f:
        weights = json.load(f)["roi_heads.box_predictor"]
    assert weights == grw_class_weights(synth_dataset["train_image_counts"], 0.8).tolist()


class _FirstIteration(HookBase):
    first = []

    def before_step(self):
        if not _FirstIteration.first:
            _FirstIteration.first.append(self.trainer.iter)


def subprocess_env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO] + sys.path))


def test_resume_after_sigkill_of_stage2(stage1, synth_dataset, tmp_path, monkeypatch):
    """kill -9 of a stage-2 run after it wrote a checkpoint; --resume continues from the last
    complete checkpoint."""
    out1, _ = stage1
    out = tmp_path / "stage2"
    info = synth_dataset
    argv = ["--config-file", STAGE2_CFG, *common_opts(out, 10_000, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"), "SOLVER.CHECKPOINT_PERIOD", "2"]  # fmt: skip
    register = ["--register", TRAIN, info["train_json"], info["image_root"]]
    proc = subprocess.Popen(
        [sys.executable, TRAIN_NET, "--demo", *register, *argv],
        env=subprocess_env(), cwd=str(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (out / "last_checkpoint").exists() and proc.poll() is None:
            assert time.time() < deadline, "no checkpoint written within 240 s"
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(1.0)  # let it train on and maybe be inside the next save
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert not (out / "model_final.pth").exists()
    last = (out / "last_checkpoint").read_text().strip()
    resumed_from = torch.load(out / last, weights_only=False)["iteration"]
    assert last == f"model_{resumed_from:07d}.pth" and resumed_from % 2 == 1

    # detectron2's plain --resume (train_net.py's argument parser), 2 more iterations
    _FirstIteration.first.clear()
    build_hooks = engine.Trainer.build_hooks
    monkeypatch.setattr(
        engine.Trainer, "build_hooks", lambda self: build_hooks(self) + [_FirstIteration()]
    )
    run(["--resume", *argv, "SOLVER.MAX_ITER", str(resumed_from + 3)])
    assert _FirstIteration.first == [resumed_from + 1]  # continued, not restarted from 0
    final = torch.load(out / "model_final.pth", weights_only=False)
    assert final["iteration"] == resumed_from + 2
    interrupted = torch.load(out / last, weights_only=False)["model"]
    beta = "roi_heads.box_predictor.calibration.beta"
    assert not torch.equal(final["model"][beta], interrupted[beta])  # it trained on
    assert not list(out.glob("class_weights_rank*.json"))  # only with --write-class-weights


def test_two_processes_identical_class_weights(stage1, synth_dataset, tmp_path):
    out1, _ = stage1
    out = tmp_path / "ddp"
    info = synth_dataset
    cmd = [
        sys.executable, TRAIN_NET, "--demo", "--num-gpus", "2", "--dist-url", "auto",
        "--write-class-weights",
        "--register", TRAIN, info["train_json"], info["image_root"],
        "--config-file", STAGE2_CFG, *common_opts(out, 2, test=False),
        "MODEL.WEIGHTS", str(out1 / "model_final.pth"),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=subprocess_env(), cwd=str(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"class_weights_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    expected = grw_class_weights(info["train_image_counts"], 0.8).tolist()
    assert ranks[0]["roi_heads.box_predictor"] == expected
    assert (out / "model_final.pth").exists()


def test_stage2_refuses_checkpoint_of_other_class_count(stage1, tmp_path):
    out1, _ = stage1
    argv = ["--config-file", STAGE2_CFG, *common_opts(tmp_path, 2, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"),
            "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES + 1), "MODEL.DISALIGN.REWEIGHT", "False"]  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"cls_score.weight has shape \(13, 128\) in the checkpoint but \(14, 128\)",
    ):
        run(argv)


def snapshot(folder):
    """{path: bytes} of every file under folder."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_untouched(folder, before):
    """Every file in ``before`` is still there, byte for byte, and no checkpoint was added.
    (detectron2 itself writes log.txt, config.yaml, metrics.json and event files on start.)"""
    after = snapshot(folder)
    changed = [str(p) for p, data in before.items() if after.get(p) != data]
    new = [str(p) for p in set(after) - set(before)]
    assert not changed, changed
    assert not [p for p in new if p.endswith(".pth") or p.endswith("last_checkpoint")], new


def test_stage2_with_nothing_to_train_names_the_keys(stage1, tmp_path):
    out1, _ = stage1
    argv = ["--config-file", STAGE2_CFG, *common_opts(tmp_path / "out", 2, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"), "MODEL.DISALIGN.CALIBRATION", "False"]  # fmt: skip
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="no DisAlign calibration parameters to train") as e:
        run(argv)
    for key in ("MODEL.DISALIGN.FREEZE", "MODEL.DISALIGN.CALIBRATION", "MODEL.ROI_HEADS.NAME"):
        assert key in str(e.value)
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_stage1_checkpoint_names_file_and_key(stage1, tmp_path, damage):
    out1, _ = stage1
    good = (out1 / "model_final.pth").read_bytes()
    bad = tmp_path / "stage1.pth"
    bad.write_bytes(b"" if damage == "empty" else good[: len(good) // 2])
    before = snapshot(tmp_path)
    argv = ["--config-file", STAGE2_CFG, *common_opts(tmp_path / "out", 2, test=False),
            "MODEL.WEIGHTS", str(bad)]  # fmt: skip
    with pytest.raises(ValueError) as e:
        run(argv)
    msg = str(e.value)
    assert f"cannot read '{bad}' (MODEL.WEIGHTS)" in msg
    assert "Set MODEL.WEIGHTS to a complete checkpoint" in msg
    assert "Do not load it with torch.load(weights_only=False)" in msg
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("damage", ["checkpoint", "tag"])
def test_damaged_last_checkpoint_on_resume(stage1, tmp_path, damage):
    """Killed while writing a checkpoint (a truncated model_*.pth named by last_checkpoint) or
    while writing last_checkpoint itself (empty)."""
    out1, _ = stage1
    out = tmp_path / "out"
    out.mkdir()
    good = (out1 / "model_final.pth").read_bytes()
    # truncated in both cases: no complete checkpoint for --resume to fall back to
    (out / "model_0000001.pth").write_bytes(good[: len(good) // 3])
    (out / "last_checkpoint").write_text("model_0000001.pth" if damage == "checkpoint" else "")
    before = snapshot(tmp_path)
    argv = ["--resume", "--config-file", STAGE2_CFG, *common_opts(out, 4, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth")]  # fmt: skip
    with pytest.raises(ValueError) as e:
        run(argv)
    msg = str(e.value)
    if damage == "checkpoint":
        assert f"cannot read '{out / 'model_0000001.pth'}'" in msg
        assert f"named by last_checkpoint in OUTPUT_DIR '{out}'" in msg
        assert "earlier complete model_*.pth" in msg
    else:
        assert f"'{out / 'last_checkpoint'}' (OUTPUT_DIR/last_checkpoint, --resume) names ''" in msg
        assert "complete model_*.pth of OUTPUT_DIR" in msg
    assert "without --resume" in msg
    assert_untouched(tmp_path, before)


def test_frequency_file_with_fewer_names_than_counts(stage1, synth_dataset, tmp_path):
    out1, _ = stage1
    path = tmp_path / "freq.json"
    names = synth_dataset["class_names"]
    path.write_text(json.dumps({"counts": [5] * NUM_CLASSES, "names": names[:-1]}))
    before = snapshot(tmp_path)
    argv = ["--config-file", STAGE2_CFG, *common_opts(tmp_path / "out", 2, test=False),
            "MODEL.WEIGHTS", str(out1 / "model_final.pth"),
            "MODEL.DISALIGN.FREQUENCY_FILE", str(path)]  # fmt: skip
    with pytest.raises(ValueError) as e:
        run(argv)
    msg = str(e.value)
    assert str(path) in msg and "MODEL.DISALIGN.FREQUENCY_FILE" in msg
    assert f"{NUM_CLASSES} counts but {NUM_CLASSES - 1} names" in msg
    assert "one name per count" in msg
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("eval_only", [False, True], ids=["train", "eval_only"])
def test_missing_images_fail_before_training(synth_dataset, tmp_path, eval_only):
    """A json listing images that are not on disk fails before any iteration/evaluation, with
    the count and the first paths."""
    info = synth_dataset
    partial_root = tmp_path / "images"
    shutil.copytree(os.path.join(info["image_root"], "val"), partial_root / "val")
    (partial_root / "val" / "000003.png").unlink()
    (partial_root / "val" / "000007.png").unlink()
    total = len(json.loads(open(info["val_json"]).read())["images"])
    name = f"det_test_partial_val_{eval_only}"
    before = snapshot(tmp_path)
    argv = ["--register", name, info["val_json"], str(partial_root),
            "--config-file", STAGE1_CFG, *common_opts(tmp_path / "out", 2),
            "DATASETS.TEST", f"('{name}',)"]  # fmt: skip
    if eval_only:
        argv = ["--eval-only", *argv]
    with pytest.raises(FileNotFoundError) as e:
        run(argv)
    msg = str(e.value)
    assert f"DATASETS.TEST: dataset '{name}'" in msg
    assert f"2 of {total} images are missing" in msg
    assert str(partial_root / "val" / "000003.png") in msg
    assert str(partial_root / "val" / "000007.png") in msg
    assert "Check the image root" in msg and "--register" in msg
    assert "DATASETS.TRAIN" not in msg  # the training images are all there
    assert_untouched(tmp_path, before)


def test_json_image_count_of_class_without_annotations_warns(
    stage1, synth_dataset, tmp_path, caplog
):
    """The json's image_count still claims images of a class whose annotations were removed."""
    out1, _ = stage1
    info = synth_dataset
    data = json.loads(open(info["train_json"]).read())
    dropped = data["categories"][4]  # id 5
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != dropped["id"]]
    edited = tmp_path / "train_without_one_class.json"
    edited.write_text(json.dumps(data))
    before = snapshot(tmp_path)
    name = "det_test_train_without_one_class"
    argv = ["--register", name, str(edited), info["image_root"],
            "--config-file", STAGE2_CFG, *common_opts(tmp_path / "out", 1, test=False),
            "DATASETS.TRAIN", f"('{name}',)", "MODEL.WEIGHTS", str(out1 / "model_final.pth")]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="disalign_det"):
        run(argv)
    warning = [r.getMessage() for r in caplog.records if "no annotation of them" in r.getMessage()]
    assert len(warning) == 1, caplog.text
    assert "1 class(es) a nonzero image_count" in warning[0]
    assert dropped["name"] in warning[0] and str(edited) in warning[0]
    assert "correct image_count in the json" in warning[0]
    assert snapshot(tmp_path)[edited] == before[edited]


def test_trainer_leaves_detectron2_create_ddp_model_as_it_was(stage1):
    """The CPU adaptation of create_ddp_model holds only while a Trainer is built."""
    assert d2_defaults.create_ddp_model is D2_CREATE_DDP_MODEL
    assert D2_CREATE_DDP_MODEL.__module__ == "detectron2.engine.defaults"


def test_imports_change_nothing_until_asked(tmp_path):
    """Importing the plugin (engine included) neither patches detectron2 nor registers the
    demo's backbones; importing disalign_demo imports no framework."""
    code = (
        "import sys, disalign_demo\n"
        "assert 'detectron2' not in sys.modules and 'mmseg' not in sys.modules\n"
        "from detectron2.engine import defaults\n"
        "from detectron2.modeling import BACKBONE_REGISTRY\n"
        "import disalign_det, disalign_det.engine\n"
        "assert defaults.create_ddp_model.__module__ == 'detectron2.engine.defaults'\n"
        "assert 'build_disalign_tiny_fpn_backbone' not in BACKBONE_REGISTRY\n"
        "import disalign_demo.det\n"
        "assert 'build_disalign_tiny_fpn_backbone' in BACKBONE_REGISTRY\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), cwd=str(tmp_path),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_tiny_config_without_demo_names_key_and_option(tmp_path):
    """train_net.py without --demo on a quick_schedules config: a clear error before any
    output is written, not detectron2's registry KeyError when the model is built."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, TRAIN_NET, "--config-file", STAGE1_CFG, "OUTPUT_DIR", str(out)],
        env=subprocess_env(), cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: MODEL.BACKBONE.NAME 'build_disalign_tiny_fpn_backbone'")
    assert f"--config-file {STAGE1_CFG}" in last and "train_net.py --demo" in last
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "options"])
def test_tiny_backbone_key_without_its_config_function(tmp_path, where):
    """A MODEL.TINY_BACKBONE key without add_tiny_backbone_config (train_net.py --demo)."""
    argv = ["--config-file", STAGE1_CFG, *common_opts(tmp_path / "out", 1)]
    if where == "file":
        yaml_file = tmp_path / "tiny_gn.yaml"
        yaml_file.write_text(f'_BASE_: "{STAGE1_CFG}"\nMODEL:\n  TINY_BACKBONE:\n    NORM: "GN"\n')
        argv[1] = str(yaml_file)
        source = f"--config-file {yaml_file}: Non-existent config key: MODEL.TINY_BACKBONE."
    else:
        argv += ["MODEL.TINY_BACKBONE.NORM", "GN"]
        source = "command-line options: Non-existent key: MODEL.TINY_BACKBONE.NORM."
    with pytest.raises(ValueError) as e:
        run(argv, config_hooks=())
    msg = str(e.value)
    assert msg.startswith(source)
    assert "add_disalign_config" in msg and "train_net.py --demo" in msg
    assert not (tmp_path / "out").exists()
