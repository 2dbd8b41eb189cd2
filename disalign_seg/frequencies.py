"""Class pixel counts of a segmentation training set: the frequencies that
``GRWCrossEntropyLoss`` and ``LongTailIoUMetric`` read (``class_frequencies=...``).

Detection's twin is ``disalign_det.class_frequencies.count_class_images``. Reading a
frequency source (a file written from these counts, ADE20K's ``objectInfo150.txt``, or a list
in the config) and checking its class names against a dataset's is the core's
(``disalign_core.read_class_frequencies``, ``disalign_core.check_class_names``);
``tools/compute_pixel_frequencies.py`` is the command line over ``count_class_pixels``.
"""

from __future__ import annotations

import inspect
import os
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

__all__ = ["frequency_fix", "count_class_pixels", "dataset_classes_from_config"]


def frequency_fix(key: str) -> str:
    """How to get a frequency file that fits the data: what frequency errors end with."""
    return (
        "compute the frequencies of this dataset with tools/compute_pixel_frequencies.py "
        f"<train label dir> --config <your config> --out <file>, and set {key} to that file"
    )


def count_class_pixels(
    ann_dir: str,
    num_classes: int,
    *,
    reduce_zero_label: bool = False,
    ignore_index: int = 255,
    suffix: str = ".png",
    progress: bool = True,
) -> np.ndarray:
    """(K,) int64 pixel count per class over every ``*suffix`` label map under ``ann_dir``.

    With ``reduce_zero_label`` (ADE20K), label 0 is ignored and label c+1 counts for class c,
    as mmseg's LoadAnnotations does. ``ignore_index`` pixels are not counted.

    Args:
        ann_dir (str): folder of single-channel label maps, searched recursively.
        num_classes (int): K.
        reduce_zero_label (bool): ADE20K's labels (0 unlabelled, class c stored as c+1).
        ignore_index (int): label not counted (after ``reduce_zero_label``).
        suffix (str): file name ending of the label maps.
        progress (bool): show a tqdm progress bar.

    Raises:
        FileNotFoundError: no folder or no label map in it.
        ValueError: a label outside [0, K) that is not the ignore label, naming the file.
    """
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(f"annotation folder not found: {ann_dir!r}")
    files = sorted(
        os.path.join(dp, f) for dp, _, fs in os.walk(ann_dir) for f in fs if f.endswith(suffix)
    )
    if not files:
        raise FileNotFoundError(f"no '*{suffix}' label maps under {ann_dir!r}")
    counts = np.zeros(num_classes, np.int64)
    for path in tqdm(files, desc="counting class pixels", unit="map", disable=not progress):
        label = np.asarray(Image.open(path)).astype(np.int64)
        if label.ndim != 2:
            raise ValueError(
                f"{path}: expected a single-channel label map, got shape {label.shape}"
            )
        if reduce_zero_label:
            # exactly mmseg's LoadAnnotations: 0 -> 255, c -> c-1, and 255 stays 255
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        label = label[label != ignore_index]
        bad = (label < 0) | (label >= num_classes)
        if bad.any():
            raise ValueError(
                f"{path}: label {int(label[bad][0])} outside [0, {num_classes}) "
                f"(num_classes={num_classes}, reduce_zero_label={reduce_zero_label})"
            )
        counts += np.bincount(label, minlength=num_classes)
    return counts


def dataset_classes_from_config(config: str) -> Tuple[List[str], Optional[bool]]:
    """Class names and ``reduce_zero_label`` of the training dataset of an mmseg config.

    Returns:
        (names, reduce_zero_label): the dataset's K class names (its ``metainfo`` or its
        class's ``METAINFO``); its ``reduce_zero_label``, or its class's default when the
        config leaves it out (None when the class has no such argument).
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get("default_scope", "mmseg"))
    ds = cfg.train_dataloader.dataset
    while "dataset" in ds:  # RepeatDataset and other wrappers
        ds = ds.dataset
    classes = (ds.get("metainfo") or {}).get("classes")
    if classes is None:
        classes = DATASETS.get(ds.type).METAINFO["classes"]
    reduce = ds.get("reduce_zero_label")
    if reduce is None:
        # e.g. mmseg's ADE20K config leaves it to ADE20KDataset, whose default is True.
        default = inspect.signature(DATASETS.get(ds.type)).parameters.get("reduce_zero_label")
        reduce = default.default if default is not None else None
    return list(classes), reduce
