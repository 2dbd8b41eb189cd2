"""``model.head.calibration.form='authors_cls'``: the authors' released classification layer in
MMPretrain's head, built through the registry and from the shipped stage-2 configs with
``--cfg-options``; the cosine head's confidence input; the paper's form stays the default."""

import os

import pytest
import torch
import torch.nn.functional as F
from cls_testing import (
    CHANNELS,
    COSINE_HEAD,
    LINEAR_HEAD,
    NUM_CLASSES,
    REPO,
    disalign_head_cfg,
    tiny_classifier_cfg,
)
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIGS = os.path.join(REPO, "configs", "mmpretrain")


def _sigma_from_point_one_weights(x, bias):
    """The authors' start: sigmoid(0.1 * sum_c x_c + c), (N, 1)."""
    return torch.sigmoid(0.1 * x.sum(dim=1, keepdim=True) + bias)


def test_linear_head_starts_at_one_plus_sigma_times_the_stage1_logits():
    plain = MODELS.build(LINEAR_HEAD)
    head = MODELS.build(disalign_head_cfg(LINEAR_HEAD, calibration=dict(form="authors_cls")))
    head.load_state_dict(plain.state_dict(), strict=False)  # the stage-1 classifier
    cal = head.calibration
    assert cal.form == "authors_cls" and cal.confidence_input == "raw"
    assert torch.equal(cal.confidence_weight.detach(), torch.full((CHANNELS,), 0.1))
    feats = (torch.randn(7, CHANNELS) * 0.3,)
    z = plain(feats)
    sigma = _sigma_from_point_one_weights(feats[0], cal.confidence_bias.detach())
    torch.testing.assert_close(head(feats), (1 + sigma) * z, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(head(feats), z)


def test_cosine_head_reads_the_normalised_feature_unless_told():
    plain = MODELS.build(COSINE_HEAD)
    head = MODELS.build(disalign_head_cfg(COSINE_HEAD, calibration=dict(form="authors_cls")))
    head.load_state_dict(plain.state_dict(), strict=False)
    assert head.calibration.confidence_input == "l2_normalized"
    x = torch.rand(5, CHANNELS) * 3
    sigma = _sigma_from_point_one_weights(
        F.normalize(x, dim=1), head.calibration.confidence_bias.detach()
    )
    torch.testing.assert_close(head((x,)), (1 + sigma) * plain((x,)), rtol=1e-6, atol=1e-6)
    raw = MODELS.build(
        disalign_head_cfg(COSINE_HEAD, calibration=dict(form="authors_cls", confidence_input="raw"))
    )
    assert raw.calibration.confidence_input == "raw"
    # the paper's form: raw by default, the normalised input as an option
    assert MODELS.build(disalign_head_cfg(COSINE_HEAD)).calibration.confidence_input == "raw"
    normed = MODELS.build(
        disalign_head_cfg(COSINE_HEAD, calibration=dict(confidence_input="l2_normalized"))
    )
    assert normed.calibration.form == "paper"
    assert normed.calibration.confidence_input == "l2_normalized"
    assert torch.equal(normed.calibration.alpha.detach(), torch.zeros(NUM_CLASSES))


def test_saturated_confidence_gets_no_gradient_in_a_stage2_classifier():
    """The tiny ResNet's pooled feature is non-negative; scaled up as a trained network's
    (sum well above 167), the authors' confidence is exactly 1 and its gradient exactly 0,
    while the magnitude and margin train."""
    model = MODELS.build(
        tiny_classifier_cfg(
            disalign_head_cfg(LINEAR_HEAD, calibration=dict(form="authors_cls")),
            classifier="DisAlignImageClassifier",
        )
    )
    model.train()
    head = model.head
    x = model.extract_feat(torch.rand(4, 3, 32, 32))[-1]
    assert (x >= 0).all()
    x = x + 25.0  # 0.1 * sum over 8 channels >= 20
    out = head((x,))
    assert torch.equal(head.calibration.confidence(x, out), torch.ones(4, 1))
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert torch.equal(head.calibration.confidence_weight.grad, torch.zeros(CHANNELS))
    assert torch.equal(head.calibration.confidence_bias.grad, torch.zeros(1))
    assert head.calibration.alpha.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "config, normalized",
    [
        ("disalign_resnext50-32x4d_4xb64-10e_imagenet-lt.py", False),
        ("disalign_resnext50-32x4d-cos_4xb64-10e_imagenet-lt.py", True),
    ],
)
def test_shipped_configs_take_the_option_from_cfg_options(config, normalized):
    cfg = Config.fromfile(os.path.join(CONFIGS, config))
    assert cfg.model.head.calibration.get("form", "paper") == "paper"  # the default
    cfg.merge_from_dict({"model.head.calibration.form": "authors_cls"})
    head_cfg = dict(cfg.model.head)
    # a small head of the same type and calibration (the full one has 1000 x 2048 weights)
    head_cfg.update(num_classes=NUM_CLASSES, in_channels=CHANNELS)
    head_cfg["loss"] = dict(type="CrossEntropyLoss")
    head = MODELS.build(head_cfg)
    assert head.calibration.form == "authors_cls"
    assert torch.equal(head.calibration.alpha.detach(), torch.ones(NUM_CLASSES))
    expected = "l2_normalized" if normalized else "raw"
    assert head.calibration.confidence_input == expected


def test_bad_form_names_the_value():
    with pytest.raises(ValueError, match="form must be one of .*'authors'"):
        MODELS.build(disalign_head_cfg(LINEAR_HEAD, calibration=dict(form="authors")))
