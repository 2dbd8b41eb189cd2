"""DisAlignClsHead: identity at the start, shapes, the calibration formula with the confidence
from the classifier's input, plain stage-1 checkpoints, and bad input."""

import pytest
import torch
import torch.nn.functional as F
from cls_testing import (
    CALIBRATION,
    CHANNELS,
    COSINE_HEAD,
    LINEAR_HEAD,
    NUM_CLASSES,
    STACKED_HEAD,
    disalign_head_cfg,
)
from mmpretrain.registry import MODELS

from disalign_cls import CosineClsHead, DisAlignClsHead, calibrated_head_class

HEADS = [LINEAR_HEAD, COSINE_HEAD, STACKED_HEAD]
IDS = ["linear", "cosine", "stacked"]


def _plain_and_calibrated(head_cfg, **kwargs):
    plain = MODELS.build(head_cfg)
    calibrated = MODELS.build(disalign_head_cfg(head_cfg, **kwargs))
    # a stage-1 checkpoint of the plain head loads: only the calibration is missing
    result = calibrated.load_state_dict(plain.state_dict(), strict=False)
    assert set(result.missing_keys) == {f"calibration.{n}" for n in CALIBRATION}
    assert result.unexpected_keys == []
    return plain, calibrated


@pytest.mark.parametrize("head_cfg", HEADS, ids=IDS)
def test_identity_at_start_and_subclass_of_the_inner_head(head_cfg):
    plain, calibrated = _plain_and_calibrated(head_cfg)
    assert isinstance(calibrated, type(plain)) and isinstance(calibrated, DisAlignClsHead)
    assert type(calibrated).__name__ == f"DisAlign{type(plain).__name__}"
    feats = (torch.randn(2, CHANNELS, 3, 3), torch.randn(7, CHANNELS))
    out = calibrated(feats)
    assert out.shape == (7, NUM_CLASSES)
    assert torch.equal(out, plain(feats))
    # loss and prediction run through the inner head's own code, on the same logits
    samples = plain.predict(feats)
    for a, b in zip(samples, calibrated.predict(feats)):
        assert torch.equal(a.pred_score, b.pred_score)


@pytest.mark.parametrize("head_cfg", HEADS, ids=IDS)
def test_calibration_formula_with_confidence_from_pre_logits(head_cfg):
    plain, calibrated = _plain_and_calibrated(head_cfg)
    cal = calibrated.calibration
    assert cal.alpha.shape == cal.beta.shape == (NUM_CLASSES,)
    with torch.no_grad():
        cal.alpha.copy_(torch.linspace(-0.5, 2.0, NUM_CLASSES))
        cal.beta.copy_(torch.linspace(1.0, -1.0, NUM_CLASSES))
        cal.confidence_weight.normal_()
        cal.confidence_bias.fill_(0.3)
    feats = (torch.randn(7, CHANNELS),)
    x = plain.pre_logits(feats)  # the classifier's input (after the hidden layer if any)
    z = plain(feats)
    sigma = torch.sigmoid(x @ cal.confidence_weight + cal.confidence_bias).unsqueeze(1)
    expected = (1 + sigma * cal.alpha) * z + sigma * cal.beta
    torch.testing.assert_close(calibrated(feats), expected)


def test_cosine_classifier_is_scaled_cosine():
    head = MODELS.build(COSINE_HEAD)
    assert isinstance(head, CosineClsHead) and head.fc.scale.requires_grad
    x = torch.randn(4, CHANNELS)
    w = head.fc.weight
    expected = 20.0 * F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    torch.testing.assert_close(head((x,)), expected)
    assert "fc.bias" not in head.state_dict()


def test_ablation_switches_and_explicit_classifier_path():
    head = MODELS.build(
        disalign_head_cfg(
            LINEAR_HEAD, calibration=dict(use_margin=False, confidence="constant"), classifier="fc"
        )
    )
    names = {n for n, _ in head.calibration.named_parameters()}
    assert names == {"alpha", "confidence_bias"}
    vit = MODELS.build(
        disalign_head_cfg(
            dict(type="VisionTransformerClsHead", num_classes=NUM_CLASSES, in_channels=CHANNELS)
        )
    )
    assert vit.classifier is vit.layers.head


def test_class_count_mismatch_is_an_error_naming_the_key():
    stage1 = MODELS.build(dict(LINEAR_HEAD, num_classes=NUM_CLASSES + 2)).state_dict()
    head = MODELS.build(disalign_head_cfg(LINEAR_HEAD))
    with pytest.raises(
        ValueError, match=r"fc\.weight has 7 classes or channels \(shape \(7, 8\)\).*\(5, 8\)"
    ):
        head.load_state_dict(stage1, strict=False)
    wider = MODELS.build(dict(LINEAR_HEAD, in_channels=CHANNELS * 2)).state_dict()
    with pytest.raises(ValueError, match="does not fit"):
        head.load_state_dict(wider, strict=False)


def test_bad_heads_are_clear_errors():
    with pytest.raises(KeyError, match="NoSuchHead"):
        MODELS.build(dict(type="DisAlignClsHead", head="NoSuchHead"))
    with pytest.raises(TypeError, match="ClsHead subclass"):
        MODELS.build(dict(type="DisAlignClsHead", head="ResNet"))
    with pytest.raises(TypeError, match="already calibrated"):
        calibrated_head_class(calibrated_head_class("LinearClsHead"))
    with pytest.raises(TypeError, match="ClsHead has no classifier"):
        MODELS.build(dict(type="DisAlignClsHead", head="ClsHead"))
    with pytest.raises(TypeError, match="no linear classifier at 'fc'"):
        MODELS.build(disalign_head_cfg(dict(LINEAR_HEAD, type="ArcFaceClsHead")))
    with pytest.raises(TypeError, match="no linear classifier at 'nothing'"):
        MODELS.build(disalign_head_cfg(LINEAR_HEAD, classifier="nothing"))
