"""mIoU and mAcc overall and per long-tail group (head / body / tail) for MMSegmentation.

Shapes: K classes.

The groups come from the training pixel share of each class (ADE20K in the paper: head above
1% of all pixels, body 0.1%-1%, tail below 0.1%; core ``groups_by_share``; with ADE20K's
``objectInfo150.txt`` this gives the supplement's Table 7 split, 20 / 55 / 75 classes). The
overall aAcc, mIoU and mAcc are IoUMetric's own numbers; a group's mIoU (mAcc) is the mean,
ignoring NaN as IoUMetric does, of the per-class IoU (Acc) of its classes, in percent rounded
to two decimals like IoUMetric's.

With ``per_class=True`` the returned dict also holds every class's value of each per-class
metric IoUMetric prints in its table (IoU and Acc; Dice, Fscore, Precision, Recall when
``iou_metrics`` asks for them), the same numbers (percent, two decimals), under
``per_class/<metric>/<class name>`` (core ``per_class_metrics``). mmseg's ``tools/test.py``
then writes them to ``<work_dir>/<timestamp>/<timestamp>.json`` for
``tools/compare_results.py``: ``--cfg-options test_evaluator.per_class=True``.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS

from disalign_core import (
    ADE20K_SHARE_THRESHOLDS,
    FrequencySource,
    check_class_names,
    group_indices,
    groups_by_share,
    read_class_frequencies,
)
from disalign_core.per_class import per_class_metrics

from .frequencies import frequency_fix

__all__ = ["LongTailIoUMetric"]

# Where configs set the metric's frequencies (error messages name them).
_KEY = "val_evaluator.class_frequencies"
_EVALUATOR_KEYS = "val_evaluator.class_frequencies / test_evaluator.class_frequencies"


@METRICS.register_module()
class LongTailIoUMetric(IoUMetric):
    """IoUMetric plus ``{group}_mIoU`` and ``{group}_mAcc`` per long-tail group.

    Args:
        class_frequencies (str | sequence of float): per-class training pixel frequencies
            (same sources as ``GRWCrossEntropyLoss``); their number must be the dataset's.
        thresholds (sequence of float): share thresholds, decreasing; default ADE20K's
            (0.01, 0.001).
        group_names (sequence of str): one more name than thresholds, most frequent first.
        per_class (bool): also return each class's values under ``per_class/<metric>/<class>``
            (default False: the keys, and the logs, are those without it).
        **kwargs: IoUMetric's arguments (``ignore_index``, ``iou_metrics`` must include
            'mIoU', ...).
    """

    def __init__(
        self,
        class_frequencies: FrequencySource,
        thresholds: Sequence[float] = ADE20K_SHARE_THRESHOLDS[0],
        group_names: Sequence[str] = ADE20K_SHARE_THRESHOLDS[1],
        per_class: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.per_class = bool(per_class)
        if "mIoU" not in self.metrics:
            raise ValueError(f"LongTailIoUMetric needs 'mIoU' in iou_metrics, got {self.metrics}")
        # Read once: counts, names, and what the counts are shares of (objectInfo150.txt).
        frequencies = read_class_frequencies(class_frequencies, key=_KEY)
        self.class_names = frequencies.names
        self.frequency_source = frequencies.source
        self.group_names = list(group_names)
        self.class_groups: List[str] = groups_by_share(
            frequencies.counts, thresholds, group_names, total=frequencies.share_total
        )

    @IoUMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # The runner sets this when it builds the evaluator: fail then, not at the first
        # validation thousands of iterations later.
        classes = (dataset_meta or {}).get("classes")
        if classes is not None and len(classes) != len(self.class_groups):
            raise ValueError(
                f"LongTailIoUMetric has frequencies for {len(self.class_groups)} classes but the "
                f"dataset has {len(classes)}: the frequency file does not match the dataset"
            )
        # A file of another dataset with the same class count would group the wrong classes.
        check_class_names(
            self.class_names,
            classes,
            source=self.frequency_source,
            key=_EVALUATOR_KEYS,
            dataset="the evaluated dataset",
            fix=frequency_fix(_EVALUATOR_KEYS),
        )
        self._dataset_meta = dataset_meta

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """IoUMetric's metrics plus the group means (and the per-class values with
        ``per_class``).

        Args:
            results (list): per image ``(area_intersect, area_union, area_pred, area_label)``,
                each (K,), from ``IoUMetric.process``.
        """
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        num_classes = len(self.dataset_meta["classes"])
        if num_classes != len(self.class_groups):
            raise ValueError(
                f"LongTailIoUMetric has frequencies for {len(self.class_groups)} classes but the "
                f"dataset has {num_classes}: the frequency file does not match the dataset"
            )
        intersect, union, pred, label = (sum(areas) for areas in zip(*results))
        # IoU and Acc always; the other per-class metrics only when the table shows them.
        wanted = self.metrics if self.per_class else ["mIoU"]
        per_class = self.total_area_to_metrics(
            intersect, union, pred, label, wanted, self.nan_to_num, self.beta
        )
        for group, idx in group_indices(self.class_groups, self.group_names).items():
            for key in ("IoU", "Acc"):
                metrics[f"{group}_m{key}"] = _group_mean(per_class[key], idx)
        if self.per_class:
            names = list(self.dataset_meta["classes"])
            for key, values in per_class.items():
                if key != "aAcc":  # the one number that is not per class
                    # IoUMetric's per-class table: percent, two decimals.
                    percent = np.round(np.asarray(values, dtype=float) * 100, 2)
                    metrics.update(per_class_metrics(key, names, percent.tolist()))
        return metrics


def _group_mean(values: np.ndarray, idx: List[int]) -> float:
    """Mean of ``values[idx]`` in percent, NaN ignored; NaN when the group is empty."""
    if not idx or np.all(np.isnan(values[idx])):
        return float("nan")
    return float(np.round(np.nanmean(values[idx]) * 100, 2))
