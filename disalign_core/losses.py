"""Cross-entropy against the re-weighted reference distribution (GRW loss), framework-free.

Shapes: N inputs, K re-weighted classes, E extra classes of weight 1 (the detector's
background), ``*`` optional spatial dims.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["grw_cross_entropy", "full_class_weights"]


def full_class_weights(class_weights: Tensor, num_extra_classes: int = 0) -> Tensor:
    """(K,) GRW weights followed by ``num_extra_classes`` ones: (K + E,)."""
    if num_extra_classes < 0:
        raise ValueError(f"num_extra_classes must be >= 0, got {num_extra_classes}")
    extra = class_weights.new_ones(num_extra_classes)
    return torch.cat([class_weights, extra])


def grw_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    class_weights: Tensor,
    *,
    num_extra_classes: int = 0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Class-weighted cross-entropy: ``F.cross_entropy`` with the GRW weights.

    Args:
        logits (Tensor): (N, K + E, *) scores.
        targets (Tensor): (N, *) int64 labels in [0, K + E) or ``ignore_index``.
        class_weights (Tensor): (K,) weights of the first K classes; the last E get weight 1.
        num_extra_classes (int): E.
        ignore_index (int): label that contributes neither loss nor weight.
        reduction (str): "mean" (sum of weighted losses / sum of weights of the counted
            labels, as torch), "sum" or "none".

    Returns:
        Tensor: scalar, or (N, *) with ``reduction="none"``. An input without any counted
        label gives 0 for "mean" (torch gives NaN) so that an empty batch does not poison
        training, with gradients still connected to ``logits``.
    """
    expected = class_weights.numel() + num_extra_classes
    if logits.dim() < 2 or logits.shape[1] != expected:
        raise ValueError(
            f"logits must have shape (N, K+E={expected}, *), got {tuple(logits.shape)}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    weight = full_class_weights(class_weights.to(logits), num_extra_classes)
    per_item = F.cross_entropy(
        logits, targets, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    # torch's weighted mean, sum(w_t * l) / sum(w_t) over counted labels, computed without a
    # host sync (no data-dependent branch) and 0 instead of NaN when nothing is counted.
    counted = targets != ignore_index
    label_weight = weight[targets.clamp(0, expected - 1)] * counted
    return per_item.sum() / label_weight.sum().clamp_min(torch.finfo(per_item.dtype).tiny)
