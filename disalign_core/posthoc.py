"""Training-free calibration of a stage-1 classifier, framework-free: logit adjustment and
tau-normalisation, the strongest post-hoc baselines beside DisAlign.

Shapes: N inputs, K classes, C feature channels, ``*`` any trailing spatial dims.

- **Logit adjustment** (Menon et al., ICLR 2021): ``z_j - tau * log(pi_j)`` with ``pi`` the
  class prior of the training set (``pi_j = r_j / sum_k r_k`` from the training counts ``r``).
  It is DisAlign's calibration with ``sigma = 1``, ``alpha = 0`` and ``beta = -tau log pi``.
  The margin is **centred** here (its mean over the K classes is subtracted): a softmax over the
  K classes does not see a common shift, so segmentation and classification predict exactly as
  with the uncentred margin, while a detector, which compares the K foreground logits with an
  uncalibrated background logit, is re-ranked between classes without all foreground classes
  moving against the background (``centre=False`` gives the uncentred ``-tau log pi``).
- **tau-normalisation** (Kang et al., ICLR 2020): each class's weight row divided by its norm
  to the power tau, ``w_j / |w_j|^tau``; the bias is kept (as MMPretrain's former
  ``TauNormHook``; Kang et al.'s own classifier has none). For an affine classifier
  ``z_j = w_j . x + b_j`` this is the logit map ``(z_j - b_j) / |w_j|^tau + b_j``
  (``tau_normalized_logits``), which needs no change of the weights: a head applies it to the
  weights it holds at run time, whatever checkpoint was loaded. On a cosine classifier it
  changes nothing (its rows are normalised before use).

tau = 0 is the identity for both. ``PosthocAdjustment`` holds either, without parameters (its
margin is a non-persistent buffer derived from the counts), so a model that uses it has nothing
to train and loads a stage-1 checkpoint unchanged.

The same margin starts DisAlign's calibration at the logit-adjustment solution:
``DisAlignCalibration(..., margin_init="prior", class_counts=..., prior_tau=...)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .reweighting import ZERO_COUNT_POLICIES, Counts, check_class_counts, replace_zero_counts

__all__ = [
    "POSTHOC_TYPES",
    "PosthocAdjustment",
    "check_tau",
    "logit_adjustment_margin",
    "posthoc_config",
    "tau_norm_scale",
    "tau_normalize",
    "tau_normalized_logits",
]

# "logit_adjustment": z - tau log pi (needs the training class counts).
# "tau_norm": the classifier's rows w_j / |w_j|^tau (needs its weight and bias).
POSTHOC_TYPES = ("logit_adjustment", "tau_norm")
# Keys of a ``posthoc`` config dict (``posthoc_config``) and their defaults.
_POSTHOC_DEFAULTS = dict(tau=1.0, class_frequencies=None, zero_count="error")


def check_tau(tau: float, key: Optional[str] = None) -> float:
    """``tau`` as a float; a ValueError naming ``key`` unless it is a finite number >= 0."""
    name = f"tau ({key})" if key else "tau"
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"{name} must be a finite number >= 0 (0: no change), got {tau!r}")
    if tau < 0:
        raise ValueError(f"{name} must be >= 0 (0: no change, 1: the usual choice), got {tau}")
    return float(tau)


def logit_adjustment_margin(
    counts: Counts,
    tau: float = 1.0,
    *,
    centre: bool = True,
    num_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    zero_count: str = "error",
    tau_key: Optional[str] = None,
    counts_key: Optional[str] = None,
) -> Tensor:
    """The logit-adjustment margin ``-tau * log(pi)``, ``pi = counts / sum(counts)``.

    Args:
        counts (sequence or Tensor): (K,) training frequency of each class (images, pixels,
            instances per class; any positive scale, only ratios matter).
        tau (float): the strength, >= 0; 0 gives a zero margin.
        centre (bool): subtract the margin's mean over the K classes (module docstring);
            softmax predictions are the same either way.
        num_classes (int, optional): expected K; another length raises ValueError.
        class_names (sequence of str, optional): named in the zero-count error.
        zero_count (str): a class with count 0 (its log-prior is -inf): "error" raises naming
            the classes; "warn" warns and counts it as the rarest class that has examples
            (as ``grw_class_weights``).
        tau_key, counts_key (str, optional): the config keys that set ``tau`` and the counts,
            named in errors.

    Returns:
        Tensor: (K,) float32 margin, larger for rarer classes.
    """
    tau = check_tau(tau, tau_key)
    if zero_count not in ZERO_COUNT_POLICIES:
        raise ValueError(f"zero_count must be one of {ZERO_COUNT_POLICIES}, got {zero_count!r}")
    what = f"class counts ({counts_key})" if counts_key else "class counts"
    t = check_class_counts(counts, num_classes, what=what)
    if bool((t == 0).all()):
        raise ValueError(f"{what}: every class count is 0, there is no class prior")
    t = replace_zero_counts(
        t,
        zero_count,
        class_names,
        prefix=f"{what}: ",
        infinite="Their log-prior is -inf, so the logit-adjustment margin would be infinite; "
        "fix the frequency data, or choose zero_count='warn' to count them as the rarest "
        "class that has examples.",
        warned="the logit-adjustment margin counts them as the rarest class that has examples",
    )
    margin = -tau * torch.log(t / t.sum())
    if centre:
        margin = margin - margin.mean()
    return margin.float()


def tau_norm_scale(weight: Tensor, tau: float, *, tau_key: Optional[str] = None) -> Tensor:
    """(K,) ``|w_j|^-tau``: the factor tau-normalisation gives class j's weight row.

    Args:
        weight (Tensor): (K, C) classifier weight, or (K, C, 1, 1) of a 1x1 conv; any
            (K, ...) shape, each class's row flattened.
        tau (float): >= 0.
    """
    tau = check_tau(tau, tau_key)
    if weight.dim() < 2:
        raise ValueError(
            f"tau-normalisation needs a (K, C, ...) classifier weight, got {tuple(weight.shape)}"
        )
    # A zero row (a class the classifier never scores) keeps a finite factor: its logit is
    # then its bias whatever the factor.
    norms = weight.detach().flatten(1).norm(dim=1).clamp_min(1e-12)
    return norms.pow(-tau)


def tau_normalize(
    weight: Tensor, tau: float, bias: Optional[Tensor] = None, *, tau_key: Optional[str] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Kang et al.'s tau-normalised classifier: rows ``w_j / |w_j|^tau``, the bias kept.

    Args:
        weight (Tensor): (K, C) or (K, C, 1, 1) classifier weight.
        tau (float): >= 0; 0 returns the weight unchanged, 1 unit-norm rows.
        bias (Tensor, optional): (K,) bias, returned as it is.

    Returns:
        (Tensor, Tensor | None): new (K, ...) weight (the input is not modified), the bias.
    """
    scale = tau_norm_scale(weight, tau, tau_key=tau_key)
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))).to(weight), bias


