"""``DisAlignCalibration(form="authors_cls")``: the authors' released cvpods classification
layer (``DisAlignLinear``), checked against that layer's formula written out here with torch's
own ``nn.Linear`` as their code does; its float32 saturation; ``confidence_input``; bad input.
The paper's form stays the default."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from disalign_core.calibration import AUTHORS_CLS_CONFIDENCE_WEIGHT, DisAlignCalibration

K, C = 6, 32


def _authors_logits(z, x, scale, bias, conf_layer, normalize=False):
    """The authors' forward: ``(1 + sigmoid(conf(x)) * scale) * z + sigmoid(conf(x)) * bias``
    with ``conf`` an ``nn.Linear(C, 1)``; ``normalize``: their cosine layer's x / |x|."""
    if normalize:
        x = F.normalize(x, dim=1)
    confidence = conf_layer(x).sigmoid()  # (N, 1)
    return (1 + confidence * scale.view(1, -1)) * z + confidence * bias.view(1, -1)


def _their_confidence_layer(cal):
    """An ``nn.Linear(C, 1)`` holding the calibration's confidence weight and bias."""
    layer = nn.Linear(cal.in_channels, 1)
    with torch.no_grad():
        layer.weight.copy_(cal.confidence_weight.view(1, -1))
        layer.bias.copy_(cal.confidence_bias)
    return layer


def test_start_is_the_authors_initialisation():
    torch.manual_seed(0)
    cal = DisAlignCalibration(K, C, form="authors_cls")
    assert torch.equal(cal.alpha.detach(), torch.ones(K))  # their logit_scale: ones
    assert torch.equal(cal.beta.detach(), torch.zeros(K))  # their logit_bias: zeros
    assert torch.equal(cal.confidence_weight.detach(), torch.full((C,), 0.1))
    assert AUTHORS_CLS_CONFIDENCE_WEIGHT == 0.1
    # torch's nn.Linear bias init: uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]
    bound = 1 / math.sqrt(C)
    biases = torch.stack(
        [DisAlignCalibration(K, C, form="authors_cls").confidence_bias for _ in range(200)]
    ).detach()
    assert biases.abs().max() <= bound
    assert biases.std() > bound / 4  # random, not a constant
    assert "form='authors_cls'" in repr(cal)


def test_output_at_start_is_one_plus_sigma_times_z():
    torch.manual_seed(1)
    cal = DisAlignCalibration(K, C, form="authors_cls")
    x = torch.randn(5, C) * 0.2  # small, so that sigma is strictly inside (0, 1)
    z = torch.randn(5, K)
    sigma = torch.sigmoid(0.1 * x.sum(dim=1, keepdim=True) + cal.confidence_bias.detach())
    assert ((sigma > 0.05) & (sigma < 0.95)).all()
    out = cal(z, x)
    torch.testing.assert_close(out, (1 + sigma) * z, rtol=1e-6, atol=1e-6)
    # not the stage-1 model: the paper's form starts there
    assert not torch.allclose(out, z)
    paper = DisAlignCalibration(K, C)
    assert torch.equal(paper(z, x), z)
    assert torch.equal(paper.alpha.detach(), torch.zeros(K))


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "l2_normalized"])
def test_formula_matches_the_authors_layer_for_any_parameters(normalize):
    torch.manual_seed(2)
    cal = DisAlignCalibration(
        K,
        C,
        form="authors_cls",
        confidence_input="l2_normalized" if normalize else "raw",
    )
    with torch.no_grad():
        cal.alpha.copy_(torch.linspace(-0.5, 2.0, K))
        cal.beta.copy_(torch.linspace(1.0, -1.0, K))
        cal.confidence_weight.normal_()
        cal.confidence_bias.fill_(0.3)
    x, z = torch.randn(7, C), torch.randn(7, K)
    expected = _authors_logits(
        z, x, cal.alpha.detach(), cal.beta.detach(), _their_confidence_layer(cal), normalize
    )
    torch.testing.assert_close(cal(z, x), expected, rtol=1e-6, atol=1e-6)


