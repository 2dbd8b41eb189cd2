"""``DisAlignHeldOutSubset`` in MMPretrain's DATASETS: a held-out calibration split of a
classification training set (our extension beyond the paper;
``disalign_mmengine.heldout_dataset``). An item's class, for the stratified split, is its
``gt_label`` (``get_cat_ids``; no image is read)."""

from __future__ import annotations

from mmpretrain.registry import DATASETS

from disalign_mmengine.heldout_dataset import DisAlignHeldOutSubset as _HeldOutSubset

__all__ = ["DisAlignHeldOutSubset"]


@DATASETS.register_module()
class DisAlignHeldOutSubset(_HeldOutSubset):
    """The ``part`` (``'stage1'`` or ``'calibration'``) of a held-out split of a
    classification dataset, stratified by class; arguments as
    ``disalign_mmengine.DisAlignHeldOutSubset``."""

    registry = DATASETS
