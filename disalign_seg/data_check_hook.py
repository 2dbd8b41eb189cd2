"""Checks before any iteration runs: the files the datasets list, and the loss's class names.

``custom_hooks = [dict(type='DisAlignDataCheckHook')]`` (the shipped configs add it) runs at
``before_run``, i.e. after the runner has built the model, the loops and their datasets, and
before it loads a checkpoint or reads a batch:

- every ``img_path`` and ``seg_map_path`` of the train, val and test datasets that the run
  built must exist (one ``os.stat`` per file; ADE20K's 22K files take well under a second).
  A missing file would otherwise stop training only when the loader reaches it, possibly
  hours in. One error lists the first few missing files and their count;
- each ``GRWCrossEntropyLoss`` of the model must name the training dataset's classes (when
  both have names; ``check_class_names``): a frequency file of another dataset with the same
  class count would otherwise train silently with the wrong weights.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Sequence, Tuple

from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmseg.registry import HOOKS

from disalign_core import check_class_names

from .frequencies import frequency_fix

__all__ = ["DisAlignDataCheckHook", "missing_dataset_files"]

# The runner's loops and the config keys of their datasets.
_LOOPS = (
    ("_train_loop", "train_dataloader.dataset"),
    ("_val_loop", "val_dataloader.dataset"),
    ("_test_loop", "test_dataloader.dataset"),
)
_PATH_KEYS = ("img_path", "seg_map_path")


def _leaf_datasets(dataset) -> Iterator[BaseDataset]:
    """The datasets under mmengine's wrappers (ConcatDataset, RepeatDataset, ...)."""
    inner = getattr(dataset, "datasets", None)
    if inner is not None:
        for d in inner:
            yield from _leaf_datasets(d)
    elif hasattr(dataset, "dataset") and not isinstance(dataset, BaseDataset):
        yield from _leaf_datasets(dataset.dataset)
    else:
        yield dataset


def missing_dataset_files(dataset) -> Tuple[int, List[str]]:
    """(number of files listed, sorted missing paths) over ``img_path``/``seg_map_path``."""
    paths = set()
    for leaf in _leaf_datasets(dataset):
        if isinstance(leaf, BaseDataset):
            leaf.full_init()  # a lazily initialised dataset has no data list yet
        for i in range(len(leaf)):
            info = leaf.get_data_info(i)
            paths.update(info[k] for k in _PATH_KEYS if info.get(k))
    return len(paths), sorted(p for p in paths if not os.path.isfile(p))


@HOOKS.register_module()
class DisAlignDataCheckHook(Hook):
    """Fail before the first iteration on missing data files or mismatched class frequencies.

    Args:
        check_files (bool): check that every listed image and label map exists.
        check_class_names (bool): check the GRW losses' class names against the training
            dataset's ``classes``.
        max_listed (int): how many missing files the error lists.
    """

    priority = "VERY_HIGH"

    def __init__(
        self, check_files: bool = True, check_class_names: bool = True, max_listed: int = 5
    ):
        self.check_files = check_files
        self.check_names = check_class_names
        self.max_listed = max_listed

    def before_run(self, runner) -> None:
        loops = [(key, getattr(runner, attr, None)) for attr, key in _LOOPS]
        loops = [(key, loop) for key, loop in loops if isinstance(loop, BaseLoop)]
        if self.check_files:
            for key, loop in loops:
                self._check_files(loop.dataloader.dataset, key)
        if self.check_names:
            train = [loop for key, loop in loops if key.startswith("train")]
            if train:
                self._check_loss_names(runner.model, train[0].dataloader.dataset)

    def _check_files(self, dataset, key: str) -> None:
        listed, missing = missing_dataset_files(dataset)
        if missing:
            shown = ", ".join(repr(p) for p in missing[: self.max_listed])
            extra = len(missing) - self.max_listed
            more = f" and {extra} more" if extra > 0 else ""
            raise FileNotFoundError(
                f"{len(missing)} of the {listed} files listed by {key} do not exist: {shown}"
                f"{more}. Fix: check {key}.data_root and data_prefix (and the image/label "
                "suffixes), or restore the missing files, or remove them from the dataset's "
                "list (ann_file)"
            )

    @staticmethod
    def _check_loss_names(model, dataset) -> None:
        model = model.module if is_model_wrapper(model) else model
        classes: Sequence[str] = getattr(dataset, "metainfo", {}).get("classes")
        for name, module in model.named_modules():
            if hasattr(module, "frequency_source") and hasattr(module, "class_weight"):
                key = f"model.{name}.class_frequencies"
                check_class_names(
                    module.class_names,
                    classes,
                    source=module.frequency_source,
                    key=key,
                    dataset="the training dataset (train_dataloader.dataset)",
                    fix=frequency_fix(key),
                )
