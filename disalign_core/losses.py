"""Cross-entropy against the re-weighted reference distribution (GRW loss), framework-free.

Shapes: N inputs, K re-weighted classes, E extra classes of weight 1 (the detector's
background), ``*`` optional spatial dims.

One implementation of the reduction serves both plugins. ``reduction="mean"`` divides the
sum of the class-weighted per-item losses by a denominator chosen by ``avg_mode``:

- ``"weighted"``: the sum of the weights of the counted labels (torch's weighted mean,
  ``F.cross_entropy(weight=w)``); the detector's default;
- ``"all"``: the number of items, ignored ones included (paper eq. 9's 1/N; the authors'
  MMSegmentation 0.x code: ``cross_entropy(weight=w, reduction="none")`` then
  ``weight_reduce_loss``'s ``loss.mean()``);
- ``"labelled"``: the number of counted (not ignored) items.

(mmseg 1.x's own ``CrossEntropyLoss`` with ``class_weight`` divides by the labels' weights,
as "weighted".)
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AVG_MODES", "REDUCTIONS", "grw_cross_entropy", "full_class_weights"]

AVG_MODES = ("weighted", "all", "labelled")
REDUCTIONS = ("mean", "sum", "none")


def full_class_weights(class_weights: Tensor, num_extra_classes: int = 0) -> Tensor:
    """(K,) GRW weights followed by ``num_extra_classes`` ones: (K + E,)."""
    if num_extra_classes < 0:
        raise ValueError(f"num_extra_classes must be >= 0, got {num_extra_classes}")
    extra = class_weights.new_ones(num_extra_classes)
    return torch.cat([class_weights, extra])


def check_reduction(reduction: str, avg_mode: str = "weighted") -> None:
    """ValueError naming the bad value unless both are known."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if avg_mode not in AVG_MODES:
        raise ValueError(f"avg_mode must be one of {AVG_MODES}, got {avg_mode!r}")


def grw_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    class_weights: Tensor,
    *,
    num_extra_classes: int = 0,
    ignore_index: int = -100,
    reduction: str = "mean",
    avg_mode: str = "weighted",
    sample_weight: Optional[Tensor] = None,
    avg_factor: Optional[Union[float, Tensor]] = None,
) -> Tensor:
    """Class-weighted cross-entropy: ``F.cross_entropy`` with the GRW weights.

    Args:
        logits (Tensor): (N, K + E, *) scores.
        targets (Tensor): (N, *) int64 labels in [0, K + E) or ``ignore_index``.
        class_weights (Tensor): (K,) weights of the first K classes; the last E get weight 1.
        num_extra_classes (int): E.
        ignore_index (int): label that contributes neither loss nor weight.
        reduction (str): "mean", "sum" or "none".
        avg_mode (str): denominator of "mean" (module docstring): "weighted" (default, as
            torch), "all" (paper eq. 9, the authors' segmentation code) or "labelled".
        sample_weight (Tensor, optional): (N, *) per-item factors (mmseg's pixel samplers);
            with "weighted" they also weight the denominator.
        avg_factor (float | Tensor, optional): an explicit denominator for "mean".

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
    check_reduction(reduction, avg_mode)
    weight = full_class_weights(class_weights.to(logits), num_extra_classes)
    per_item = F.cross_entropy(
        logits, targets, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    if sample_weight is not None:
        per_item = per_item * sample_weight.to(per_item)
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    # Denominators computed without a host sync (no data-dependent branch).
    if avg_factor is not None:
        denominator = torch.as_tensor(avg_factor, dtype=per_item.dtype, device=per_item.device)
    elif avg_mode == "all":
        return per_item.mean() if per_item.numel() else per_item.sum()
    else:
        counted = (targets != ignore_index).to(per_item.dtype)
        if avg_mode == "weighted":
            counted = weight[targets.clamp(0, expected - 1)] * counted
            if sample_weight is not None:
                counted = counted * sample_weight.to(per_item)
        denominator = counted.sum()
    # Nothing counted: the numerator is 0, so any positive floor gives 0 instead of NaN.
    return per_item.sum() / denominator.clamp_min(torch.finfo(per_item.dtype).tiny)
