"""Checks before any iteration runs: the files the datasets list, their contents, and the
loss's class names.

``custom_hooks = [dict(type='DisAlignDataCheckHook')]`` (the shipped configs add it) runs at
``before_run``, i.e. after the runner has built the model, the loops and their datasets, and
before it loads a checkpoint or reads a batch:

- every ``img_path`` and ``seg_map_path`` of the train, val and test datasets that the run
  built must exist (one ``os.stat`` per file; ADE20K's 22K files take well under a second).
  A missing file would otherwise stop training only when the loader reaches it, possibly
  hours in. One error lists the first few missing files and their count;
- every **label map** is decoded and its values checked (``check_labels``): each must be a
  class id below ``model.decode_head.num_classes`` or the ignore index
  (``model.decode_head.ignore_index``, 255) after the dataset's ``reduce_zero_label`` (0 -> 255,
  v -> v - 1) and ``label_map``, exactly as mmseg's ``LoadAnnotations`` reads it (8-bit: 16-bit
  values above 255 would wrap, and are refused). A value outside would otherwise stop training
  at the first batch that holds it with torch's ``Target 199 is out of bounds``, which names
  neither the file nor the setting; in the evaluation, IoUMetric would silently drop it;
- every **image** gets the header check (``check_images='headers'``: format and size read,
  a JPEG/PNG must end as a complete file; mmcv's cv2 decoder fills a cut-short JPEG with grey
  without an error) or a full decode (``'full'``);
- each ``GRWCrossEntropyLoss`` of the model must name the training dataset's classes (when
  both have names; ``check_class_names``): a frequency file of another dataset with the same
  class count would otherwise train silently with the wrong weights.

The processes of a distributed run split the files (each checks every world-size-th one, in
threads) and gather what they found, so every process raises the same error. Measured cost
in one thread (``benchmarks/bench_data_check.py``; files in the page cache / read from disk):
1.8 / 2.2 ms per ADE20K-size label map, 0.12 / 0.42 ms per 640x480 JPEG header, so ADE20K's
22K label maps and 22K images take ~45-60 s in one process, ~6-8 s split among 8.
``sample=N`` checks the contents of N files per dataset instead.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

from disalign_core import check_class_names
from disalign_core.image_files import image_file_problem, label_map_values, sample
from disalign_mmengine.data_check import (
    check_hook_options,
    dataset_infos,
    find_in_parallel,
    leaf_datasets,
    run_datasets,
)

from .frequencies import frequency_fix

__all__ = ["DisAlignDataCheckHook", "label_value_problem", "missing_dataset_files"]


# The data-info keys of the files a segmentation dataset lists.
_PATH_KEYS = ("img_path", "seg_map_path")


def missing_dataset_files(dataset) -> Tuple[int, List[str]]:
    """(number of files listed, sorted missing paths) over ``img_path``/``seg_map_path``."""
    paths = set()
    for _, leaf in leaf_datasets(dataset):
        for info in dataset_infos(leaf):
            paths.update(info[k] for k in _PATH_KEYS if info.get(k))
    return len(paths), sorted(p for p in paths if not os.path.isfile(p))


def _train_id(value: int, reduce_zero_label: bool, label_map: Optional[dict]) -> int:
    """The class id mmseg's LoadAnnotations makes of a label-map value (uint8 arithmetic)."""
    v = value % 256  # .astype(np.uint8)
    if reduce_zero_label:
        v = 255 if v == 0 else v - 1
        v = 255 if v == 254 else v
    if label_map:
        v = label_map.get(v, v)
    return v


def label_value_problem(
    values: Sequence[int],
    num_classes: int,
    ignore_index: int,
    reduce_zero_label: bool = False,
    label_map: Optional[dict] = None,
) -> List[int]:
    """The values of a label map that are neither a class id in [0, num_classes) nor
    ``ignore_index`` once read as mmseg reads them, and those above 255 (which mmseg's 8-bit
    read would wrap)."""
    bad = []
    for v in values:
        t = _train_id(int(v), reduce_zero_label, label_map)
        if v > 255 or v < 0 or not (0 <= t < num_classes or t == ignore_index):
            bad.append(int(v))
    return bad


