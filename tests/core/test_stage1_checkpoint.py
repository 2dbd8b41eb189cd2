"""The stage-1 loading rule every plugin applies (disalign_core.stage1_checkpoint)."""

import os
import re

import pytest
import torch
from torch import nn

from disalign_core import (
    DisAlignCalibration,
    Stage1CheckpointMismatch,
    check_stage1_keys,
    describe_local_file,
    is_calibration_key,
    is_url,
)


class Head(nn.Module):
    def __init__(self, calibrated: bool, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.cls = nn.Conv2d(channels, 5, 1)
        if calibrated:
            self.calibration = DisAlignCalibration(5, channels)


class Model(nn.Module):
    def __init__(self, calibrated: bool, channels: int = 4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.decode_head = Head(calibrated, channels)


def load(model: nn.Module, state: dict):
    return model.load_state_dict(state, strict=False)


def test_calibration_keys():
    assert is_calibration_key("decode_head.calibration.alpha")
    assert is_calibration_key("calibration.beta")
    assert is_calibration_key("module.roi_heads.box_predictor.calibration.confidence_weight")
    assert not is_calibration_key("decode_head.conv_seg.weight")
    assert not is_calibration_key("decode_head.precalibration.alpha")


def test_plain_stage1_checkpoint_loads_and_names_only_the_calibration_as_new():
    stage2 = Model(calibrated=True)
    result = load(stage2, Model(calibrated=False).state_dict())
    new = check_stage1_keys(
        result.missing_keys, result.unexpected_keys, checkpoint="s1.pth", config_key="k"
    )
    assert sorted(new) == sorted(k for k in stage2.state_dict() if ".calibration." in f".{k}")
    assert new  # alpha, beta and the confidence are always new


def test_other_head_is_refused_naming_checkpoint_key_keys_and_cause():
    stage2 = Model(calibrated=True)
    other = Model(calibrated=False).state_dict()
    other = {k.replace("decode_head.cls", "decode_head.classifier"): v for k, v in other.items()}
    result = load(stage2, other)
    with pytest.raises(Stage1CheckpointMismatch) as e:
        check_stage1_keys(
            result.missing_keys,
            result.unexpected_keys,
            checkpoint="deeplab.pth",
            config_key="model.stage1_checkpoint",
            model_keys=len(stage2.state_dict()),
        )
    msg = str(e.value)
    assert "deeplab.pth" in msg and "model.stage1_checkpoint" in msg
    assert "decode_head.cls.weight" in msg and "decode_head.classifier.weight" in msg
    assert "another architecture or head" in msg
    assert "calibration" not in msg.split("Not in the checkpoint")[1].split("In the checkpoint")[0]


def test_checkpoint_of_another_model_altogether():
    stage2 = Model(calibrated=True)
    foreign = {"encoder.layer.weight": torch.zeros(1), "fc.bias": torch.zeros(2)}
    result = load(stage2, foreign)
    with pytest.raises(Stage1CheckpointMismatch, match="another model or framework"):
        check_stage1_keys(
            result.missing_keys,
            result.unexpected_keys,
            checkpoint="seg.pth",
            config_key="model.stage1_checkpoint",
            model_keys=len(stage2.state_dict()),
        )


def test_error_lists_a_few_keys_per_module_not_all():
    missing = [f"backbone.layer{i}.weight" for i in range(50)]
    with pytest.raises(Stage1CheckpointMismatch) as e:
        check_stage1_keys(missing, [], checkpoint="c", config_key="k")
    msg = str(e.value)
    assert "backbone: 50 (" in msg
    assert len(re.findall(r"backbone\.layer\d+\.weight", msg)) == 3


def test_describe_local_file(tmp_path):
    f = tmp_path / "model_final.pkl"
    f.write_bytes(b"x" * 123)
    os.utime(f, (0, 86400))
    assert describe_local_file(str(f)) == f"{f} (123 bytes, modified 1970-01-02 00:00:00 UTC)"


def test_is_url():
    assert is_url("http://127.0.0.1:8000/model_final.pkl")
    assert is_url("detectron2://LVISv0.5-InstanceSegmentation/x.pkl")
    assert not is_url("/data/model_final.pth")


def test_likely_cause_of_a_partial_checkpoint_and_of_another_framework():
    with pytest.raises(Stage1CheckpointMismatch, match="no weights for backbone: it is a partial"):
        check_stage1_keys(["backbone.0.weight"], [], checkpoint="c", config_key="k", model_keys=20)
    # a segmentor's heads where a classifier has its head, shared backbone layers loaded
    with pytest.raises(Stage1CheckpointMismatch, match="another model or framework"):
        check_stage1_keys(
            ["head.fc.weight", "head.fc.bias"],
            ["decode_head.conv_seg.weight", "auxiliary_head.conv_seg.weight"],
            checkpoint="c",
            config_key="k",
            model_keys=20,
        )
