"""Generalized re-weighted cross-entropy (GRW, paper eq. 11) as an MMPretrain loss.

Shapes: N images, K classes.

Class weights ``w_c = K (1/r_c)^rho / sum_k (1/r_k)^rho`` from the training images per class
``r`` (core ``grw_class_weights``); the paper's classification setting is rho = 1.2 for a
linear classifier and 1.5 for a cosine one. The loss is ``torch.nn.functional.cross_entropy``
with these weights: with ``reduction="mean"``, the weighted sum over the batch divided by the
sum of the weights of its labels (torch's weighted mean).

MMPretrain's ``ClsHead`` always passes ``avg_factor=N`` (the batch size). Dividing by it
instead would scale each batch's loss by the mean weight of its labels, which changes with the
batch's class mix; the loss therefore keeps torch's normalisation and ignores ``avg_factor``
unless ``use_avg_factor=True``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from disalign_core import grw_class_weights, grw_cross_entropy

from .frequencies import ClassCountSource, load_class_counts

__all__ = ["GRWCrossEntropyLoss"]


@MODELS.register_module()
class GRWCrossEntropyLoss(nn.Module):
    """Cross-entropy with DisAlign's generalized re-weighting.

    Args:
        class_frequencies (dict | str | sequence of float): training images per class: an
            MMPretrain dataset config (its annotation list is counted), a frequency file, or
            the counts (``frequencies.load_class_counts``).
        rho (float): the re-weighting exponent (paper: 1.2 linear, 1.5 cosine classifier);
            0 gives plain cross-entropy, 1 inverse frequency. Must be >= 0.
        num_classes (int, optional): expected K, checked against the counts at build time (the
            logits are always checked at run time).
        zero_count (str): a class with no training image: "error" (default) raises naming it,
            "warn" gives it the weight of the rarest class.
        reduction (str): "mean", "sum" or "none".
        loss_weight (float): factor on the loss.
        use_avg_factor (bool): divide "mean" by the ``avg_factor`` the head passes (MMPretrain's
            convention) instead of by the label weights' sum (torch's). Default False.
    """

    def __init__(
        self,
        class_frequencies: ClassCountSource,
        rho: float = 1.2,
        num_classes: Optional[int] = None,
        zero_count: str = "error",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        use_avg_factor: bool = False,
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"GRWCrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
            )
        counts, names = load_class_counts(
            class_frequencies, num_classes, key="GRWCrossEntropyLoss.class_frequencies"
        )
        weights = grw_class_weights(
            counts, rho, zero_count=zero_count, class_names=names, rho_key="model.head.loss.rho"
        )
        # Not persistent: derived from the training set, so checkpoints stay loadable into
        # plain models and new frequencies take effect on resume.
        self.register_buffer("class_weight", weights, persistent=False)
        self.rho = rho
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.use_avg_factor = use_avg_factor

    def forward(
        self,
        cls_score: Tensor,
        label: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[float] = None,
        reduction_override: Optional[str] = None,
        **kwargs,
    ) -> Tensor:
        """Weighted cross-entropy.

        Args:
            cls_score (Tensor): (N, K) logits.
            label (Tensor): (N,) int64 labels in [0, K), or (N, K) soft targets (batch
                augmentations such as Mixup), which torch weights per class and averages
                over N.
            weight (Tensor, optional): (N,) per-sample weights, multiplied in.
            avg_factor (float, optional): used for "mean" only with ``use_avg_factor=True``.
            reduction_override (str, optional): overrides ``reduction``.

        Returns:
            Tensor: scalar, or (N,) with reduction "none"; times ``loss_weight``.
        """
        reduction = reduction_override or self.reduction
        k = self.class_weight.numel()
        if cls_score.dim() != 2 or cls_score.shape[1] != k:
            raise ValueError(
                f"GRWCrossEntropyLoss has class frequencies for {k} classes but got logits of "
                f"shape {tuple(cls_score.shape)}: the frequency data does not match num_classes"
            )
        class_weight = self.class_weight.to(cls_score)
        if label.dim() == 2:  # soft targets
            per_item = F.cross_entropy(cls_score, label, weight=class_weight, reduction="none")
            norm = label.new_tensor(float(label.shape[0]))
        else:
            if weight is None and not (self.use_avg_factor and avg_factor is not None):
                loss = grw_cross_entropy(cls_score, label, class_weight, reduction=reduction)
                return self.loss_weight * loss
            per_item = grw_cross_entropy(cls_score, label, class_weight, reduction="none")
            norm = class_weight[label]
        if weight is not None:
            per_item = per_item * weight.to(per_item)
            norm = norm * weight.to(per_item) if norm.dim() else norm
        if reduction == "none":
            return self.loss_weight * per_item
        if reduction == "sum":
            return self.loss_weight * per_item.sum()
        if self.use_avg_factor and avg_factor is not None:
            norm = torch.as_tensor(avg_factor, dtype=per_item.dtype, device=per_item.device)
        return self.loss_weight * per_item.sum() / norm.sum().clamp_min(1e-12)

    def extra_repr(self) -> str:
        return f"num_classes={self.class_weight.numel()}, rho={self.rho}"