def tau_normalized_logits(
    logits: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    tau: float,
    *,
    tau_key: Optional[str] = None,
) -> Tensor:
    """The logits the tau-normalised classifier gives, from those of the classifier itself.

    For ``z_j = w_j . x + b_j``: ``(z_j - b_j) / |w_j|^tau + b_j``, equal to classifying ``x``
    with ``tau_normalize(weight, tau, bias)`` (up to float rounding); tau = 0 returns
    ``logits`` itself.

    Args:
        logits (Tensor): (N, K, *) outputs of the classifier.
        weight (Tensor): (K, ...) its weight.
        bias (Tensor, optional): (K,) its bias.
        tau (float): >= 0.
    """
    tau = check_tau(tau, tau_key)
    k = weight.shape[0]
    if logits.dim() < 2 or logits.shape[1] != k:
        raise ValueError(
            f"logits must have shape (N, K={k}, *) for a classifier weight of "
            f"{k} rows, got {tuple(logits.shape)}"
        )
    if tau == 0:
        return logits
    view = (1, -1) + (1,) * (logits.dim() - 2)
    scale = tau_norm_scale(weight, tau).to(logits).view(view)
    if bias is None:
        return logits * scale
    b = bias.detach().to(logits).view(view)
    return (logits - b) * scale + b


