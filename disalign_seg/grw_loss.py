"""Generalized re-weighted cross-entropy (GRW, paper eq. 11) as an MMSegmentation loss.

Shapes: N images, K classes, H, W label map size.

Class weights ``w_c = K (1/r_c)^rho / sum_k (1/r_k)^rho`` from the class pixel frequencies
``r`` (core ``grw_class_weights``); the loss is ``torch.nn.functional.cross_entropy`` with
these weights, i.e. with ``reduction="mean"`` the weighted sum over labelled pixels divided by
the sum of the weights of their labels. (mmseg's own CrossEntropyLoss divides by the number
of pixels instead; DisAlign's reference is torch's weighted cross-entropy.)
"""

from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from disalign_core import grw_class_weights, grw_cross_entropy

from .frequencies import FrequencySource, load_class_frequencies

__all__ = ["GRWCrossEntropyLoss"]


@MODELS.register_module()
class GRWCrossEntropyLoss(nn.Module):
    """Cross-entropy with DisAlign's generalized re-weighting.

    Args:
        class_frequencies (str | sequence of float): per-class pixel frequencies: a file
            (ADE20K's ``objectInfo150.txt``, or the JSON/text written by
            ``tools/compute_pixel_frequencies.py``) or the numbers.
        rho (float): the re-weighting exponent (paper: 0.3 for ADE20K); 0 gives plain CE.
        num_classes (int, optional): expected K; checked against the frequencies at build time
            (the logits are always checked at run time).
        zero_count (str): a class with zero frequency: "error" (default) raises, "warn" gives
            it the weight of the rarest class.
        reduction (str): "mean", "sum" or "none".
        loss_weight (float): factor on the loss.
        loss_name (str): key in the loss dict; must start with ``loss_`` to be back-propagated.
    """

    def __init__(
        self,
        class_frequencies: FrequencySource,
        rho: float = 0.3,
        num_classes: Optional[int] = None,
        zero_count: str = "error",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        loss_name: str = "loss_grw_ce",
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        counts, names = load_class_frequencies(class_frequencies)
        weights = grw_class_weights(
            counts, rho, num_classes=num_classes, zero_count=zero_count, class_names=names
        )
        # Not persistent: derived from the frequency file, so checkpoints stay loadable into
        # plain models and a new frequency file takes effect on resume.
        self.register_buffer("class_weight", weights, persistent=False)
        self.rho = rho
        self.reduction = reduction
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict (mmseg convention)."""
        return self._loss_name

    def forward(
        self,
        cls_score: Tensor,
        label: Tensor,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[float] = None,
        reduction_override: Optional[str] = None,
        ignore_index: int = -100,
        **kwargs,
    ) -> Tensor:
        """Weighted cross-entropy.

        Args:
            cls_score (Tensor): (N, K, H, W) logits.
            label (Tensor): (N, H, W) int64 labels in [0, K) or ``ignore_index``.
            weight (Tensor, optional): (N, H, W) per-pixel weights (mmseg's pixel samplers);
                with "mean" the result is then divided by ``sum(w[label] * weight)``.
            avg_factor (float, optional): divisor for "mean" instead of the weight sum.
            reduction_override (str, optional): overrides ``reduction``.
            ignore_index (int): label to ignore; the decode head passes its own.

        Returns:
            Tensor: scalar, or (N, H, W) with reduction "none"; times ``loss_weight``.
        """
        reduction = reduction_override or self.reduction
        k = self.class_weight.numel()
        if cls_score.dim() < 2 or cls_score.shape[1] != k:
            raise ValueError(
                f"GRWCrossEntropyLoss has class frequencies for {k} classes but got logits of "
                f"shape {tuple(cls_score.shape)} ({cls_score.shape[1] if cls_score.dim() > 1 else '?'}"
                " classes): the frequency file does not match num_classes"
            )
        if weight is None and avg_factor is None:
            loss = grw_cross_entropy(
                cls_score, label, self.class_weight, ignore_index=ignore_index, reduction=reduction
            )
            return self.loss_weight * loss
        per_pixel = grw_cross_entropy(
            cls_score, label, self.class_weight, ignore_index=ignore_index, reduction="none"
        )
        if weight is not None:
            per_pixel = per_pixel * weight.to(per_pixel)
        if reduction == "none":
            return self.loss_weight * per_pixel
        if reduction == "sum":
            return self.loss_weight * per_pixel.sum()
        if avg_factor is None:
            valid = label != ignore_index
            label_weight = self.class_weight.to(per_pixel)[label.clamp(0, k - 1)] * valid
            avg_factor = (label_weight * (weight.to(per_pixel) if weight is not None else 1)).sum()
        # An input without labelled pixels gives 0 (with gradient), not NaN.
        return (
            self.loss_weight
            * per_pixel.sum()
            / torch.clamp_min(
                torch.as_tensor(avg_factor, dtype=per_pixel.dtype), torch.finfo(per_pixel.dtype).eps
            )
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.class_weight.numel()}, rho={self.rho}, loss_name={self.loss_name!r}"
        )
