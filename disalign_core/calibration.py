"""DisAlign's distribution calibration (paper eq. 6), framework-free.

Shapes: N inputs, K classes, C feature channels, ``*`` any trailing spatial dims (none for box
or image classifiers, H, W for dense prediction).

Calibrated logits::

    z_hat = (1 + sigma(x) * alpha) * z + sigma(x) * beta

with a per-class magnitude ``alpha`` (K,), a per-class margin ``beta`` (K,) and a confidence
``sigma(x) = sigmoid(v . x + b)`` computed from the feature ``x`` that feeds the classifier.
``alpha = beta = 0`` makes this the identity, so a freshly built calibration reproduces the
stage-1 model exactly.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["CONFIDENCE_MODES", "DisAlignCalibration"]

# "input": sigma(x) = sigmoid(v . x + b), the paper's input-dependent confidence.
# "constant": sigma = sigmoid(b), one learned number (the supplement's ablation, Table 3).
# "none": sigma = 1, magnitude and margin applied as they are.
CONFIDENCE_MODES = ("input", "constant", "none")


class DisAlignCalibration(nn.Module):
    """Per-class magnitude and margin blended by a learned confidence.

    Args:
        num_classes (int): K, the number of logits to calibrate.
        in_channels (int): C, channels of the feature the classifier sees. Only used when
            ``confidence == "input"``.
        use_magnitude (bool): learn the magnitude ``alpha``; if False it stays 0.
        use_margin (bool): learn the margin ``beta``; if False it stays 0.
        confidence (str): one of ``CONFIDENCE_MODES``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        use_magnitude: bool = True,
        use_margin: bool = True,
        confidence: str = "input",
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}")
        if confidence == "input" and (not isinstance(in_channels, int) or in_channels < 1):
            raise ValueError(
                f"in_channels must be a positive int for confidence='input', got {in_channels!r}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.confidence_mode = confidence

        # Disabled terms are absent (None) rather than zero parameters: they then cannot be
        # trained by accident and do not appear in the checkpoint.
        self.alpha = nn.Parameter(torch.zeros(num_classes)) if use_magnitude else None
        self.beta = nn.Parameter(torch.zeros(num_classes)) if use_margin else None

        if not (use_magnitude or use_margin):
            # Nothing to blend: no confidence parameters, which would otherwise get no
            # gradient (DistributedDataParallel reports such parameters as unused).
            confidence = "none"
            self.confidence_mode = confidence
        if confidence == "input":
            # v and b of sigma(x) = sigmoid(v . x + b); a 1x1 conv on dense maps.
            self.confidence_weight = nn.Parameter(torch.empty(in_channels).normal_(std=0.01))
            self.confidence_bias = nn.Parameter(torch.zeros(1))
        elif confidence == "constant":
            self.confidence_weight = None
            self.confidence_bias = nn.Parameter(torch.zeros(1))
        else:
            self.confidence_weight = None
            self.confidence_bias = None

    def confidence(self, features: Optional[Tensor], like: Tensor) -> Tensor:
        """sigma(x) of shape (N, 1, *), or a (1,)-tensor broadcastable to ``like``.

        Args:
            features (Tensor): (N, C, *) feature; may be None unless the mode is "input".
            like (Tensor): (N, K, *) logits, for device and dtype of the constant modes.
        """
        if self.confidence_mode == "none":
            return like.new_ones(1)
        if self.confidence_mode == "constant":
            return torch.sigmoid(self.confidence_bias).to(like.dtype)
        if features is None:
            raise ValueError("confidence='input' needs the classifier's input features, got None")
        if features.dim() < 2 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must have shape (N, C={self.in_channels}, *), "
                f"got {tuple(features.shape)}"
            )
        if features.dim() == 4:
            # Dense maps: a 1x1 convolution, the paper's pixel-wise confidence.
            weight = self.confidence_weight.view(1, -1, 1, 1)
            score = nn.functional.conv2d(features, weight, self.confidence_bias)
        else:
            score = torch.einsum("nc...,c->n...", features, self.confidence_weight)
            score = score.unsqueeze(1) + self.confidence_bias
        return torch.sigmoid(score)

    def forward(self, logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        """Calibrate logits.

        Args:
            logits (Tensor): (N, K, *) classifier outputs z.
            features (Tensor): (N, C, *) classifier inputs x, same N and ``*`` as ``logits``.

        Returns:
            Tensor: (N, K, *) calibrated logits z_hat.
        """
        if logits.dim() < 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, K={self.num_classes}, *), got {tuple(logits.shape)}"
            )
        if features is not None and (
            features.shape[0] != logits.shape[0] or features.shape[2:] != logits.shape[2:]
        ):
            raise ValueError(
                f"features {tuple(features.shape)} and logits {tuple(logits.shape)} must agree "
                "in N and in the spatial dims"
            )
        if self.alpha is None and self.beta is None:
            return logits
        sigma = self.confidence(features, logits)
        view = (1, -1) + (1,) * (logits.dim() - 2)
        out = logits
        if self.alpha is not None:
            out = out + sigma * self.alpha.view(view) * logits
        if self.beta is not None:
            out = out + sigma * self.beta.view(view)
        return out

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, in_channels={self.in_channels}, "
            f"magnitude={self.alpha is not None}, margin={self.beta is not None}, "
            f"confidence={self.confidence_mode!r}"
        )