def posthoc_config(cfg: Union[None, str, dict], key: str = "posthoc") -> Optional[dict]:
    """A ``posthoc`` config (None, a type name, or a dict) with every key filled in.

    Keys: ``type`` (one of ``POSTHOC_TYPES``), ``tau`` (default 1.0), ``class_frequencies``
    (the training frequencies for logit adjustment; None: the caller's default source) and
    ``zero_count`` ("error" or "warn"). Unknown keys and types are errors naming ``key``.
    """
    if cfg is None:
        return None
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in POSTHOC_TYPES:
        raise ValueError(f"{key}.type must be one of {POSTHOC_TYPES}, got {kind!r}")
    unknown = sorted(set(cfg) - set(_POSTHOC_DEFAULTS))
    if unknown:
        raise ValueError(
            f"{key}: unknown key(s) {unknown}; a posthoc config takes type, "
            + ", ".join(_POSTHOC_DEFAULTS)
        )
    out = dict(_POSTHOC_DEFAULTS, type=kind, **cfg)
    out["tau"] = check_tau(out["tau"], f"{key}.tau")
    return out


class PosthocAdjustment(nn.Module):
    """A training-free adjustment of a classifier's K logits; no parameters.

    Args:
        type (str): "logit_adjustment" or "tau_norm" (``POSTHOC_TYPES``).
        num_classes (int): K.
        tau (float): >= 0; 0 is the identity.
        class_counts (sequence or Tensor, optional): (K,) training counts; required by
            "logit_adjustment", unused by "tau_norm".
        class_names (sequence of str, optional): for messages.
        zero_count (str): see ``logit_adjustment_margin``.
        tau_key, counts_key (str, optional): config keys named in errors.

    ``forward(logits, weight=None, bias=None)``: "logit_adjustment" adds the centred margin
    ``-tau log pi`` (``self.margin``); "tau_norm" needs the classifier's (K, ...) weight and
    (K,) bias and returns ``tau_normalized_logits``.
    """

    def __init__(
        self,
        type: str,
        num_classes: int,
        *,
        tau: float = 1.0,
        class_counts: Optional[Counts] = None,
        class_names: Optional[Sequence[str]] = None,
        zero_count: str = "error",
        tau_key: Optional[str] = None,
        counts_key: Optional[str] = None,
    ):
        super().__init__()
        if type not in POSTHOC_TYPES:
            raise ValueError(f"posthoc type must be one of {POSTHOC_TYPES}, got {type!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.type = type
        self.num_classes = num_classes
        self.tau = check_tau(tau, tau_key)
        margin = None
        if type == "logit_adjustment":
            if class_counts is None:
                raise ValueError(
                    "logit adjustment needs the training class counts"
                    + (f" ({counts_key})" if counts_key else "")
                )
            margin = logit_adjustment_margin(
                class_counts,
                self.tau,
                num_classes=num_classes,
                class_names=class_names,
                zero_count=zero_count,
                tau_key=tau_key,
                counts_key=counts_key,
            )
        # Derived from the counts, not learned: not in the state dict, so a stage-1 checkpoint
        # loads unchanged and a model with this module has nothing to train.
        self.register_buffer("margin", margin, persistent=False)

    def forward(
        self, logits: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None
    ) -> Tensor:
        """Adjust (N, K, *) logits; ``weight`` (K, ...) and ``bias`` (K,) for "tau_norm"."""
        if logits.dim() < 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, K={self.num_classes}, *), got {tuple(logits.shape)}"
            )
        if self.type == "tau_norm":
            if weight is None:
                raise ValueError("tau-normalisation needs the classifier's weight")
            return tau_normalized_logits(logits, weight, bias, self.tau)
        view = (1, -1) + (1,) * (logits.dim() - 2)
        return logits + self.margin.to(logits.dtype).view(view)

    def extra_repr(self) -> str:
        return f"type={self.type!r}, num_classes={self.num_classes}, tau={self.tau}"
