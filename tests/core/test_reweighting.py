import pytest
import torch
import torch.nn.functional as F

from disalign_core import full_class_weights, grw_class_weights, grw_cross_entropy


def test_rho_zero_is_uniform():
    w = grw_class_weights([1000, 10, 1], 0.0)
    assert torch.allclose(w, torch.ones(3))


def test_rho_one_is_inverse_frequency_summing_to_k():
    counts = torch.tensor([100.0, 10.0, 1.0])
    w = grw_class_weights(counts, 1.0)
    expected = (1 / counts) / (1 / counts).sum() * 3
    assert torch.allclose(w, expected)
    assert torch.isclose(w.sum(), torch.tensor(3.0))


def test_formula_eq11_by_hand():
    # r = (0.8, 0.2); rho = 0.5 -> (1/r)^rho = (1.118..., 2.236...)
    w = grw_class_weights([80, 20], 0.5)
    a, b = (1 / 0.8) ** 0.5, (1 / 0.2) ** 0.5
    assert torch.allclose(w, torch.tensor([a, b]) / (a + b) * 2)


def test_zero_count_warns_and_takes_rarest_weight():
    with pytest.warns(UserWarning, match="no training examples.*cat"):
        w = grw_class_weights([50, 0, 5], 1.0, class_names=["dog", "cat", "cow"])
    assert torch.isfinite(w).all()
    assert torch.isclose(w[1], w[2])


def test_zero_count_error_policy_names_the_class():
    with pytest.raises(ValueError, match="no training examples.*cat"):
        grw_class_weights([50, 0, 5], 1.0, zero_count="error", class_names=["dog", "cat", "cow"])


@pytest.mark.parametrize(
    "counts, rho, kwargs, match",
    [
        ([1, 2], -0.5, {}, "rho must be >= 0"),
        ([1, 2], float("nan"), {}, "rho must be a finite number"),
        ([1, -2], 1.0, {}, "got -2.0 for class 1"),
        ([1, float("inf")], 1.0, {}, "got inf for class 1"),
        ([0, 0], 1.0, {}, "every class count is 0"),
        ([1, 2, 3], 1.0, {"num_classes": 4}, "3 entries but the model has 4 classes"),
        ([1, 2], 1.0, {"zero_count": "ignore"}, "zero_count must be one of"),
    ],
)
def test_bad_inputs(counts, rho, kwargs, match):
    with pytest.raises(ValueError, match=match):
        grw_class_weights(counts, rho, **kwargs)


def test_grw_cross_entropy_matches_torch_with_background():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = torch.tensor([0, 1, 2, 3, 3, 1])
    w = grw_class_weights([100, 10, 1], 0.8)
    ours = grw_cross_entropy(logits, targets, w, num_extra_classes=1)
    ref = F.cross_entropy(logits, targets, weight=torch.cat([w, torch.ones(1)]))
    assert torch.allclose(ours, ref)
    assert full_class_weights(w, 1)[-1] == 1.0


def test_grw_cross_entropy_dense_ignore_index():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    targets = torch.randint(0, 3, (2, 4, 4))
    targets[0, 0] = 255
    w = torch.tensor([0.5, 1.0, 1.5])
    ours = grw_cross_entropy(logits, targets, w, ignore_index=255)
    ref = F.cross_entropy(logits, targets, weight=w, ignore_index=255)
    assert torch.allclose(ours, ref)
    none = grw_cross_entropy(logits, targets, w, ignore_index=255, reduction="none")
    assert none.shape == (2, 4, 4) and none[0, 0].eq(0).all()


def test_grw_cross_entropy_empty_is_zero_with_gradient():
    logits = torch.randn(0, 4, requires_grad=True)
    loss = grw_cross_entropy(
        logits, torch.zeros(0, dtype=torch.long), torch.ones(3), num_extra_classes=1
    )
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_grw_cross_entropy_wrong_class_count():
    with pytest.raises(ValueError, match="K\\+E=4"):
        grw_cross_entropy(
            torch.randn(2, 5), torch.zeros(2, dtype=torch.long), torch.ones(3), num_extra_classes=1
        )


def test_grw_cross_entropy_all_ignored_is_zero_with_gradient():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    targets = torch.full((2, 2, 2), 255)
    loss = grw_cross_entropy(logits, targets, torch.ones(3), ignore_index=255)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))
