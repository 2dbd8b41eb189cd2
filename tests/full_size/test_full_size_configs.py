"""The shipped configs at full size (benchmarks/full_size_configs.py, the entry point of the
benchmarks/full_size package), for one detectron2, one MMSegmentation and one MMPretrain
family: generated data of the config's size with the dataset's real class list, stage 1 ->
checkpoint -> stage 2 from it -> the config's evaluator. The other families run with the same
script (docs/results.md, "Every shipped LVIS, ADE20K and classification config at full size")."""

import json
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "full_size_configs.py")


def run_family(out, family, backbone="R_50"):
    cmd = [
        sys.executable, SCRIPT, "--out", str(out), "--family", family, "--iters", "1",
        "--no-timing", "--det-train-images", "2", "--det-val-images", "1",
        "--seg-train-images", "4", "--seg-val-images", "1", "--cls-val-images", "3",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Overrides of the shipped configs" in proc.stdout
    return json.load(open(out / "full_size_results.json"))[f"{family}@{backbone}"]["run"]


def test_entry_point_and_its_generated_data(tmp_path):
    """The entry point the package re-invokes for its workers is this script, which answers
    --help; the classification generator writes the same files for the same seed."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        from full_size import data, families
    finally:
        sys.path.remove(os.path.join(REPO, "benchmarks"))
    assert families.SCRIPT == SCRIPT
    proc = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--timing-only" in proc.stdout, proc.stderr[-2000:]
    for folder in ("a", "b"):
        data.generate_cls(str(tmp_path / folder), "places-lt", seed=3)
    root_a, root_b = tmp_path / "a/data/places365", tmp_path / "b/data/places365"
    names = sorted(p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file())
    assert len(names) == 16 + 3 + 1  # images, split files, the .generated marker
    assert all((root_a / n).read_bytes() == (root_b / n).read_bytes() for n in names)


def load_state(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state.get("model", state.get("state_dict"))


def assert_only_calibration_changed(stage1, stage2, calibration_key):
    for k, v in stage1.items():
        if k in stage2:
            assert torch.equal(
                torch.as_tensor(v), torch.as_tensor(stage2[k])
            ), f"{k} changed in stage 2"
    # ... and the calibration trained: alpha (stored as scale - 1) has left its identity start, 0
    assert not torch.equal(stage2[calibration_key], torch.zeros_like(stage2[calibration_key]))


def test_lvis_v1_mask_rcnn_r50_full_size(tmp_path):
    run = run_family(tmp_path, "LVISv1/mask_rcnn")
    for stage in ("stage1", "stage2"):
        for task in ("bbox", "segm"):  # LVISEvaluator's metrics, boxes and masks
            assert {"AP", "APr", "APc", "APf"} <= set(run[stage]["metrics"][task])
    out = tmp_path / "output" / "LVISv1"
    s1 = load_state(out / "mask_rcnn_R_50_FPN_1x" / "model_final.pth")
    s2 = load_state(out / "disalign_mask_rcnn_R_50_FPN_1x" / "model_final.pth")
    # the config's model: ResNet-50 (6 res4 blocks), 1203 LVIS v1 classes + background
    assert "backbone.bottom_up.res4.5.conv1.weight" in s1
    assert "backbone.bottom_up.res4.6.conv1.weight" not in s1
    assert tuple(s1["roi_heads.box_predictor.cls_score.weight"].shape) == (1204, 1024)
    assert tuple(s2["roi_heads.box_predictor.calibration.alpha"].shape) == (1203,)
    assert_only_calibration_changed(s1, s2, "roi_heads.box_predictor.calibration.alpha")


def test_ade20k_fcn_r50_full_size(tmp_path):
    run = run_family(tmp_path, "ADE20K/fcn")
    for stage in ("stage1", "stage2"):
        assert {"mIoU", "mAcc", "head_mIoU", "body_mIoU", "tail_mIoU"} <= set(run[stage]["metrics"])
    work = tmp_path / "work_dirs"
    s1 = load_state(work / "fcn_r50-d8_4xb4-160k_ade20k-512x512_ADE20K_stage1" / "iter_1.pth")
    s2 = load_state(work / "fcn_r50-d8_4xb4-160k_ade20k-512x512_ADE20K_stage2" / "iter_1.pth")
    assert tuple(s1["decode_head.conv_seg.weight"].shape) == (150, 512, 1, 1)
    assert "backbone.layer3.5.conv1.weight" in s1 and "backbone.layer3.6.conv1.weight" not in s1
    assert_only_calibration_changed(s1, s2, "decode_head.calibration.alpha")


def test_imagenet_lt_resnext50_full_size(tmp_path):
    run = run_family(tmp_path, "ImageNet-LT/resnext50", backbone="X-50-32x4d")
    groups = ("", "many_", "medium_", "few_")
    for stage in ("stage1", "stage2"):  # LongTailAccuracy's metrics, every group evaluated
        metrics = run[stage]["metrics"]
        assert all(metrics[f"accuracy/{g}top1"] == metrics[f"accuracy/{g}top1"] for g in groups)
    # the split file the configs read: 1000 classes, every one with an image, 1280 down to 5
    labels = [int(ln.split()[1]) for ln in open(tmp_path / "data/imagenet/ImageNet_LT_train.txt")]
    counts = torch.bincount(torch.tensor(labels), minlength=1000)
    assert len(counts) == 1000 and counts.max() == 1280 and counts.min() == 5
    work = tmp_path / "work_dirs"
    s1 = load_state(
        work / "resnext50-32x4d_4xb64-90e_imagenet-lt_ImageNet-LT_stage1" / "epoch_1.pth"
    )
    s2 = load_state(
        work / "resnext50-32x4d_4xb64-90e_imagenet-lt_ImageNet-LT_stage2" / "epoch_1.pth"
    )
    # the config's model: ResNeXt-50 32x4d (32 groups of 4 channels, 6 layer3 blocks), 1000 classes
    assert tuple(s1["backbone.layer1.0.conv2.weight"].shape) == (128, 4, 3, 3)
    assert "backbone.layer3.5.conv1.weight" in s1 and "backbone.layer3.6.conv1.weight" not in s1
    assert tuple(s1["head.fc.weight"].shape) == (1000, 2048)
    assert tuple(s2["head.calibration.alpha"].shape) == (1000,)
    assert_only_calibration_changed(s1, s2, "head.calibration.alpha")
