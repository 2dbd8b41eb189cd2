"""Generalized re-weighted cross-entropy (GRW, paper eq. 11) as an MMPretrain loss.

Shapes: N images, K classes.

``disalign_mmengine.GRWCrossEntropyLossBase`` (the weights, the reductions and their
``avg_mode`` vocabulary, shared with MMSegmentation's) with the training images per class read
from a dataset config, a frequency file or a list. The paper's classification setting is
rho = 1.2 for a linear classifier and 1.5 for a cosine one. ``reduction="mean"`` divides by
(``avg_mode``): "weighted" (default), the sum of the weights of the batch's labels, torch's
``F.cross_entropy(weight=w)`` and the authors' code; "all" or "labelled", the batch size N, the
paper's eq. 9. MMPretrain's ``ClsHead`` passes ``avg_factor=N``; it is not used (``avg_mode``
decides). Soft targets (Mixup, CutMix) are averaged over N, as torch does.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from disalign_mmengine import GRWCrossEntropyLossBase

from .frequencies import ClassCountSource, load_class_counts

__all__ = ["GRWCrossEntropyLoss"]

LOSS_FREQUENCY_KEY = "model.head.loss.class_frequencies"
LOSS_RHO_KEY = "model.head.loss.rho"


@MODELS.register_module()
class GRWCrossEntropyLoss(GRWCrossEntropyLossBase):
    """Cross-entropy with DisAlign's generalized re-weighting.

    Args:
        class_frequencies (dict | str | sequence of float): training images per class: an
            MMPretrain dataset config (its annotation list is counted), a frequency file, or
            the counts (``frequencies.load_class_counts``).
        rho (float): the re-weighting exponent (default 1.2; paper: 1.2 linear, 1.5 cosine);
            0 gives plain cross-entropy, 1 inverse frequency. Must be >= 0.
        num_classes (int, optional): expected K, checked against the counts at build time (the
            logits are always checked at run time).
        zero_count (str): a class with no training image: "error" (default) raises naming it,
            "warn" gives it the weight of the rarest class.
        reduction (str): "mean", "sum" or "none".
        avg_mode (str): denominator of "mean": "weighted" (default), "all" or "labelled"
            (module docstring).
        loss_weight (float): factor on the loss.
    """

    default_rho = 1.2
    frequency_key = LOSS_FREQUENCY_KEY
    rho_key = LOSS_RHO_KEY

    def read_frequencies(
        self, class_frequencies: ClassCountSource, num_classes: Optional[int]
    ) -> Tuple[List[float], Optional[List[str]], str]:
        counts, names = load_class_counts(class_frequencies, num_classes, key=LOSS_FREQUENCY_KEY)
        if isinstance(class_frequencies, str):
            source = repr(class_frequencies)
        elif isinstance(class_frequencies, dict):
            source = "the dataset's annotation list"
        else:
            source = f"a list of {len(counts)} numbers"
        return counts, names, source

    def forward(self, cls_score: Tensor, label: Tensor, *args, **kwargs) -> Tensor:
        """The base class's loss of (N, K) logits and (N,) labels; (N, K) soft targets (batch
        augmentations such as Mixup) are weighted per class by torch and averaged over N."""
        if label.dim() != 2:
            return super().forward(cls_score, label, *args, **kwargs)
        weight = kwargs.get("weight", args[0] if args else None)
        reduction = kwargs.get("reduction_override") or self.reduction
        self.check_logits(cls_score)
        per_item = F.cross_entropy(
            cls_score, label, weight=self.class_weight.to(cls_score), reduction="none"
        )
        if weight is not None:
            per_item = per_item * weight.to(per_item)
        if reduction == "none":
            return self.loss_weight * per_item
        total = per_item.sum()
        return self.loss_weight * (total if reduction == "sum" else total / label.shape[0])
