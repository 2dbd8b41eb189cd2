"""DisAlign's distribution calibration (paper eq. 6), framework-free.

Shapes: N inputs, K classes, C feature channels, ``*`` any trailing spatial dims (none for box
or image classifiers, H, W for dense prediction).

Calibrated logits::

    z_hat = (1 + sigma(x) * alpha) * z + sigma(x) * beta

with a per-class magnitude ``alpha`` (K,), a per-class margin ``beta`` (K,) and a confidence
``sigma(x) = sigmoid(v . x + b)`` computed from the feature ``x`` that feeds the classifier.
``alpha = beta = 0`` makes this the identity, so a freshly built calibration reproduces the
stage-1 model exactly.

Differences from the authors' released code, kept on purpose:

- Confidence: the paper's ``sigmoid(v . x + b)`` is the default. The authors' segmentation head
  computes it with mmcv's ``ConvModule`` (1x1 conv without bias, the head's norm layer, ReLU)
  before the sigmoid, so their ``sigma`` is always >= 0.5; ``confidence="input_bn_relu"``
  reproduces that. Its BatchNorm lives inside this module, so it trains in stage 2 (its
  parameters stay trainable and the freezing leaves it in training mode), as theirs does.
- Weight decay on the magnitude: the authors store the scale ``s = 1 + alpha`` (init 1) and
  mmseg's weight decay (5e-4) pulls ``s`` towards 0, i.e. ``alpha`` towards -1 (shrinking the
  calibrated logits). Here ``alpha`` itself is stored (init 0), so weight decay pulls the
  calibration towards the identity (the stage-1 model). With stage 2's LR (0.01, poly) and 8K
  iterations the pull is small either way: ``lr * wd`` = 5e-6 of the stored value per step,
  about 2% over the run (their ``s`` 1 -> 0.98 without gradient, our ``alpha`` x 0.98).
  Exclude ``alpha`` from decay with an optimizer ``paramwise_cfg`` to remove it altogether.

The authors' released classification layer, ``form="authors_cls"`` (the paper's recipe,
``form="paper"``, is the default). Their cvpods ``DisAlignLinear`` / ``DisAlignNormalizedLinear``
compute ``(1 + sigma(x) * s) * z + sigma(x) * b`` with ``sigma(x) = sigmoid(v . x + c)`` from an
``nn.Linear(C, 1)`` whose weight ``v`` is set to the constant 0.1 (``nn.init.constant_``) and
whose bias ``c`` keeps torch's ``nn.Linear`` default, uniform in ``[-1/sqrt(C), 1/sqrt(C)]``;
the scale ``s`` starts at 1 and the margin ``b`` at 0. This is eq. 6 with ``alpha = s``
stored as it is (the same weight decay target as theirs) but started at 1, not 0: stage 2
starts at ``(1 + sigma(x)) * z``, not at the stage-1 model. On the non-negative pooled
features of a ReLU network ``v . x = 0.1 * sum(x)`` grows with the channel count (a mean
activation of 0.1 over 2048 channels gives 20); from about 16.7 on float32's sigmoid rounds to
exactly 1, and its gradient ``sigma * (1 - sigma)`` is then exactly 0: the confidence learns
nothing and the released model is in effect ``(1 + s) * z + b``. ``form="authors_cls"``
reproduces all of that (the initialisation; the formula is the same). It needs
``confidence="input"`` and ``margin_init="zero"``. The authors' cosine classifier
(``DisAlignNormalizedLinear``) feeds its confidence layer the L2-normalised feature
(``confidence_input="l2_normalized"``), whose sum stays small: no saturation there.

``confidence_input="l2_normalized"`` computes the confidence from ``x / |x|`` (torch's
``F.normalize`` over the channel dim) instead of the raw feature, as the authors' cosine
classifier (``DisAlignNormalizedLinear`` with ``feat_norm=True``) does. Default ``"raw"`` (the
paper's ``sigmoid(v . x + b)``).

Our option beyond the paper, off by default: ``margin_init="prior"`` starts the margin at the
logit-adjustment solution instead of 0, so that stage 2 learns only what the class prior does
not give. The calibrated logits then start at ``z + (sigma(x) / sigma_0) * m`` with
``m = -prior_tau * log(pi)`` (centred: mean 0 over the K classes; core
``logit_adjustment_margin``) and ``beta = m / sigma_0``, ``sigma_0 = confidence_at_start(mode)``
the confidence a freshly built calibration has:

- "none": sigma = 1, so ``beta = m`` and the start is exactly logit adjustment (with
  ``use_magnitude=False`` and nothing trained, this *is* logit adjustment);
- "constant": sigma = sigmoid(b) with b = 0 at the start: exactly 0.5, so ``sigma * beta = m``;
- "input": sigma(x) = sigmoid(v . x + b) with b = 0 and v ~ N(0, 0.01^2): 0.5 at v . x = 0,
  close to it for every input at the start (``sigma(x) * beta = m`` up to that spread);
- "input_bn_relu": sigmoid(relu(bn(v . x))) >= 0.5: 0.5 is its smallest value, taken where the
  normalised score is <= 0 (half the pixels of a training batch); elsewhere
  ``sigma(x) * beta = (sigma(x) / 0.5) * m`` starts between ``m`` and ``2 m``.

A checkpoint holds ``beta`` itself, so stage-2 checkpoints load and resume as always; a
stage-1 checkpoint, which has no calibration, leaves the prior start in place.

Why "prior" drifts away from logit adjustment: the prior sits in ``sigma(x) * beta``, and
stage 2's re-weighted loss raises the confidence (on the demo's detector from 0.5 to 0.83 at
rho = 0.8), so the effective margin grows past ``m`` (1.6 times it there) before ``beta`` can
adapt. ``margin_init="prior_offset"`` keeps the prior out of the gate::

    z_hat = (1 + sigma(x) * alpha) * z + sigma(x) * beta + m

with ``m`` fixed (a buffer computed from the class counts when the module is built, not
trained; it is saved in the checkpoint, and a module built without the option refuses a
checkpoint that has one instead of silently dropping it) and ``beta`` starting at 0: stage 2
starts at exactly logit adjustment for every input and every confidence mode, and learns only
a residual magnitude and margin.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .posthoc import logit_adjustment_margin
from .reweighting import Counts

__all__ = [
    "AUTHORS_CLS_CONFIDENCE_WEIGHT",
    "CONFIDENCE_INPUTS",
    "CONFIDENCE_MODES",
    "FORMS",
    "MARGIN_INITS",
    "DisAlignCalibration",
    "confidence_at_start",
]

# "input": sigma(x) = sigmoid(v . x + b), the paper's input-dependent confidence.
# "input_bn_relu": sigma(x) = sigmoid(relu(bn(v . x))), the authors' segmentation code (>= 0.5).
# "constant": sigma = sigmoid(b), one learned number (the supplement's ablation, Table 3).
# "none": sigma = 1, magnitude and margin applied as they are.
CONFIDENCE_MODES = ("input", "input_bn_relu", "constant", "none")
_INPUT_MODES = ("input", "input_bn_relu")
# "zero": beta = 0, the identity start (the paper). "prior": the logit-adjustment start, in the
# learned margin. "prior_offset": the logit-adjustment margin as a fixed offset outside the
# confidence, beta = 0 (module docstring).
MARGIN_INITS = ("zero", "prior", "prior_offset")
_PRIOR_INITS = ("prior", "prior_offset")
# "paper": alpha = beta = 0 and v ~ N(0, 0.01^2), b = 0: the identity start (eq. 6).
# "authors_cls": the authors' released classification layer (cvpods DisAlignLinear): alpha = 1,
# beta = 0, v = 0.1 everywhere, b as torch's nn.Linear bias (module docstring).
FORMS = ("paper", "authors_cls")
# The constant of the authors' nn.init.constant_(self.confidence_layer.weight, 0.1).
AUTHORS_CLS_CONFIDENCE_WEIGHT = 0.1
# What the confidence is computed from: the feature as it is, or L2-normalised over channels.
CONFIDENCE_INPUTS = ("raw", "l2_normalized")


def confidence_at_start(confidence: str) -> float:
    """sigma_0, the confidence of a freshly built calibration that ``margin_init="prior"``
    divides by: 1 for "none", 0.5 (sigmoid(0)) for the others (module docstring)."""
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}")
    return 1.0 if confidence == "none" else 0.5


class DisAlignCalibration(nn.Module):
    """Per-class magnitude and margin blended by a learned confidence.

    Args:
        num_classes (int): K, the number of logits to calibrate.
        in_channels (int): C, channels of the feature the classifier sees. Only used by the
            input-dependent confidences ("input", "input_bn_relu").
        use_magnitude (bool): learn the magnitude ``alpha``; if False it stays 0.
        use_margin (bool): learn the margin ``beta``; if False it stays 0.
        confidence (str): one of ``CONFIDENCE_MODES``.
        margin_init (str): "zero" (the paper: identity start), "prior": ``beta`` starts at
            ``-prior_tau * log(pi) / sigma_0``, centred, or "prior_offset": that margin
            (without ``/ sigma_0``) as a fixed offset outside the confidence, ``beta`` at 0
            (module docstring).
        form (str): "paper" (default: the identity start) or "authors_cls": the authors'
            released classification layer's start, ``alpha = 1``, ``beta = 0``, confidence
            weight 0.1 everywhere and bias uniform in ``[-1/sqrt(C), 1/sqrt(C)]`` (module
            docstring); needs ``confidence="input"`` and ``margin_init="zero"``.
        confidence_input (str): "raw" (default, the paper) or "l2_normalized": the confidence
            of the input modes reads ``x / |x|`` (the authors' cosine classifier).
        class_counts (sequence or Tensor, optional): (K,) training counts giving ``pi``; only
            with ``margin_init="prior"`` or ``"prior_offset"``, which require them.
        prior_tau (float): tau of the prior start, >= 0.
        class_names (sequence of str, optional): named in the zero-count error.
        zero_count (str): a class with count 0: "error" (default) or "warn", as
            ``posthoc.logit_adjustment_margin``.
        counts_key, tau_key (str, optional): config keys named in errors.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        use_magnitude: bool = True,
        use_margin: bool = True,
        confidence: str = "input",
        margin_init: str = "zero",
        form: str = "paper",
        confidence_input: str = "raw",
        class_counts: Optional[Counts] = None,
        prior_tau: float = 1.0,
        class_names: Optional[Sequence[str]] = None,
        zero_count: str = "error",
        counts_key: Optional[str] = None,
        tau_key: Optional[str] = None,
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}")
        if confidence in _INPUT_MODES and (not isinstance(in_channels, int) or in_channels < 1):
            raise ValueError(
                f"in_channels must be a positive int for confidence={confidence!r}, "
                f"got {in_channels!r}"
            )
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if form == "authors_cls" and confidence != "input":
            raise ValueError(
                "form='authors_cls' is the authors' classification layer, whose confidence is "
                f"sigmoid(v . x + c): it needs confidence='input', got {confidence!r}"
            )
        if form == "authors_cls" and margin_init != "zero":
            raise ValueError(
                "form='authors_cls' starts the margin at 0 as the authors' layer: it needs "
                f"margin_init='zero', got {margin_init!r}"
            )
        if confidence_input not in CONFIDENCE_INPUTS:
            raise ValueError(
                f"confidence_input must be one of {CONFIDENCE_INPUTS}, got {confidence_input!r}"
            )
        if confidence_input != "raw" and confidence not in _INPUT_MODES:
            raise ValueError(
                f"confidence_input={confidence_input!r} only applies to the input-dependent "
                f"confidences {_INPUT_MODES}, got confidence={confidence!r}"
            )
        if margin_init not in MARGIN_INITS:
            raise ValueError(f"margin_init must be one of {MARGIN_INITS}, got {margin_init!r}")
        if margin_init == "prior" and not use_margin:
            raise ValueError("margin_init='prior' needs the margin: use_margin=True")
        if margin_init in _PRIOR_INITS and class_counts is None:
            raise ValueError(
                f"margin_init={margin_init!r} needs the training class counts"
                + (f" ({counts_key})" if counts_key else "")
            )
        if margin_init == "zero" and class_counts is not None:
            raise ValueError(
                "class_counts are only used with margin_init='prior' or 'prior_offset'"
                + (f" ({counts_key})" if counts_key else "")
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.confidence_mode = confidence
        self.form = form
        self.confidence_input = confidence_input

        # Disabled terms are absent (None) rather than zero parameters: they then cannot be
        # trained by accident and do not appear in the checkpoint.
        # The authors' classification layer stores its scale s = alpha and starts it at 1.
        alpha_start = 1.0 if form == "authors_cls" else 0.0
        self.alpha = (
            nn.Parameter(torch.full((num_classes,), alpha_start)) if use_magnitude else None
        )
        self.beta = nn.Parameter(torch.zeros(num_classes)) if use_margin else None

        if not (use_magnitude or use_margin):
            # Nothing to blend: no confidence parameters, which would otherwise get no
            # gradient (DistributedDataParallel reports such parameters as unused).
            confidence = "none"
            self.confidence_mode = confidence
        self.margin_init = margin_init
        self.prior_tau = prior_tau if margin_init in _PRIOR_INITS else None
        # (K,) the fixed logit-adjustment offset of margin_init="prior_offset", else None.
        self.register_buffer("prior_offset", None)
        if margin_init in _PRIOR_INITS:
            prior = logit_adjustment_margin(
                class_counts,
                prior_tau,
                num_classes=num_classes,
                class_names=class_names,
                zero_count=zero_count,
                tau_key=tau_key,
                counts_key=counts_key,
            )
        if margin_init == "prior":
            with torch.no_grad():
                self.beta.copy_(prior / confidence_at_start(confidence))
        elif margin_init == "prior_offset":
            # In the checkpoint, so that a model built without the option refuses it (below).
            self.prior_offset = prior.float()
        self.confidence_norm: Optional[nn.Module] = None
        if confidence == "input" and form == "authors_cls":
            # nn.Linear(C, 1) after nn.init.constant_(weight, 0.1); its bias keeps torch's
            # nn.Linear default (kaiming-uniform fan-in bound 1/sqrt(C)).
            self.confidence_weight = nn.Parameter(
                torch.full((in_channels,), AUTHORS_CLS_CONFIDENCE_WEIGHT)
            )
            bound = 1.0 / math.sqrt(in_channels)
            self.confidence_bias = nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        elif confidence == "input":
            # v and b of sigma(x) = sigmoid(v . x + b); a 1x1 conv on dense maps.
            self.confidence_weight = nn.Parameter(torch.empty(in_channels).normal_(std=0.01))
            self.confidence_bias = nn.Parameter(torch.zeros(1))
        elif confidence == "input_bn_relu":
            # v of the 1x1 conv; no bias, the norm's own bias takes its place (as mmcv's
            # ConvModule, bias="auto"). A one-channel BatchNorm over (N, 1, L).
            self.confidence_weight = nn.Parameter(torch.empty(in_channels).normal_(std=0.01))
            self.confidence_bias = None
            self.confidence_norm = nn.BatchNorm1d(1)
        elif confidence == "constant":
            self.confidence_weight = None
            self.confidence_bias = nn.Parameter(torch.zeros(1))
        else:
            self.confidence_weight = None
            self.confidence_bias = None

    def confidence(self, features: Optional[Tensor], like: Tensor) -> Tensor:
        """sigma(x) of shape (N, 1, *), or a (1,)-tensor broadcastable to ``like``.

        Args:
            features (Tensor): (N, C, *) feature; may be None for "constant" and "none".
            like (Tensor): (N, K, *) logits, for device and dtype of the constant modes.
        """
        if self.confidence_mode == "none":
            return like.new_ones(1)
        if self.confidence_mode == "constant":
            return torch.sigmoid(self.confidence_bias).to(like.dtype)
        score = self._confidence_score(features)  # (N, 1, *)
        if self.confidence_norm is not None:
            # BatchNorm over the N * prod(*) values of the single channel, then ReLU.
            normed = self.confidence_norm(score.reshape(score.shape[0], 1, -1))
            score = torch.relu(normed.reshape(score.shape))
        return torch.sigmoid(score)

    def _confidence_score(self, features: Optional[Tensor]) -> Tensor:
        """v . x (+ b): (N, 1, *) from (N, C, *) features."""
        if features is None:
            raise ValueError(
                f"confidence={self.confidence_mode!r} needs the classifier's input features, "
                "got None"
            )
        if features.dim() < 2 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must have shape (N, C={self.in_channels}, *), "
                f"got {tuple(features.shape)}"
            )
        if self.confidence_input == "l2_normalized":
            # The authors' cosine classifier feeds its confidence layer x / |x| (dim 1).
            features = F.normalize(features, dim=1)
        if features.dim() == 4:
            # Dense maps: a 1x1 convolution, the paper's pixel-wise confidence.
            weight = self.confidence_weight.view(1, -1, 1, 1)
            score = nn.functional.conv2d(features, weight, self.confidence_bias)
        else:
            score = torch.einsum("nc...,c->n...", features, self.confidence_weight).unsqueeze(1)
            if self.confidence_bias is not None:
                score = score + self.confidence_bias
        return score

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        if self.prior_offset is None and prefix + "prior_offset" in state_dict:
            raise ValueError(
                f"checkpoint does not fit the model: {prefix}prior_offset is the fixed "
                "logit-adjustment offset of a calibration trained with "
                f"margin_init='prior_offset', but this one is built with "
                f"margin_init={self.margin_init!r}, which would drop it. Build the model with "
                "margin_init='prior_offset' (MODEL.DISALIGN.MARGIN_INIT, or the head's "
                "calibration.margin_init): test with the config that trained the checkpoint"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

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
        view = (1, -1) + (1,) * (logits.dim() - 2)
        offset = self.prior_offset
        if self.alpha is None and self.beta is None:
            return logits if offset is None else logits + offset.to(logits).view(view)
        sigma = self.confidence(features, logits)
        out = logits if offset is None else logits + offset.to(logits).view(view)
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
            + (f", form={self.form!r}" if self.form != "paper" else "")
            + (
                f", confidence_input={self.confidence_input!r}"
                if self.confidence_input != "raw"
                else ""
            )
            + (
                f", margin_init={self.margin_init!r}, prior_tau={self.prior_tau}"
                if self.margin_init in _PRIOR_INITS
                else ""
            )
        )
