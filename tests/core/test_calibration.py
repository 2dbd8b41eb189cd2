import pytest
import torch

from disalign_core import DisAlignCalibration


def test_identity_at_start_vectors_and_maps():
    torch.manual_seed(0)
    cal = DisAlignCalibration(5, 8)
    z, x = torch.randn(4, 5), torch.randn(4, 8)
    assert torch.equal(cal(z, x), z)
    zm, xm = torch.randn(2, 5, 3, 3), torch.randn(2, 8, 3, 3)
    assert torch.equal(cal(zm, xm), zm)


def test_formula_against_hand_computed_values():
    cal = DisAlignCalibration(2, 2)
    with torch.no_grad():
        cal.alpha.copy_(torch.tensor([0.5, -1.0]))
        cal.beta.copy_(torch.tensor([2.0, 3.0]))
        cal.confidence_weight.copy_(torch.tensor([1.0, 0.0]))
        cal.confidence_bias.fill_(0.0)
    # sigma(x) = sigmoid(x_0): x_0 = 0 -> 0.5
    z = torch.tensor([[4.0, 2.0]])
    x = torch.tensor([[0.0, 7.0]])
    # (1 + 0.5*0.5)*4 + 0.5*2 = 6 ;  (1 - 0.5)*2 + 0.5*3 = 2.5
    assert torch.allclose(cal(z, x), torch.tensor([[6.0, 2.5]]))


def test_dense_maps_match_per_pixel_vectors():
    torch.manual_seed(1)
    cal = DisAlignCalibration(3, 4)
    with torch.no_grad():
        cal.alpha.normal_()
        cal.beta.normal_()
        cal.confidence_weight.normal_()
    z, x = torch.randn(2, 3, 5, 6), torch.randn(2, 4, 5, 6)
    dense = cal(z, x)
    flat = cal(z.permute(0, 2, 3, 1).reshape(-1, 3), x.permute(0, 2, 3, 1).reshape(-1, 4))
    assert torch.allclose(dense.permute(0, 2, 3, 1).reshape(-1, 3), flat, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, expect_sigma",
    [(dict(confidence="constant"), 0.5), (dict(confidence="none"), 1.0)],
)
def test_confidence_modes(kwargs, expect_sigma):
    cal = DisAlignCalibration(2, 3, **kwargs)
    with torch.no_grad():
        cal.alpha.fill_(1.0)
        cal.beta.fill_(1.0)
    z = torch.tensor([[1.0, 2.0]])
    out = cal(z, torch.randn(1, 3))
    assert torch.allclose(out, z * (1 + expect_sigma) + expect_sigma)


def test_ablation_switches_remove_parameters():
    cal = DisAlignCalibration(4, 3, use_magnitude=False, confidence="none")
    names = {n for n, _ in cal.named_parameters()}
    assert names == {"beta"}
    with torch.no_grad():
        cal.beta.fill_(2.0)
    z = torch.randn(2, 4)
    assert torch.allclose(cal(z), z + 2.0)
    off = DisAlignCalibration(4, 3, use_magnitude=False, use_margin=False)
    assert torch.equal(off(z, torch.randn(2, 3)), z)
    # nothing to blend: no confidence parameters that would never get a gradient (DDP)
    assert list(off.parameters()) == []


