"""The GRW loss's reductions against torch references on hand-made and random inputs."""

import pytest
import torch
import torch.nn.functional as F

from disalign_core import grw_cross_entropy

# (1, 2, 2, 2) logits, 3 labelled pixels and one ignored (255); weights (0.5, 1.5).
LOGITS = torch.tensor([[[[2.0, 0.0], [0.5, -1.0]], [[0.0, 1.0], [0.5, 1.0]]]])
LABEL = torch.tensor([[[0, 1], [1, 255]]])
W = torch.tensor([0.5, 1.5])


def _hand_terms():
    lse = torch.logsumexp(LOGITS, dim=1)[0]
    ce = [lse[0, 0] - 2.0, lse[0, 1] - 1.0, lse[1, 0] - 0.5]
    return 0.5 * ce[0] + 1.5 * ce[1] + 1.5 * ce[2]


@pytest.mark.parametrize(
    "avg_mode, denominator",
    [("weighted", 0.5 + 1.5 + 1.5), ("all", 4.0), ("labelled", 3.0)],
)
def test_hand_made_means(avg_mode, denominator):
    got = grw_cross_entropy(LOGITS, LABEL, W, ignore_index=255, avg_mode=avg_mode)
    assert torch.allclose(got, _hand_terms() / denominator)


def test_modes_against_torch_and_mmseg_style_references():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 7, 5, generator=g)
    label = torch.randint(0, 6, (2, 7, 5), generator=g)
    label[1, :3] = 255
    w = torch.rand(6, generator=g) + 0.2
    per_pixel = F.cross_entropy(logits, label, weight=w, ignore_index=255, reduction="none")
    refs = {
        # torch's own weighted mean
        "weighted": F.cross_entropy(logits, label, weight=w, ignore_index=255),
        # mmseg's cross_entropy then weight_reduce_loss(reduction='mean'): loss.mean()
        "all": per_pixel.mean(),
        # the mean over labelled pixels
        "labelled": per_pixel.sum() / (label != 255).sum(),
    }
    for mode, ref in refs.items():
        got = grw_cross_entropy(logits, label, w, ignore_index=255, avg_mode=mode)
        assert torch.allclose(got, ref, atol=1e-6), mode
    # The modes differ on this input, so each test above could tell them apart.
    assert not torch.allclose(refs["weighted"], refs["all"])
    assert not torch.allclose(refs["all"], refs["labelled"])


def test_sample_weight_and_avg_factor():
    sample = torch.tensor([[[1.0, 2.0], [0.5, 3.0]]])
    per_pixel = F.cross_entropy(LOGITS, LABEL, weight=W, ignore_index=255, reduction="none")
    weighted = per_pixel * sample
    got = grw_cross_entropy(LOGITS, LABEL, W, ignore_index=255, sample_weight=sample)
    assert torch.allclose(got, weighted.sum() / (0.5 * 1.0 + 1.5 * 2.0 + 1.5 * 0.5))
    got = grw_cross_entropy(
        LOGITS, LABEL, W, ignore_index=255, avg_mode="all", sample_weight=sample
    )
    assert torch.allclose(got, weighted.mean())
    got = grw_cross_entropy(LOGITS, LABEL, W, ignore_index=255, avg_factor=7.0)
    assert torch.allclose(got, per_pixel.sum() / 7.0)


@pytest.mark.parametrize("avg_mode", ["weighted", "all", "labelled"])
def test_nothing_labelled_gives_zero_with_gradient(avg_mode):
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    out = grw_cross_entropy(
        logits, torch.full((1, 3, 3), 255), W, ignore_index=255, avg_mode=avg_mode
    )
    assert out.item() == 0.0
    out.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_bad_modes_are_named():
    with pytest.raises(ValueError, match="avg_mode must be one of.*'pixels'"):
        grw_cross_entropy(LOGITS, LABEL, W, avg_mode="pixels")
    with pytest.raises(ValueError, match="reduction must be one of.*'avg'"):
        grw_cross_entropy(LOGITS, LABEL, W, reduction="avg")
