"""``DisAlignHeldOutSubset`` in mmseg's DATASETS: a held-out calibration split of a
segmentation training set (our extension beyond the paper; ``disalign_mmengine.heldout_dataset``).

An item's classes, for the stratified split, are the classes present in its label map: every
map is read once when the wrapper is initialised (in threads), and its values are turned into
class ids as mmseg's ``LoadAnnotations`` does (the item's ``reduce_zero_label`` and
``label_map``, as ``DisAlignDataCheckHook`` reads them); the ignore index and values that are no
class id are left out. Measured on the demo's 64x64 maps: see disalign_seg/README.md; the time
is logged.
"""

from __future__ import annotations

import time
from typing import List, Optional

from mmengine.logging import print_log
from mmseg.registry import DATASETS

from disalign_core.image_files import label_map_values, run_parallel
from disalign_mmengine.heldout_dataset import DisAlignHeldOutSubset as _HeldOutSubset

from .data_check_hook import _train_id

__all__ = ["DisAlignHeldOutSubset", "label_map_classes"]


def label_map_classes(
    path: str,
    num_classes: int,
    reduce_zero_label: bool = False,
    label_map: Optional[dict] = None,
    ignore_index: int = 255,
) -> List[int]:
    """The sorted class ids in ``[0, num_classes)`` present in the label map at ``path``, read
    as mmseg's ``LoadAnnotations`` reads it; pixels at ``ignore_index`` are no class.

    Raises:
        ValueError: the map is missing or cannot be decoded (named).
    """
    values, problem = label_map_values(path)
    if problem:
        raise ValueError(
            f"DisAlignHeldOutSubset: the label map {path!r} {problem}; the held-out split reads "
            "every label map of the wrapped dataset (DisAlignHeldOutSubset.dataset)"
        )
    ids = {_train_id(int(v), reduce_zero_label, label_map) for v in values}
    return sorted(t for t in ids if 0 <= t < num_classes and t != ignore_index)


@DATASETS.register_module()
class DisAlignHeldOutSubset(_HeldOutSubset):
    """The ``part`` (``'stage1'`` or ``'calibration'``) of a held-out split of a segmentation
    dataset, stratified by the classes of each label map.

    Args:
        dataset, fraction, part, seed, lazy_init: as ``disalign_mmengine.DisAlignHeldOutSubset``.
        ignore_index (int): the label value that is no class (mmseg's 255).
        num_threads (int, optional): threads that read the label maps (default: the CPUs,
            at most 8).
    """

    registry = DATASETS

    def __init__(self, *args, ignore_index: int = 255, num_threads: Optional[int] = None, **kw):
        self.ignore_index = ignore_index
        self.num_threads = num_threads
        super().__init__(*args, **kw)

    def item_labels(self) -> List[List[int]]:
        """The classes present in each item's label map, ``[]`` for an item without one."""
        classes = self._metainfo.get("classes")
        if not classes:
            raise ValueError(
                f"{self.key}.dataset: the dataset has no metainfo 'classes', so the label maps' "
                "class ids cannot be checked; give the dataset's metainfo=dict(classes=...)"
            )
        num_classes = len(classes)
        infos = [self.dataset.get_data_info(i) for i in range(len(self.dataset))]

        def read(info: dict) -> List[int]:
            path = info.get("seg_map_path")
            if not path:
                return []
            return label_map_classes(
                path,
                num_classes,
                bool(info.get("reduce_zero_label", False)),
                info.get("label_map") or None,
                self.ignore_index,
            )

        start = time.perf_counter()
        labels = run_parallel(read, infos, self.num_threads)
        print_log(
            f"{self.key}: read the classes of {len(infos)} label maps in "
            f"{time.perf_counter() - start:.2f} s",
            logger="current",
        )
        return labels