def test_gradients_reach_calibration_only_through_logits():
    cal = DisAlignCalibration(3, 4)
    z = torch.randn(5, 3, requires_grad=True)
    x = torch.randn(5, 4)
    cal(z, x).pow(2).sum().backward()
    assert cal.alpha.grad is not None and cal.alpha.grad.abs().sum() > 0
    assert cal.beta.grad is not None and cal.beta.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0, 4), {}, "num_classes"),
        ((3, 0), {}, "in_channels"),
        ((3, 4), {"confidence": "learned"}, "confidence must be one of"),
    ],
)
def test_bad_construction(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DisAlignCalibration(*args, **kwargs)


def test_bad_shapes():
    cal = DisAlignCalibration(3, 4)
    with pytest.raises(ValueError, match="K=3"):
        cal(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match="C=4"):
        cal(torch.randn(2, 3), torch.randn(2, 6))
    with pytest.raises(ValueError, match="needs the classifier's input features"):
        cal(torch.randn(2, 3))
    with pytest.raises(ValueError, match="must agree"):
        cal(torch.randn(2, 3, 4, 4), torch.randn(2, 4, 5, 5))


def test_authors_confidence_is_at_least_half_and_starts_at_identity():
    torch.manual_seed(2)
    cal = DisAlignCalibration(4, 6, confidence="input_bn_relu")
    assert cal.confidence_bias is None and isinstance(cal.confidence_norm, torch.nn.BatchNorm1d)
    zm, xm = torch.randn(2, 4, 5, 3), torch.randn(2, 6, 5, 3) * 10
    assert torch.equal(cal(zm, xm), zm)  # alpha = beta = 0: identity whatever sigma is
    for mode in (True, False):
        cal.train(mode)
        sigma = cal.confidence(xm, zm)
        assert sigma.shape == (2, 1, 5, 3)
        assert torch.all(sigma >= 0.5) and torch.any(sigma > 0.5)
        vec = cal.confidence(torch.randn(7, 6), torch.randn(7, 4))
        assert vec.shape == (7, 1) and torch.all(vec >= 0.5)
    # The paper's default confidence goes below 0.5 on the same input.
    paper = DisAlignCalibration(4, 6)
    assert torch.any(paper.confidence(xm, zm) < 0.5)


def test_authors_confidence_by_hand_and_its_norm_trains():
    cal = DisAlignCalibration(1, 2, confidence="input_bn_relu")
    with torch.no_grad():
        cal.confidence_weight.copy_(torch.tensor([1.0, 0.0]))
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])  # v . x = (1, 3): batch mean 2, biased var 1
    cal.train()
    sigma = cal.confidence(x, torch.zeros(2, 1)).flatten()
    eps = cal.confidence_norm.eps
    normed = torch.tensor([-1.0, 1.0]) / (1 + eps) ** 0.5
    assert torch.allclose(sigma, torch.sigmoid(torch.relu(normed)))  # (0.5, sigmoid(~1))
    # Training mode updated the running statistics (momentum 0.1 from mean 0, var 1).
    assert torch.allclose(cal.confidence_norm.running_mean, torch.tensor([0.2]))
    names = {n for n, p in cal.named_parameters() if p.requires_grad}
    assert names == {
        "alpha",
        "beta",
        "confidence_weight",
        "confidence_norm.weight",
        "confidence_norm.bias",
    }


def test_calibrate_foreground_leaves_the_background_logit_alone():
    from disalign_core import calibrate_foreground

    scores = torch.randn(5, 4)
    out = calibrate_foreground(scores, 3, lambda z: 2 * z + 1)
    assert torch.equal(out[:, :3], 2 * scores[:, :3] + 1)
    assert torch.equal(out[:, 3], scores[:, 3])
    with pytest.raises(ValueError, match="K = 4 foreground classes"):
        calibrate_foreground(scores, 4, lambda z: z)
    with pytest.raises(ValueError, match="returned shape"):
        calibrate_foreground(scores, 3, lambda z: z[:, :2])


@pytest.mark.parametrize("confidence", ["input", "constant", "none", "input_bn_relu"])
def test_prior_offset_starts_at_logit_adjustment_and_keeps_the_prior_out_of_the_gate(confidence):
    from disalign_core import logit_adjustment_margin

    counts = [500.0, 50.0, 5.0, 1.0]
    cal = DisAlignCalibration(
        4, 3, confidence=confidence, margin_init="prior_offset", class_counts=counts
    )
    m = logit_adjustment_margin(counts, 1.0)
    z, x = torch.randn(6, 4), torch.randn(6, 3) * 5
    cal.eval()
    torch.testing.assert_close(cal(z, x), z + m)  # exactly LA, whatever sigma(x) is
    assert torch.equal(cal.beta, torch.zeros(4)) and cal.alpha is not None
    # fixed: not a parameter; in the checkpoint, which a model without the option refuses
    assert "prior_offset" not in dict(cal.named_parameters())
    state = cal.state_dict()
    torch.testing.assert_close(state["prior_offset"], m)
    with pytest.raises(ValueError, match="trained with margin_init='prior_offset'"):
        DisAlignCalibration(4, 3, confidence=confidence).load_state_dict(state)
    # a checkpoint without it (stage 1, or a zero-start stage 2) keeps the built offset
    fresh = DisAlignCalibration(
        4, 3, confidence=confidence, margin_init="prior_offset", class_counts=counts
    )
    fresh.load_state_dict({k: v for k, v in state.items() if k != "prior_offset"}, strict=False)
    torch.testing.assert_close(fresh.prior_offset, m)
    # trained terms add on top: with beta = 1, z + m + sigma(x)
    with torch.no_grad():
        cal.beta.fill_(1.0)
    sigma = cal.confidence(x, z)
    torch.testing.assert_close(cal(z, x), z + m + sigma * 1.0)
    with pytest.raises(ValueError, match="'prior_offset' needs the training class counts"):
        DisAlignCalibration(4, 3, margin_init="prior_offset")
