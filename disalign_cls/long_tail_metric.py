"""Top-k accuracy overall and for the many-, medium- and few-shot classes, for MMPretrain.

Shapes: M evaluated images, K classes.

Groups by training images per class (core ``groups_by_count`` with
``CLASSIFICATION_COUNT_BINS``): many (> 100), medium (20-100), few (< 20), as the paper and the
long-tail literature report ImageNet-LT, iNaturalist 2018 and Places-LT. The overall numbers
are MMPretrain's ``Accuracy`` itself (same keys, same values); a group's top-k is
``Accuracy.calculate`` on the images whose true class is in the group, under the key
``{group}_top{k}``. (On a class-balanced test set such as ImageNet-LT's this equals the mean
per-class accuracy of the group.)

With ``per_class=True`` the dict also holds, for each of ``Accuracy``'s keys (``top1``,
``top5``, ...), every class's accuracy on the images of that class, under
``per_class/<key>/<class name>`` (core ``per_class_metrics``; mmengine adds the prefix:
``accuracy/per_class/top1/<class>``); NaN for a class without test images. Class names are
the dataset's, else the frequency file's, else the class indices. MMPretrain's
``tools/test.py`` writes them to ``<work_dir>/<timestamp>/<timestamp>.json`` for
``tools/compare_results.py``: ``--cfg-options test_evaluator.per_class=True``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.evaluation.metrics import Accuracy
from mmpretrain.registry import METRICS

from disalign_core import CLASSIFICATION_COUNT_BINS, group_indices, groups_by_count
from disalign_core.per_class import per_class_metrics

from .frequencies import ClassCountSource, load_class_counts

__all__ = ["LongTailAccuracy"]


@METRICS.register_module()
class LongTailAccuracy(Accuracy):
    """``Accuracy`` plus ``{group}_top{k}`` per long-tail group.

    Args:
        class_frequencies (dict | str | sequence of float): training images per class (same
            sources as ``GRWCrossEntropyLoss``); their number must be the dataset's.
        bounds (sequence of int): upper count bounds (inclusive) of all groups but the last,
            increasing; default (19, 100).
        group_names (sequence of str): one more name than bounds, rarest first; default
            ("few", "medium", "many").
        num_classes (int, optional): expected K, checked against the counts at build time.
        per_class (bool): also return each class's accuracy under ``per_class/<key>/<class>``
            (default False: the keys, and the logs, are those without it).
        **kwargs: ``Accuracy``'s arguments (``topk``, ``thrs``, ``prefix``, ...).
    """

    def __init__(
        self,
        class_frequencies: ClassCountSource,
        bounds: Sequence[int] = CLASSIFICATION_COUNT_BINS[0],
        group_names: Sequence[str] = CLASSIFICATION_COUNT_BINS[1],
        num_classes: Optional[int] = None,
        topk: Union[int, Sequence[int]] = (1,),
        thrs: Union[float, Sequence[Union[float, None]], None] = 0.0,
        per_class: bool = False,
        **kwargs,
    ):
        super().__init__(topk=topk, thrs=thrs, **kwargs)
        counts, self.frequency_names = load_class_counts(
            class_frequencies, num_classes, key="LongTailAccuracy.class_frequencies"
        )
        self.per_class = bool(per_class)
        self.group_names = list(group_names)
        self.class_groups: List[str] = groups_by_count(counts, bounds, group_names)

    @Accuracy.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # The runner sets this when it builds the evaluator: fail then, not after a whole
        # epoch of training.
        classes = (dataset_meta or {}).get("classes")
        if classes is not None and len(classes) != len(self.class_groups):
            raise ValueError(
                f"LongTailAccuracy has frequencies for {len(self.class_groups)} classes but the "
                f"dataset has {len(classes)}: the frequency data does not match the dataset"
            )
        self._dataset_meta = dataset_meta

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """``Accuracy``'s metrics plus the per-group ones (and the per-class ones with
        ``per_class``).

        Args:
            results (list[dict]): per image ``gt_label`` (1,) and ``pred_score`` (K,) (or
                ``pred_label`` (1,)), from ``Accuracy.process``.
        """
        metrics = super().compute_metrics(results)
        k = len(self.class_groups)
        if "pred_score" in results[0] and results[0]["pred_score"].numel() != k:
            raise ValueError(
                f"LongTailAccuracy has frequencies for {k} classes but the model predicts "
                f"{results[0]['pred_score'].numel()}: the frequency data does not match"
            )
        target = torch.cat([r["gt_label"] for r in results]).long()
        if target.min() < 0 or target.max() >= k:
            raise ValueError(
                f"LongTailAccuracy: ground-truth labels run to {int(target.max())}, outside the "
                f"{k} classes of the frequency data"
            )
        overall_keys = list(metrics)
        groups = group_indices(self.class_groups, self.group_names)
        for group, idx in groups.items():
            in_group = torch.zeros(k, dtype=torch.bool)
            in_group[idx] = True
            subset = [r for r, keep in zip(results, in_group[target].tolist()) if keep]
            # A group without test images has no accuracy (NaN), as IoUMetric's empty classes.
            group_metrics = super().compute_metrics(subset) if subset else {}
            for key in overall_keys:
                metrics[f"{group}_{key}"] = group_metrics.get(key, float("nan"))
        if self.per_class:
            by_class: List[List[dict]] = [[] for _ in range(k)]
            for r, label in zip(results, target.tolist()):
                by_class[label].append(r)
            class_metrics = []
            for subset in by_class:
                class_metrics.append(super().compute_metrics(subset) if subset else {})
            names = self._class_names(k)
            for key in overall_keys:
                values = [m.get(key, float("nan")) for m in class_metrics]
                metrics.update(per_class_metrics(key, names, values))
        return metrics

    def _class_names(self, k: int) -> List[str]:
        """The dataset's class names, else the frequency source's, else "0" .. "K-1"."""
        for names in ((self.dataset_meta or {}).get("classes"), self.frequency_names):
            if names is not None and len(names) == k:
                return [str(n) for n in names]
        return [str(i) for i in range(k)]