def _allowed_values(num_classes: int, ignore_index: int, reduce_zero_label: bool) -> str:
    if reduce_zero_label:  # file 0 and 255 -> ignored, file v -> v - 1
        return f"0..{num_classes} (0 and 255 are ignored, v is class v-1)"
    ids = f"0..{num_classes - 1}"
    return f"{ids} or {ignore_index}" if 0 <= ignore_index <= 255 else ids


def _shown(items: Sequence[str], limit: int) -> str:
    extra = len(items) - limit
    return "; ".join(items[:limit]) + (f"; and {extra} more" if extra > 0 else "")


@HOOKS.register_module()
class DisAlignDataCheckHook(Hook):
    """Fail before the first iteration on missing or damaged data files, label values the
    model cannot train on, or mismatched class frequencies.

    Args:
        check_files (bool): check that every listed image and label map exists.
        check_class_names (bool): check the GRW losses' class names against the training
            dataset's ``classes``.
        max_listed (int): how many files an error lists.
        check_images (str | None): ``'headers'`` (default; format, size, complete end of a
            JPEG/PNG), ``'full'`` (every image decoded) or None (existence only).
        check_labels (bool): decode every label map and check its values.
        sample (int, optional): check the contents (images and label maps) of this many files
            per dataset (random, fixed seed) instead of all; existence is always checked for
            all. E.g. ``--cfg-options custom_hooks.0.sample=2000``.
        num_threads (int, optional): threads per process (default: its CPUs, at most 8).
    """

    priority = "VERY_HIGH"

    def __init__(
        self,
        check_files: bool = True,
        check_class_names: bool = True,
        max_listed: int = 5,
        check_images: Optional[str] = "headers",
        check_labels: bool = True,
        sample: Optional[int] = None,
        num_threads: Optional[int] = None,
    ):
        check_hook_options(check_images, sample)
        self.check_files = check_files
        self.check_names = check_class_names
        self.max_listed = max_listed
        self.check_images = check_images or None
        self.check_labels = check_labels
        self.sample = sample
        self.num_threads = num_threads

    def before_run(self, runner) -> None:
        datasets = run_datasets(runner)
        if self.check_files:
            for key, dataset in datasets:
                self._check_files(dataset, key)
        if self.check_names:
            train = [dataset for key, dataset in datasets if key.startswith("train")]
            if train:
                self._check_loss_names(runner.model, train[0])
        # Last: the only check that reads every file (~1 min for ADE20K in one process).
        if self.check_images or self.check_labels:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self._check_contents(model, datasets)

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

    def _check_contents(self, model, datasets: Sequence[Tuple[str, object]]) -> None:
        head = getattr(model, "decode_head", None)
        if isinstance(head, nn.ModuleList):
            head = head[-1]  # CascadeEncoderDecoder: the last head classifies
        num_classes = getattr(head, "num_classes", None)
        ignore_index = getattr(head, "ignore_index", 255)
        check_labels = self.check_labels and num_classes is not None

        # One work item per distinct file: (dataset key, kind, path, reduce_zero_label,
        # label_map); the leaf's key names reduce_zero_label in the message.
        items: List[tuple] = []
        seen = set()
        for key, dataset in datasets:
            for leaf_key, leaf in leaf_datasets(dataset, key):
                infos = sample(dataset_infos(leaf), self.sample)
                for info in infos:
                    if self.check_images and info.get("img_path"):
                        entry = (leaf_key, "image", info["img_path"], False, None)
                        if entry[2] not in seen:
                            seen.add(entry[2])
                            items.append(entry)
                    if check_labels and info.get("seg_map_path"):
                        rzl = bool(info.get("reduce_zero_label", False))
                        lmap = info.get("label_map") or None
                        entry = (leaf_key, "label", info["seg_map_path"], rzl, lmap)
                        if entry[2] not in seen:
                            seen.add(entry[2])
                            items.append(entry)
        counts: Dict[Tuple[str, str], int] = {}
        for key, kind, *_ in items:
            counts[key, kind] = counts.get((key, kind), 0) + 1

        decode = self.check_images == "full"

        def check(item) -> Optional[tuple]:
            key, kind, path, rzl, lmap = item
            if kind == "image":
                problem = image_file_problem(path, decode=decode)
                return (key, "image", path, problem) if problem else None
            values, problem = label_map_values(path)
            if problem:
                return (key, "label file", path, problem)
            bad = label_value_problem(values, num_classes, ignore_index, rzl, lmap)
            return (key, "label values", path, bad, rzl) if bad else None

        found = find_in_parallel(check, items, self.num_threads)
        if found:
            raise ValueError(self._contents_message(found, counts, num_classes, ignore_index))

    def _contents_message(self, found, counts, num_classes, ignore_index) -> str:
        n = self.max_listed
        parts = []
        for kind, noun, how in (
            (
                "image",
                "images",
                f"check_images={self.check_images!r}: format and size read, a JPEG/PNG must "
                "end as a complete file"
                + ("; every pixel decoded" if self.check_images == "full" else ""),
            ),
            ("label file", "label maps", "every label map decoded"),
        ):
            for key in sorted({r[0] for r in found if r[1] == kind}):
                rows = sorted(f"{r[2]!r} {r[3]}" for r in found if r[1] == kind and r[0] == key)
                total = counts[key, "image" if kind == "image" else "label"]
                parts.append(
                    f"{len(rows)} of the {total} {noun} listed by {key} cannot be used ({how}): "
                    f"{_shown(rows, n)}. Fix: copy these files again (a file cut short is usually "
                    "an interrupted transfer), or remove them from the dataset's list "
                    f"({key}.ann_file)."
                )
        for key in sorted({r[0] for r in found if r[1] == "label values"}):
            rows = [r for r in found if r[1] == "label values" and r[0] == key]
            rows.sort(key=lambda r: r[2])
            rzl = rows[0][4]
            bad = sorted({v for r in rows for v in r[3]})
            listed = [f"{r[2]!r}: {', '.join(map(str, r[3][:10]))}" for r in rows]
            parts.append(
                f"{len(rows)} of the {counts[key, 'label']} label maps listed by {key} hold "
                f"values that are neither a class id nor the ignore index: {_shown(listed, n)}. "
                f"The model has model.decode_head.num_classes={num_classes} classes (ids "
                f"0..{num_classes - 1}) and ignores model.decode_head.ignore_index="
                f"{ignore_index}; with {key}.reduce_zero_label={rzl} the files may hold "
                f"{_allowed_values(num_classes, ignore_index, rzl)}. Fix: "
                + self._value_fix(bad, key, num_classes, ignore_index, rzl)
            )
        return "the data cannot be trained on as it is:\n" + "\n".join(parts)

    @staticmethod
    def _value_fix(bad, key, num_classes, ignore_index, rzl) -> str:
        if not rzl and bad == [num_classes]:
            return (
                f"the maps seem to count classes from 1 (values up to {num_classes}, 0 for "
                f"'unlabelled', as ADE20K's): set {key}.reduce_zero_label=True (and "
                "reduce_zero_label=True of LoadAnnotations in the pipelines, if set there)."
            )
        return (
            "if the data has more classes than the model, set model.decode_head.num_classes "
            "(and model.auxiliary_head.num_classes) to the data's class count and give class "
            "frequencies of that many classes; if these values mean 'no label', write "
            f"{ignore_index} (model.decode_head.ignore_index) in the maps instead; if the maps "
            "belong to another data set or release (e.g. ADE20K's full 3,688-class annotations "
            "rather than ADEChallengeData2016's 150), use the maps of this one."
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