def test_saturation_on_non_negative_features_in_float32():
    """ReLU-pooled features: 0.1 * sum(x) far above 16.7, sigmoid == 1 exactly in float32,
    no gradient to the confidence; the layer is then (1 + s) z + b, exactly."""
    torch.manual_seed(3)
    channels = 512
    cal = DisAlignCalibration(K, channels, form="authors_cls")
    with torch.no_grad():
        cal.alpha.copy_(torch.linspace(0.5, 1.5, K))
        cal.beta.copy_(torch.linspace(-1.0, 1.0, K))
    x = torch.rand(8, channels)  # non-negative, mean 0.5: 0.1 * sum ~ 25
    z = torch.randn(8, K)
    sigma = cal.confidence(x, z)
    assert sigma.dtype == torch.float32
    assert torch.equal(sigma, torch.ones_like(sigma))  # exactly 1, not just close
    out = cal(z, x)
    # equal up to float rounding (the order of the operations differs)
    torch.testing.assert_close(
        out, (1 + cal.alpha.detach()) * z + cal.beta.detach(), rtol=1e-6, atol=1e-6
    )
    F.cross_entropy(out, torch.arange(8) % K).backward()
    # sigmoid's gradient sigma * (1 - sigma) is exactly 0: the confidence learns nothing
    assert torch.equal(cal.confidence_weight.grad, torch.zeros(channels))
    assert torch.equal(cal.confidence_bias.grad, torch.zeros(1))
    assert cal.alpha.grad.abs().sum() > 0 and cal.beta.grad.abs().sum() > 0


def test_no_saturation_on_small_or_normalised_features():
    """The same layer learns its confidence where v . x stays small (the test above can fail),
    and on the L2-normalised feature (the authors' cosine layer)."""
    torch.manual_seed(4)
    channels = 512
    for x, mode in [
        (torch.rand(8, channels) * 0.01, "raw"),
        (torch.rand(8, channels), "l2_normalized"),
    ]:
        cal = DisAlignCalibration(K, channels, form="authors_cls", confidence_input=mode)
        out = cal(torch.randn(8, K), x)
        sigma = cal.confidence(x, out)
        assert (sigma < 1).all(), mode
        F.cross_entropy(out, torch.arange(8) % K).backward()
        assert cal.confidence_weight.grad.abs().sum() > 0, mode


def test_l2_normalized_input_is_scale_invariant_and_raw_is_not():
    torch.manual_seed(5)
    x, z = torch.randn(4, C), torch.randn(4, K)
    normed = DisAlignCalibration(K, C, confidence_input="l2_normalized")
    raw = DisAlignCalibration(K, C)
    with torch.no_grad():
        for cal in (normed, raw):
            cal.alpha.fill_(0.5)
            cal.confidence_weight.normal_()
    torch.testing.assert_close(normed(z, 10 * x), normed(z, x))
    expected = torch.sigmoid(
        F.normalize(x, dim=1) @ normed.confidence_weight.detach() + normed.confidence_bias.detach()
    )
    torch.testing.assert_close(normed.confidence(x, z), expected.view(-1, 1))
    assert not torch.allclose(raw(z, 10 * x), raw(z, x))
    # dense maps: normalised over the channel dim, per pixel
    dense = DisAlignCalibration(K, C, confidence_input="l2_normalized")
    xd, zd = torch.randn(2, C, 3, 3), torch.randn(2, K, 3, 3)
    torch.testing.assert_close(dense(zd, 5 * xd), dense(zd, xd))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(form="authors"), "form must be one of"),
        (dict(form="authors_cls", confidence="constant"), "needs confidence='input'"),
        (dict(form="authors_cls", confidence="input_bn_relu"), "needs confidence='input'"),
        (
            dict(form="authors_cls", margin_init="prior", class_counts=[5, 4, 3, 2, 1, 1]),
            "needs margin_init='zero'",
        ),
        (dict(confidence_input="normalized"), "confidence_input must be one of"),
        (dict(confidence="constant", confidence_input="l2_normalized"), "only applies to"),
    ],
)
def test_bad_input_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DisAlignCalibration(K, C, **kwargs)
