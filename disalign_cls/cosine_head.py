"""The paper's cosine classifier for MMPretrain (``Baseline*`` / ``DisAlign*`` in its tables).

Shapes: N images, C feature channels, K classes.

``z_j = s * (w_j . x) / (|w_j| |x|)`` with a learned scale ``s`` (initialised to 20) and no
bias. ``CosineClsHead`` is MMPretrain's ``LinearClsHead`` whose ``fc`` is a ``CosineLinear``:
the same parameter prefix (``head.fc.weight``), the same ``pre_logits`` and ``forward``.

In stage 2 (``DisAlignClsHead(head='CosineClsHead')``) the confidence reads the raw feature
``x`` by default (the paper's ``sigmoid(v . x + b)``); the authors' ``DisAlignNormalizedLinear``
reads ``x / |x|``: ``calibration=dict(confidence_input='l2_normalized')``, the default with
``calibration=dict(form='authors_cls')`` on this head.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS
from torch import Tensor, nn

__all__ = ["CosineClsHead", "CosineLinear"]


class CosineLinear(nn.Module):
    """Scaled cosine similarity between the input and each class weight.

    Args:
        in_features (int): C.
        out_features (int): K.
        scale (float): initial scale s.
        learn_scale (bool): learn s (the paper) or keep it fixed.
    """

    def __init__(
        self, in_features: int, out_features: int, scale: float = 20.0, learn_scale: bool = True
    ):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"CosineLinear: scale must be > 0, got {scale}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features).normal_(std=0.01))
        scale_t = torch.tensor([float(scale)])
        if learn_scale:
            self.scale = nn.Parameter(scale_t)
        else:
            self.register_buffer("scale", scale_t)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C) features -> (N, K) scaled cosines."""
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@MODELS.register_module()
class CosineClsHead(LinearClsHead):
    """``LinearClsHead`` with a cosine classifier.

    Args:
        num_classes (int): K.
        in_channels (int): C.
        scale (float): initial scale of the cosines (paper: 20).
        learn_scale (bool): learn the scale (default True).
        **kwargs: ``LinearClsHead``'s arguments (``loss``, ``topk``, ``cal_acc``, ...).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        scale: float = 20.0,
        learn_scale: bool = True,
        init_cfg: Optional[dict] = None,
        **kwargs,
    ):
        # LinearClsHead's default init_cfg targets nn.Linear layers; CosineLinear initialises
        # itself (the scale of its weight does not matter to a cosine).
        super().__init__(num_classes, in_channels, init_cfg=init_cfg, **kwargs)
        self.fc = CosineLinear(in_channels, num_classes, scale=scale, learn_scale=learn_scale)
