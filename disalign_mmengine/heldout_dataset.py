"""``DisAlignHeldOutSubset``: one part of a held-out calibration split of a training dataset.

Our extension beyond the paper (which calibrates on the training set; see
``disalign_core.heldout``): stage 1 trains on ``part='stage1'`` of the training items and
stage 2 calibrates on the withheld ``part='calibration'``, so the calibration sees the errors
the stage-1 model makes on images it has not memorised. Both stages' configs wrap the same
training dataset with the same ``fraction`` and ``seed``; the two parts are disjoint and
together are the whole dataset. The split is stratified by each item's rarest class
(``disalign_core.heldout_split``), so both parts keep the training set's class profile; the
class frequencies of the GRW loss, the prior and the long-tail metric stay those of the whole
training set.

A wrapper in the manner of mmengine's ``ClassBalancedDataset`` (``mmengine.dataset.
dataset_wrapper``): not a ``BaseDataset`` (a subset of a subset would be ambiguous, so
``get_subset`` is refused), ``metainfo`` is the wrapped dataset's, ``lazy_init`` defers
building the index list to ``full_init`` (the first ``len``, ``get_data_info`` or item), and
``get_data_info`` / ``get_cat_ids`` / items are those of the wrapped dataset at the part's
indices. Imports mmengine and ``disalign_core`` only, never MMSegmentation or MMPretrain: the framework
plugins subclass it to read their items' classes (``item_labels``) and to build the wrapped
dataset with their own ``DATASETS`` registry (``registry``), and register the subclass there
(``disalign_seg.heldout_dataset``, ``disalign_cls.heldout_dataset``).
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset, force_full_init
from mmengine.logging import print_log
from mmengine.registry import DATASETS, Registry

from disalign_core.heldout import HELDOUT_PARTS, check_heldout_fraction, heldout_split

__all__ = ["DisAlignHeldOutSubset"]

ItemLabels = Union[int, Sequence[int], None]


class DisAlignHeldOutSubset:
    """The ``part`` of a stratified held-out split of ``dataset``.

    Stage-1 config::

        train_dataloader = dict(dataset=dict(
            type='DisAlignHeldOutSubset', dataset=<the training dataset>, fraction=0.2,
            part='stage1', seed=0))

    stage-2 config: the same with ``part='calibration'``.

    Args:
        dataset (BaseDataset | dict): the training dataset, or its config (built with
            ``registry``, i.e. the framework's ``DATASETS``).
        fraction (float): share of the items withheld for calibration, in (0, 1).
        part (str): ``'stage1'`` (the items stage 1 trains on, about ``1 - fraction`` of
            them) or ``'calibration'`` (the withheld items stage 2 trains on).
        seed (int): seed of the split; the same dataset, fraction and seed give the same
            split in every process and run.
        lazy_init (bool): split only at ``full_init`` (the first access), as mmengine's
            wrappers; the split needs every item's classes (for segmentation: every label map
            read once).
    """

    # The registry that builds ``dataset`` from a config: mmengine's root DATASETS (which
    # defers to the default scope's registry); the framework subclasses set their own.
    registry: Registry = DATASETS
    # How errors name this wrapper's keys.
    key = "DisAlignHeldOutSubset"

    def __init__(
        self,
        dataset: Union[BaseDataset, dict],
        fraction: float = 0.2,
        part: str = "stage1",
        seed: int = 0,
        lazy_init: bool = False,
    ):
        if part not in HELDOUT_PARTS:
            raise ValueError(
                f"{self.key}.part = {part!r}: expected one of {HELDOUT_PARTS}: 'stage1' in the "
                "stage-1 config (the items stage 1 trains on), 'calibration' in the stage-2 "
                "config (the withheld items stage 2 calibrates on)"
            )
        self.fraction = check_heldout_fraction(fraction, key=f"{self.key}.fraction")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"{self.key}.seed = {seed!r}: expected an integer")
        self.part, self.seed = part, int(seed)
        if isinstance(dataset, dict):
            self.dataset = self.registry.build(dataset)
        elif isinstance(dataset, BaseDataset):
            self.dataset = dataset
        else:
            raise TypeError(
                f"{self.key}.dataset: expected a dataset config (dict) or a BaseDataset, got "
                f"{type(dataset).__name__}"
            )
        self._metainfo = self.dataset.metainfo
        self.indices: List[int] = []
        self.split = None  # disalign_core.HeldOutSplit, set by full_init
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's meta information (a copy, as mmengine's wrappers give it)."""
        return copy.deepcopy(self._metainfo)

    def item_labels(self) -> List[ItemLabels]:
        """Each item's classes, for stratifying: ``get_cat_ids`` of the wrapped dataset
        (MMPretrain: ``[gt_label]``), or the data info's ``gt_label``. Subclasses override it
        (segmentation reads the label maps)."""
        labels: List[ItemLabels] = []
        for i in range(len(self.dataset)):
            try:
                labels.append(list(self.dataset.get_cat_ids(i)))
            except NotImplementedError:
                gt = self.dataset.get_data_info(i).get("gt_label")
                labels.append(None if gt is None else _as_labels(gt))
        return labels

    def full_init(self) -> None:
        """Initialise the wrapped dataset and compute the split (once)."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        labels = self.item_labels()
        if len(labels) != len(self.dataset):
            raise RuntimeError(
                f"{type(self).__name__}.item_labels gave {len(labels)} entries for "
                f"{len(self.dataset)} items"
            )
        self.split = heldout_split(
            labels, self.fraction, seed=self.seed, key=f"{self.key}.fraction"
        )
        self.indices = self.split.part(self.part, key=f"{self.key}.part")
        if not self.indices:
            raise ValueError(
                f"{self.key}: part {self.part!r} of the {len(labels)} items (fraction "
                f"{self.fraction}) is empty; use a larger dataset or another {self.key}.fraction"
            )
        print_log(
            f"{self.key}: part {self.part!r}, {len(self.indices)} of {len(labels)} items, "
            f"fraction {self.fraction}, seed {self.seed}",
            logger="current",
        )
        self._fully_initialized = True

    @force_full_init
    def _get_ori_dataset_idx(self, idx: int) -> int:
        """The wrapped dataset's index of this part's item ``idx``."""
        return self.indices[idx]

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The data info of this part's item ``idx`` (the wrapped dataset's)."""
        return self.dataset.get_data_info(self._get_ori_dataset_idx(idx))

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        """The category ids of this part's item ``idx`` (the wrapped dataset's)."""
        return self.dataset.get_cat_ids(self._get_ori_dataset_idx(idx))

    def __getitem__(self, idx: int) -> Any:
        if not self._fully_initialized:
            self.full_init()
        return self.dataset[self._get_ori_dataset_idx(idx)]

    @force_full_init
    def __len__(self) -> int:
        return len(self.indices)

    def get_subset_(self, indices: Union[List[int], int]) -> None:
        """Refused, as by mmengine's wrappers: a subset of a part is ambiguous."""
        raise NotImplementedError(
            f"{self.key} does not support get_subset_: take the subset of the wrapped dataset "
            "(its `indices` argument) and wrap that"
        )

    def get_subset(self, indices: Union[List[int], int]) -> Optional[BaseDataset]:
        """Refused, as by mmengine's wrappers: a subset of a part is ambiguous."""
        raise NotImplementedError(
            f"{self.key} does not support get_subset: take the subset of the wrapped dataset "
            "(its `indices` argument) and wrap that"
        )


def _as_labels(gt: Any) -> ItemLabels:
    """A ``gt_label`` (int, numpy or torch scalar, or a sequence of ints) as labels."""
    if isinstance(gt, numbers.Integral):
        return int(gt)
    if hasattr(gt, "tolist"):  # numpy / torch
        gt = gt.tolist()
        return int(gt) if isinstance(gt, numbers.Integral) else [int(g) for g in gt]
    return [int(g) for g in gt]
