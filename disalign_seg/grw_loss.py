"""Generalized re-weighted cross-entropy (GRW, paper eq. 11) as an MMSegmentation loss.

Shapes: N images, K classes, H, W label map size.

``disalign_mmengine.GRWCrossEntropyLossBase`` (the weights, the reductions and their ``avg_mode``
vocabulary, shared with MMPretrain's) with class pixel frequencies ``r`` read from a file or a
list, and mmseg's ``loss_name``. The per-pixel loss is ``w_y * CE(z, y)``; with
``reduction="mean"`` the sum over pixels is divided by (``avg_mode``):

- ``"all"``: the number of pixels of the batch, unlabelled ones included: paper eq. 9 (1/N) and
  the authors' code (mmseg 0.x: ``cross_entropy(weight=w, reduction="none")``, then
  ``weight_reduce_loss``'s plain mean). The shipped ADE20K stage-2 configs use it;
- ``"weighted"`` (the default, for configs written before the option existed): the sum of the
  weights of the labelled pixels' classes, torch's ``F.cross_entropy(weight=w)``. Its gradient
  is ``N / sum(w_y)`` times the paper's: on average 1 / sum_c(r_c w_c) = 2.53x at rho 0.3 with
  ADE20K's ratios (objectInfo150.txt, 7% unlabelled pixels), 2.35x over labelled pixels;
- ``"labelled"``: the number of labelled pixels.

mmseg 1.x's own ``CrossEntropyLoss(class_weight=...)`` divides by the labels' weights (as
"weighted"), unlike the 0.x version the authors trained with.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from mmseg.registry import MODELS

from disalign_core import FrequencySource, read_class_frequencies
from disalign_mmengine import GRWCrossEntropyLossBase

__all__ = ["GRWCrossEntropyLoss", "LOSS_FREQUENCY_KEY"]

# Where the shipped configs set the loss's frequencies (error messages name it).
LOSS_FREQUENCY_KEY = "model.decode_head.loss_decode.class_frequencies"
LOSS_RHO_KEY = "model.decode_head.loss_decode.rho"


@MODELS.register_module()
class GRWCrossEntropyLoss(GRWCrossEntropyLossBase):
    """Cross-entropy with DisAlign's generalized re-weighting.

    Args:
        class_frequencies (str | sequence of float): per-class pixel frequencies: a file
            (ADE20K's ``objectInfo150.txt``, or the JSON/text written by
            ``tools/compute_pixel_frequencies.py``) or the numbers.
        rho (float): the re-weighting exponent (default 0.3, the paper's for ADE20K); 0 gives
            plain CE.
        num_classes (int, optional): expected K; checked against the frequencies at build time
            (the logits are always checked at run time).
        zero_count (str): a class with zero frequency: "error" (default) raises, "warn" gives
            it the weight of the rarest class.
        reduction (str): "mean", "sum" or "none".
        avg_mode (str): denominator of "mean": "all" (paper, authors), "weighted" (torch's
            weighted mean, default) or "labelled" (module docstring).
        loss_weight (float): factor on the loss.
        loss_name (str): key in the loss dict; must start with ``loss_`` to be back-propagated.
    """

    default_rho = 0.3
    frequency_key = LOSS_FREQUENCY_KEY
    rho_key = LOSS_RHO_KEY

    def __init__(self, *args, loss_name: str = "loss_grw_ce", **kwargs):
        super().__init__(*args, **kwargs)
        self._loss_name = loss_name

    def read_frequencies(
        self, class_frequencies: FrequencySource, num_classes: Optional[int]
    ) -> Tuple[List[float], Optional[List[str]], str]:
        frequencies = read_class_frequencies(class_frequencies, key=LOSS_FREQUENCY_KEY)
        return frequencies.counts, frequencies.names, frequencies.source

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict (mmseg convention)."""
        return self._loss_name

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, loss_name={self.loss_name!r}"
