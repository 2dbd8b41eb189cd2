"""The held-out calibration split: stratified, deterministic, every class kept in stage 1."""

from collections import Counter

import numpy as np
import pytest

from disalign_core import HeldOutSplit, heldout_split


def test_classification_split_keeps_the_class_profile_and_is_deterministic():
    counts = {0: 200, 1: 50, 2: 10, 3: 5, 4: 1}
    labels = [c for c, n in counts.items() for _ in range(n)]
    split = heldout_split(labels, 0.2, seed=3)
    assert sorted(split.stage1 + split.calibration) == list(range(len(labels)))
    assert not set(split.stage1) & set(split.calibration)
    withheld = Counter(labels[i] for i in split.calibration)
    # round(0.2 n) per class, and the single-item class stays in stage 1.
    assert dict(withheld) == {0: 40, 1: 10, 2: 2, 3: 1}
    assert heldout_split(labels, 0.2, seed=3) == split
    assert heldout_split(labels, 0.2, seed=4) != split
    # numpy labels (as datasets store them) give the same split
    assert heldout_split(np.array(labels), 0.2, seed=3) == split


def test_multi_label_items_are_stratified_by_their_rarest_class():
    # 30 images with only class 0; 6 images with classes {0, 1}: those are class 1's stratum.
    labels = [[0]] * 30 + [[0, 1]] * 6 + [None, []]
    split = heldout_split(labels, 0.5, seed=0)
    assert sum(1 for i in split.calibration if i < 30) == 15
    assert sum(1 for i in split.calibration if 30 <= i < 36) == 3
    # the two unlabelled items are one stratum: one of them is withheld
    assert sum(1 for i in split.calibration if i >= 36) == 1


def test_a_class_split_does_not_move_when_another_class_changes():
    a = heldout_split([0] * 10 + [1] * 20, 0.3, seed=1)
    b = heldout_split([0] * 10 + [1] * 40, 0.3, seed=1)
    assert [i for i in a.calibration if i < 10] == [i for i in b.calibration if i < 10]


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "a lot", None])
def test_a_fraction_outside_zero_one_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"HELDOUT\.FRACTION = .*\(0, 1\)"):
        heldout_split([0, 1], bad, key="HELDOUT.FRACTION")


def test_part_names_are_checked():
    split = HeldOutSplit(stage1=[0], calibration=[1])
    assert split.part("calibration") == [1]
    with pytest.raises(ValueError, match="'val' is not one of"):
        split.part("val", key="heldout.part")
