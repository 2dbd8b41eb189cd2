"""A held-out calibration split: part of the training list withheld from stage 1.

Our extension beyond the paper, which calibrates on the training set. A small stage 1 memorises
its training set: its training logits already fit the rare classes, so stage 2's re-weighted
loss on those same images carries little signal about how the model errs on new images.
Withholding a fraction of the training items from stage 1 and calibrating on them gives stage 2
the errors it is meant to correct.

The split is stratified so that both parts keep the training set's class profile: every item
is put in the stratum of its *rarest* class (the class, among those it contains, with the fewest
items in the whole list; items without labels form one stratum of their own), and each stratum
gives ``round(fraction * n)`` of its ``n`` items to the calibration part, never all of them, so
every class that has training items keeps at least one in stage 1. The same list, fraction and
seed always give the same split, in every process.
"""

from __future__ import annotations

import numbers
import random
from collections import Counter
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

__all__ = ["HELDOUT_PARTS", "HeldOutSplit", "check_heldout_fraction", "heldout_split"]

# "stage1": the items stage 1 trains on; "calibration": the withheld items stage 2 trains on.
HELDOUT_PARTS = ("stage1", "calibration")


class HeldOutSplit(NamedTuple):
    """Indices (sorted) into the item list of the two parts; together they are every index."""

    stage1: List[int]
    calibration: List[int]

    def part(self, name: str, key: Optional[str] = None) -> List[int]:
        """The indices of part ``name`` ("stage1" or "calibration")."""
        if name not in HELDOUT_PARTS:
            where = f"{key}: " if key else ""
            raise ValueError(
                f"{where}held-out part {name!r} is not one of {HELDOUT_PARTS}: 'stage1' is the "
                "part stage 1 trains on, 'calibration' the withheld part stage 2 trains on"
            )
        return self.stage1 if name == "stage1" else self.calibration


def check_heldout_fraction(fraction: float, key: Optional[str] = None) -> float:
    """``fraction`` as a float in (0, 1), or a ValueError naming ``key`` and the value."""
    where = f"{key}" if key else "held-out fraction"
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"{where} = {fraction!r}: expected a number in (0, 1)") from None
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"{where} = {fraction!r}: expected the fraction of the training items withheld "
            "from stage 1, a number in (0, 1) (e.g. 0.2)"
        )
    return value


def heldout_split(
    item_labels: Sequence[Union[int, Iterable[int], None]],
    fraction: float,
    *,
    seed: int = 0,
    key: Optional[str] = None,
) -> HeldOutSplit:
    """Split ``len(item_labels)`` items into a stage-1 part and a withheld calibration part.

    Args:
        item_labels: one entry per item: its class (int; a classification image), the classes
            it contains (an iterable; a detection image's categories, a label map's classes),
            or None (labels unknown: the item joins the stratum of unlabelled items).
        fraction: share of each stratum withheld for calibration, in (0, 1).
        seed: seed of the per-stratum shuffle.
        key: the config key of ``fraction``, named in errors.

    Returns:
        HeldOutSplit(stage1, calibration), sorted index lists.
    """
    fraction = check_heldout_fraction(fraction, key)
    labels: List[frozenset] = []
    for entry in item_labels:
        if entry is None:
            labels.append(frozenset())
        elif isinstance(entry, numbers.Integral):  # numpy integers register here too
            labels.append(frozenset([int(entry)]))
        else:
            labels.append(frozenset(int(c) for c in entry))
    items_per_class = Counter(c for classes in labels for c in classes)

    strata: Dict[object, List[int]] = {}
    for index, classes in enumerate(labels):
        # The rarest class decides; ties go to the smaller class id, so the split is stable.
        stratum = min(classes, key=lambda c: (items_per_class[c], c)) if classes else None
        strata.setdefault(stratum, []).append(index)

    calibration: List[int] = []
    for stratum in sorted(strata, key=lambda s: (s is None, s if s is not None else 0)):
        members = strata[stratum]
        withheld = min(int(round(fraction * len(members))), len(members) - 1)
        # One generator per stratum, seeded by (seed, stratum): a class's split does not move
        # when another class gains or loses items.
        rng = random.Random(f"{seed}:{stratum}")
        calibration.extend(rng.sample(members, withheld))
    calibration.sort()
    taken = set(calibration)
    stage1 = [i for i in range(len(labels)) if i not in taken]
    return HeldOutSplit(stage1=stage1, calibration=calibration)
