"""Long-tail class groups used in evaluation, framework-free.

Two ways to group K classes:
- by training counts in bins, e.g. LVIS rare (1-10 images) / common (11-100) / frequent (>100);
- by share of the total, e.g. ADE20K head (>1% of labelled pixels) / body (0.1%-1%) /
  tail (<0.1%).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from .reweighting import Counts, check_class_counts

__all__ = [
    "LVIS_COUNT_BINS",
    "CLASSIFICATION_COUNT_BINS",
    "ADE20K_SHARE_THRESHOLDS",
    "groups_by_count",
    "groups_by_share",
    "group_indices",
]

# (upper bounds, inclusive, of all but the last group; group names from rarest to most frequent)
LVIS_COUNT_BINS = ((10, 100), ("rare", "common", "frequent"))
CLASSIFICATION_COUNT_BINS = ((19, 100), ("few", "medium", "many"))
# (lower bounds, exclusive, of all but the last group; names from most to least frequent)
ADE20K_SHARE_THRESHOLDS = ((0.01, 0.001), ("head", "body", "tail"))


def groups_by_count(
    counts: Counts,
    bounds: Sequence[float] = LVIS_COUNT_BINS[0],
    names: Sequence[str] = LVIS_COUNT_BINS[1],
) -> List[str]:
    """Group of each class by its count: group i holds counts <= bounds[i] (and above the
    previous bound); the last group everything above ``bounds[-1]``.

    Returns:
        list[str]: (K,) group name per class.
    """
    if len(names) != len(bounds) + 1 or list(bounds) != sorted(bounds):
        raise ValueError(
            f"need increasing bounds and one more name than bounds, got {bounds} and {names}"
        )
    t = check_class_counts(counts)
    out = []
    for c in t.tolist():
        i = 0
        while i < len(bounds) and c > bounds[i]:
            i += 1
        out.append(names[i])
    return out


def groups_by_share(
    counts: Counts,
    thresholds: Sequence[float] = ADE20K_SHARE_THRESHOLDS[0],
    names: Sequence[str] = ADE20K_SHARE_THRESHOLDS[1],
    *,
    total: Optional[float] = None,
) -> List[str]:
    """Group of each class by its share of the total count: group 0 holds shares above
    ``thresholds[0]``, group i shares in (thresholds[i], thresholds[i-1]], the last group
    the rest.

    Args:
        total (float): what the shares are of; default the sum of ``counts``. ADE20K's
            ``objectInfo150.txt`` ratios are already shares of all pixels (unlabelled ones
            included, they sum to 0.93), so they are grouped with ``total=1``.

    Returns:
        list[str]: (K,) group name per class.
    """
    if len(names) != len(thresholds) + 1 or list(thresholds) != sorted(thresholds, reverse=True):
        raise ValueError(
            f"need decreasing thresholds and one more name than thresholds, "
            f"got {thresholds} and {names}"
        )
    t = check_class_counts(counts)
    total = float(t.sum()) if total is None else float(total)
    if not total > 0:
        raise ValueError(f"the total to compute shares of must be > 0, got {total}")
    shares = (t / total).tolist()
    out = []
    for s in shares:
        i = 0
        while i < len(thresholds) and s <= thresholds[i]:
            i += 1
        out.append(names[i])
    return out


def group_indices(groups: Sequence[str], names: Sequence[str] = None) -> Dict[str, List[int]]:
    """Map each group name to the class indices in it, in ``names`` order when given."""
    order = list(names) if names is not None else list(dict.fromkeys(groups))
    out: Dict[str, List[int]] = {n: [] for n in order}
    for i, g in enumerate(groups):
        out.setdefault(g, []).append(i)
    return out
