"""Generalized re-weighting (GRW, paper eq. 11), framework-free.

For K classes with training frequencies r_c, the class weights are::

    w_c = K * (1 / r_c)^rho / sum_k (1 / r_k)^rho

The factor K (from the authors' code) makes the weights average 1, which keeps the loss on
the scale of plain cross-entropy. rho = 0 is instance-balanced (all weights 1), rho = 1 is
class-balanced (inverse frequency). Only ratios of r matter, so raw counts may be passed.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = ["ZERO_COUNT_POLICIES", "check_class_counts", "grw_class_weights"]

# What to do with a class that has no training examples (count 0), whose weight would be inf:
# "error": raise ValueError naming the classes.
# "warn":  warn, and give those classes the weight of the rarest class that has examples
#          (their count is taken as the smallest positive count).
ZERO_COUNT_POLICIES = ("error", "warn")

Counts = Union[Sequence[float], Tensor]


def check_class_counts(
    counts: Counts, num_classes: int = None, what: str = "class counts"
) -> Tensor:
    """Validate per-class counts and return them as a float64 tensor of shape (K,).

    Raises:
        ValueError: if ``counts`` is not one-dimensional, has a length other than
            ``num_classes``, or holds a negative or non-finite value.
    """
    t = torch.as_tensor(counts, dtype=torch.float64).detach().cpu()
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    if num_classes is not None and t.numel() != num_classes:
        raise ValueError(f"{what} has {t.numel()} entries but the model has {num_classes} classes")
    bad = (~torch.isfinite(t)) | (t < 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{what} must be finite and non-negative, got {t[i].item()} for class {i}")
    return t


def replace_zero_counts(
    t: Tensor,
    zero_count: str,
    class_names: Sequence[str] = None,
    *,
    infinite: str,
    warned: str,
    prefix: str = "",
) -> Tensor:
    """Apply a zero-count policy to (K,) counts that are not all zero: "error" raises naming
    the classes with count 0 (``infinite`` says what would be infinite and the fix), "warn"
    warns (``warned``) and gives them the count of the rarest class that has examples.

    Args:
        t (Tensor): (K,) counts, each >= 0, not all 0.
        zero_count (str): one of ``ZERO_COUNT_POLICIES``.
        class_names (sequence of str): (K,) names, for the messages.
        prefix (str): put before the messages (e.g. the counts' config key).
    """
    zero = t == 0
    if not bool(zero.any()):
        return t
    idx = zero.nonzero().flatten().tolist()
    named = [class_names[i] if class_names is not None else str(i) for i in idx]
    shown = ", ".join(named[:10]) + (" ..." if len(named) > 10 else "")
    found = f"{prefix}{len(idx)} class(es) have no training examples (count 0): {shown}"
    if zero_count == "error":
        raise ValueError(f"{found}. {infinite}")
    warnings.warn(f"{found}; {warned}", stacklevel=3)
    return torch.where(zero, t[~zero].min(), t)


def grw_class_weights(
    counts: Counts,
    rho: float,
    *,
    num_classes: int = None,
    zero_count: str = "warn",
    class_names: Sequence[str] = None,
    rho_key: str = None,
) -> Tensor:
    """Class weights of generalized re-weighting.

    Args:
        counts (sequence or Tensor): (K,) training frequency of each class (images per class,
            pixels per class, ...); any positive scale.
        rho (float): the exponent; 0 gives uniform weights, 1 inverse frequency.
        num_classes (int): expected K; a different length raises ValueError.
        zero_count (str): one of ``ZERO_COUNT_POLICIES``.
        class_names (sequence of str): used in messages only.
        rho_key (str): the config key that set ``rho`` (e.g. ``MODEL.DISALIGN.RHO``), named
            in the error for a bad ``rho``.

    Returns:
        Tensor: (K,) float32 weights that sum to K.
    """
    name = f"rho ({rho_key})" if rho_key else "rho"
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
        raise ValueError(f"{name} must be a finite number >= 0, got {rho!r}")
    if rho < 0:
        raise ValueError(
            f"{name} must be >= 0 (0: instance-balanced, 1: class-balanced), got {rho}"
        )
    if zero_count not in ZERO_COUNT_POLICIES:
        raise ValueError(f"zero_count must be one of {ZERO_COUNT_POLICIES}, got {zero_count!r}")
    t = check_class_counts(counts, num_classes)
    if bool((t == 0).all()):
        raise ValueError("every class count is 0: no frequency data to re-weight with")
    t = replace_zero_counts(
        t,
        zero_count,
        class_names,
        infinite="Their re-weighting weight would be infinite; fix the frequency data, or "
        "choose the 'warn' policy to give them the weight of the rarest class.",
        warned="they get the re-weighting weight of the rarest class that has examples",
    )
    # In log space: (1/r_c)^rho / sum_k (1/r_k)^rho = softmax(-rho log r)_c. The direct
    # formula overflows to inf/inf = NaN from about rho = 200 (float64); the softmax stays
    # finite for every finite rho (the rarest classes share K, the others tend to 0).
    log_inv_freq = -float(rho) * torch.log(t / t.sum())
    weights = torch.softmax(log_inv_freq, dim=0) * t.numel()
    return weights.float()
