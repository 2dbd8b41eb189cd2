"""End to end through projects/DisAlign/train_net.py on CPU: stage 1, DisAlign stage 2 from its
checkpoint, LVIS evaluation, resume of a killed stage 2, a two-process stage 2, and the errors
of bad input (checkpoints, frequency files, missing images)."""

import importlib.util
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
from detectron2.engine import HookBase

from disalign_core import grw_class_weights

from det_testing import NUM_CLASSES, REPO, TRAIN, VAL

TRAIN_NET = os.path.join(REPO, "projects", "DisAlign", "train_net.py")
Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")


def load_train_net():
    spec = importlib.util.spec_from_file_location("disalign_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net = load_train_net()


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


def run(argv):
    return train_net.main(train_net.argument_parser().parse_args(argv))


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
        [sys.executable, TRAIN_NET, *register, *argv], env=subprocess_env(), cwd=str(tmp_path),
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
    build_hooks = train_net.Trainer.build_hooks
    monkeypatch.setattr(
        train_net.Trainer, "build_hooks", lambda self: build_hooks(self) + [_FirstIteration()]
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
        sys.executable, TRAIN_NET, "--num-gpus", "2", "--dist-url", "auto", "--write-class-weights",
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
    (out / "model_0000001.pth").write_bytes(
        good[: len(good) // 3] if damage == "checkpoint" else good
    )
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
