"""Training-free calibrations (logit adjustment, tau-normalisation) and DisAlign's prior start."""

import math

import pytest
import torch

from disalign_core import (
    DisAlignCalibration,
    PosthocAdjustment,
    confidence_at_start,
    freeze_all_but_calibration,
    logit_adjustment_margin,
    posthoc_config,
    tau_normalize,
    tau_normalized_logits,
)

COUNTS = [80.0, 15.0, 4.0, 1.0]  # prior 0.8, 0.15, 0.04, 0.01


def test_margin_against_hand_computation():
    raw = [-math.log(p) for p in (0.8, 0.15, 0.04, 0.01)]  # -log pi
    m = logit_adjustment_margin(COUNTS, 1.0, centre=False)
    assert m.dtype == torch.float32
    assert torch.allclose(m, torch.tensor(raw), atol=1e-6)
    half = logit_adjustment_margin(COUNTS, 0.5)  # centred: mean 0, same differences
    mean = sum(raw) / 4
    assert torch.allclose(half, torch.tensor([0.5 * (r - mean) for r in raw]), atol=1e-6)
    assert abs(float(half.sum())) < 1e-5
    assert torch.all(half[1:] > half[:-1])  # rarer class, larger margin
    # Only ratios matter; tau = 0 gives no margin.
    assert torch.allclose(logit_adjustment_margin([c * 7 for c in COUNTS], 0.5), half, atol=1e-6)
    assert torch.equal(logit_adjustment_margin(COUNTS, 0.0), torch.zeros(4))


def test_logit_adjustment_module_is_z_minus_tau_log_prior():
    log_pi = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    z = torch.randn(3, 4, 2, 5)
    la = PosthocAdjustment("logit_adjustment", 4, tau=1.0, class_counts=COUNTS)
    out = la(z)
    expected = z.double() - log_pi.view(1, -1, 1, 1)
    # Centred: equal up to one constant per pixel; softmax and arg-max exactly those of
    # z - log pi.
    shift = (out.double() - expected)[:, :1]
    assert torch.allclose(out.double() - expected, shift.expand_as(expected), atol=1e-5)
    assert torch.allclose(shift, torch.full_like(shift, float(log_pi.mean())), atol=1e-5)
    assert torch.allclose(out.softmax(1).double(), expected.softmax(1), atol=1e-6)
    assert torch.equal(out.argmax(1), expected.argmax(1))
    assert list(la.parameters()) == [] and la.state_dict() == {}  # nothing to train or load
    assert torch.equal(PosthocAdjustment("logit_adjustment", 4, tau=0, class_counts=COUNTS)(z), z)


def test_calibration_with_logit_adjustment_settings_is_logit_adjustment():
    # sigma = 1, alpha = 0, beta = -tau log pi at construction: logit adjustment, untrained.
    z = torch.randn(6, 4)
    cal = DisAlignCalibration(
        4, 8, use_magnitude=False, confidence="none", margin_init="prior", class_counts=COUNTS
    )
    la = PosthocAdjustment("logit_adjustment", 4, tau=1.0, class_counts=COUNTS)
    assert torch.equal(cal(z), la(z))
    assert torch.equal(cal(z), z + logit_adjustment_margin(COUNTS, 1.0))


@pytest.mark.parametrize("confidence", ["input", "input_bn_relu", "constant", "none"])
def test_prior_start_accounts_for_the_confidence(confidence):
    tau = 0.7
    cal = DisAlignCalibration(
        4, 8, confidence=confidence, margin_init="prior", class_counts=COUNTS, prior_tau=tau
    )
    sigma0 = confidence_at_start(confidence)
    assert sigma0 == (1.0 if confidence == "none" else 0.5)
    m = logit_adjustment_margin(COUNTS, tau)
    assert torch.allclose(sigma0 * cal.beta.detach(), m, atol=1e-6)
    assert torch.count_nonzero(cal.alpha) == 0  # the magnitude still starts at 0
    # The effective margin at the start: exactly m where the confidence is sigma_0.
    z = torch.randn(5, 4)
    x = torch.zeros(5, 8)  # v . x = 0: sigma = sigmoid(0) = 0.5 (input_bn_relu in eval)
    cal.eval()
    assert torch.allclose(cal(z, x), z + m, atol=1e-6)
    # beta is an ordinary parameter: it trains, and a checkpoint restores it.
    assert "beta" in cal.state_dict() and cal.beta.requires_grad
    assert {n for n, p in cal.named_parameters()} >= {"alpha", "beta"}
    fresh = DisAlignCalibration(4, 8, confidence=confidence)
    fresh.load_state_dict(cal.state_dict())
    assert torch.equal(fresh.beta, cal.beta)
    assert "margin_init='prior'" in repr(cal) and "prior" not in repr(fresh)


