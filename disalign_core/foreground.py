"""The foreground-only split of a detector's class scores.

A two-stage detector's box classifier scores K foreground classes and one background class.
DisAlign's detection recipe calibrates only the K foreground logits and passes the background
logit through unchanged (its re-weighting likewise gives the background weight 1): the
background is not one of the long-tailed classes, and its score decides what is an object at
all. Every detection plugin (detectron2 ``FastRCNNOutputLayers`` with the
background last, MMDetection's ``BBoxHead`` likewise) applies its calibration through
``calibrate_foreground``, so the rule is written once.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["calibrate_foreground"]


def calibrate_foreground(
    scores: Tensor, num_foreground: int, calibrate: Callable[[Tensor], Tensor]
) -> Tensor:
    """``scores`` with ``calibrate`` applied to the foreground logits only.

    Args:
        scores (Tensor): (R, K + B) class logits, the K foreground classes first and B >= 1
            background logits last (detectron2 and MMDetection: B = 1).
        num_foreground (int): K.
        calibrate: maps the (R, K) foreground logits to calibrated (R, K) logits.

    Returns:
        Tensor: (R, K + B), the calibrated foreground logits, then the background unchanged.
    """
    if scores.dim() != 2 or scores.shape[1] <= num_foreground:
        raise ValueError(
            f"calibrate_foreground: expected (R, K + background) scores with K = "
            f"{num_foreground} foreground classes and the background last, got shape "
            f"{tuple(scores.shape)}"
        )
    foreground = calibrate(scores[:, :num_foreground])
    if foreground.shape != (scores.shape[0], num_foreground):
        raise ValueError(
            f"calibrate_foreground: the calibration returned shape {tuple(foreground.shape)} "
            f"for ({scores.shape[0]}, {num_foreground}) foreground logits"
        )
    return torch.cat([foreground, scores[:, num_foreground:]], dim=1)
