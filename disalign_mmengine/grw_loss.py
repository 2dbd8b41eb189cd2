"""The generalized re-weighted cross-entropy (GRW, paper eq. 11) every OpenMMLab plugin registers.

Shapes: N items (images, or pixels of N images), K classes.

Class weights ``w_c = K (1/r_c)^rho / sum_k (1/r_k)^rho`` from the training frequencies ``r``
(core ``grw_class_weights``); the per-item loss is ``w_y * CE(z, y)``. One reduction
vocabulary for all plugins (core ``grw_cross_entropy``): ``reduction`` "mean" | "sum" | "none",
and for "mean" the denominator ``avg_mode``:

- ``"weighted"`` (default): the sum of the weights of the counted items' classes, torch's
  ``F.cross_entropy(weight=w)`` and the authors' classification and detection code;
- ``"all"``: the number of items, unlabelled pixels included: paper eq. 9 (1/N) and the
  authors' segmentation code;
- ``"labelled"``: the number of labelled items.

The heads' own ``avg_factor`` is not used as the denominator: MMPretrain's ``ClsHead`` always
passes the batch size (which ``avg_mode="all"`` already gives) and mmseg's decode heads pass
none; dividing by it under "weighted" would scale each batch's loss by the mean weight of its
labels, which changes with the batch's class mix.

A plugin subclasses ``GRWCrossEntropyLossBase``, reads its frequencies its own way (pixel
shares, an annotation list) and registers the subclass in its framework's ``MODELS``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from torch import Tensor, nn

from disalign_core import check_reduction, grw_class_weights, grw_cross_entropy

__all__ = ["GRWCrossEntropyLossBase"]


class GRWCrossEntropyLossBase(nn.Module):
    """Cross-entropy with DisAlign's generalized re-weighting (module docstring).

    A plugin's subclass sets ``default_rho`` and the config keys, and implements
    ``read_frequencies``; its ``__init__`` is this one.

    Args:
        class_frequencies: the training frequency of each class, in any form the plugin's
            ``read_frequencies`` reads (a file, a list, a dataset config).
        rho (float, optional): the re-weighting exponent (default: ``default_rho``); 0 gives
            plain cross-entropy, 1 inverse frequency. Must be >= 0.
        num_classes (int, optional): expected K, checked against the frequencies at build time
            (the logits are always checked at run time).
        zero_count (str): a class with frequency 0: "error" (default) raises naming it, "warn"
            gives it the weight of the rarest class.
        reduction (str): "mean", "sum" or "none".
        avg_mode (str): denominator of "mean": "weighted" (default), "all" or "labelled".
        loss_weight (float): factor on the loss.
    """

    default_rho: float = 1.0
    frequency_key: str = "loss.class_frequencies"
    rho_key: str = "loss.rho"

    def __init__(
        self,
        class_frequencies: Any,
        rho: Optional[float] = None,
        num_classes: Optional[int] = None,
        zero_count: str = "error",
        reduction: str = "mean",
        avg_mode: str = "weighted",
        loss_weight: float = 1.0,
    ):
        super().__init__()
        check_reduction(reduction, avg_mode)
        rho = self.default_rho if rho is None else rho
        counts, names, source = self.read_frequencies(class_frequencies, num_classes)
        weights = grw_class_weights(
            counts,
            rho,
            num_classes=num_classes,
            zero_count=zero_count,
            class_names=names,
            rho_key=self.rho_key,
        )
        # Not persistent: derived from the training set, so checkpoints stay loadable into
        # plain models and new frequencies take effect on resume.
        self.register_buffer("class_weight", weights, persistent=False)
        # The plugins' heads and data checks name them in their errors.
        self.frequency_source = source
        self.class_names = list(names) if names is not None else None
        self.rho = rho
        self.reduction = reduction
        self.avg_mode = avg_mode
        self.loss_weight = loss_weight

    def read_frequencies(
        self, class_frequencies: Any, num_classes: Optional[int]
    ) -> Tuple[Sequence[float], Optional[Sequence[str]], str]:
        """(K,) counts, (K,) names or None, and the source as errors name it."""
        raise NotImplementedError

    def check_logits(self, cls_score: Tensor) -> None:
        """(N, K, *) logits for the K classes of the frequencies, or a ValueError."""
        k = self.class_weight.numel()
        if cls_score.dim() < 2 or cls_score.shape[1] != k:
            got = cls_score.shape[1] if cls_score.dim() > 1 else "?"
            raise ValueError(
                f"{type(self).__name__} has class frequencies for {k} classes but got logits "
                f"of shape {tuple(cls_score.shape)} ({got} classes): the frequency data "
                f"({self.frequency_source}) does not match num_classes"
            )

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
        """Class-weighted cross-entropy, reduced by ``reduction`` and ``avg_mode``.

        Args:
            cls_score (Tensor): (N, K, *) logits.
            label (Tensor): (N, *) int64 labels in [0, K) or ``ignore_index``.
            weight (Tensor, optional): (N, *) per-item factors (mmseg's pixel samplers,
                MMPretrain's sample weights); with ``avg_mode="weighted"`` they also weight
                the denominator.
            avg_factor (float, optional): not used (module docstring: ``avg_mode`` decides).
            reduction_override (str, optional): overrides ``reduction``.
            ignore_index (int): label to ignore (mmseg's decode heads pass their own).

        Returns:
            Tensor: scalar, or (N, *) with reduction "none"; times ``loss_weight``.
        """
        return self.weighted_cross_entropy(
            cls_score,
            label,
            reduction=reduction_override or self.reduction,
            weight=weight,
            ignore_index=ignore_index,
        )

    def weighted_cross_entropy(
        self,
        cls_score: Tensor,
        label: Tensor,
        *,
        reduction: str,
        weight: Optional[Tensor] = None,
        ignore_index: int = -100,
    ) -> Tensor:
        """``loss_weight`` times the core ``grw_cross_entropy`` of (N, K, *) logits and (N, *)
        int64 labels, reduced by ``reduction`` and ``avg_mode``; ``weight``: (N, *) per-item
        factors (with "weighted" they weight the denominator too)."""
        self.check_logits(cls_score)
        loss = grw_cross_entropy(
            cls_score,
            label,
            self.class_weight,
            ignore_index=ignore_index,
            reduction=reduction,
            avg_mode=self.avg_mode,
            sample_weight=weight,
        )
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.class_weight.numel()}, rho={self.rho}, "
            f"avg_mode={self.avg_mode!r}"
        )