def test_tau_norm_against_hand_computation():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])  # row norms 5, 2, 1
    b = torch.tensor([0.5, -1.0, 2.0])
    w1, b1 = tau_normalize(w, 1.0, b)
    assert torch.allclose(w1, torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]))
    assert b1 is b
    w_half, _ = tau_normalize(w, 0.5)
    assert torch.allclose(w_half, w / torch.tensor([5.0, 2.0, 1.0]).sqrt()[:, None])
    assert torch.equal(w, torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]))  # not in place
    # 1x1 conv weights (segmentation's conv_seg): each class's row flattened.
    wc, _ = tau_normalize(w.view(3, 2, 1, 1), 1.0)
    assert torch.allclose(wc.view(3, 2), w1)
    # On logits: the same as classifying with the normalised rows, for vectors and maps.
    x = torch.randn(7, 2)
    z = x @ w.t() + b
    assert torch.allclose(tau_normalized_logits(z, w, b, 1.0), x @ w1.t() + b, atol=1e-6)
    xm = torch.randn(2, 2, 3, 3)
    zm = torch.nn.functional.conv2d(xm, w.view(3, 2, 1, 1), b)
    ref = torch.nn.functional.conv2d(xm, w1.view(3, 2, 1, 1), b)
    assert torch.allclose(tau_normalized_logits(zm, w.view(3, 2, 1, 1), b, 1.0), ref, atol=1e-6)
    tn = PosthocAdjustment("tau_norm", 3, tau=1.0)
    assert torch.allclose(tn(z, w, b), x @ w1.t() + b, atol=1e-6)


def test_tau_zero_is_the_identity():
    w, b, z = torch.randn(4, 6), torch.randn(4), torch.randn(3, 4)
    assert torch.equal(tau_normalize(w, 0.0)[0], w)
    assert tau_normalized_logits(z, w, b, 0.0) is z
    assert torch.equal(PosthocAdjustment("tau_norm", 4, tau=0.0)(z, w, b), z)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: logit_adjustment_margin(COUNTS, -0.5, tau_key="cfg.tau"),
            r"tau \(cfg\.tau\).*-0\.5",
        ),
        (lambda: logit_adjustment_margin(COUNTS, float("nan")), "finite"),
        (lambda: logit_adjustment_margin(COUNTS, True), "finite"),
        (
            lambda: logit_adjustment_margin(
                [5, 0, 2, 0], class_names=list("abcd"), counts_key="cfg.freq"
            ),
            r"cfg\.freq.*2 class\(es\) have no training examples \(count 0\): b, d",
        ),
        (lambda: logit_adjustment_margin([0, 0]), "every class count is 0"),
        (
            lambda: logit_adjustment_margin(COUNTS, num_classes=5, counts_key="cfg.freq"),
            r"cfg\.freq\) has 4 entries but the model has 5 classes",
        ),
        (lambda: logit_adjustment_margin([1, -2]), "non-negative, got -2"),
        (lambda: tau_normalize(torch.randn(3, 2), -1.0, tau_key="cfg.tau"), r"cfg\.tau"),
        (lambda: PosthocAdjustment("logit_adjustment", 4), "needs the training class counts"),
        (lambda: PosthocAdjustment("tau_norm", 4)(torch.randn(2, 4)), "needs the classifier"),
        (lambda: PosthocAdjustment("temperature", 4), "must be one of"),
        (lambda: posthoc_config(dict(type="tau_norm", t=1), "m.posthoc"), r"m\.posthoc.*\['t'\]"),
        (lambda: posthoc_config("la", "m.posthoc"), r"m\.posthoc\.type must be one of"),
        (lambda: posthoc_config(dict(type="tau_norm", tau=-1), "m.posthoc"), r"m\.posthoc\.tau"),
        (
            lambda: DisAlignCalibration(4, 8, margin_init="prior"),
            "needs the training class counts",
        ),
        (
            lambda: DisAlignCalibration(
                4, 8, use_margin=False, margin_init="prior", class_counts=COUNTS
            ),
            "use_margin=True",
        ),
        (lambda: DisAlignCalibration(4, 8, class_counts=COUNTS), "only used with"),
        (lambda: DisAlignCalibration(4, 8, margin_init="la"), "margin_init must be one of"),
        (
            lambda: DisAlignCalibration(
                3, 8, margin_init="prior", class_counts=COUNTS, counts_key="k.f"
            ),
            r"k\.f\) has 4 entries but the model has 3 classes",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_zero_count_warn_policy_counts_as_rarest():
    with pytest.warns(UserWarning, match="count 0"):
        m = logit_adjustment_margin([8, 0, 2], zero_count="warn")
    assert torch.allclose(m, logit_adjustment_margin([8, 2, 2]))


def test_posthoc_model_has_nothing_to_train():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    model.posthoc = PosthocAdjustment("logit_adjustment", 4, class_counts=COUNTS)
    with pytest.raises(ValueError, match="no DisAlign calibration parameters to train"):
        freeze_all_but_calibration(model)
    assert posthoc_config("tau_norm") == dict(
        type="tau_norm", tau=1.0, class_frequencies=None, zero_count="error"
    )
