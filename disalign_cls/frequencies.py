"""Training images per class, for the GRW loss and the long-tail metric.

Accepted sources (``class_frequencies`` in the configs):

- an MMPretrain dataset config, e.g. ``dict(type='ImageNet', data_root='data/imagenet',
  ann_file='ImageNet_LT_train.txt')``: the dataset is built without a pipeline (only its
  annotation list is read, no image) and its labels are counted. This covers the long-tail
  split files (``ImageNet_LT_train.txt``, ``Places_LT_train.txt``, ``iNaturalist18_train.txt``:
  one ``path label`` line per image, MMPretrain's ``CustomDataset`` format) and every other
  MMPretrain dataset;
- a frequency file (core ``read_class_frequencies``: a JSON list, a JSON object
  ``{"counts": [...], "names": [...]}``, or text lines ``count`` / ``name count``);
- the counts themselves, a list of numbers.

An annotation list given as a plain path would parse as ``name count`` lines with the labels
as counts; it is refused with the fix in the message.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from disalign_core import read_class_frequencies

from .data_check_hook import label_range_message

__all__ = ["ClassCountSource", "count_dataset_labels", "load_class_counts"]

ClassCountSource = Union[str, Sequence[float], dict]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def count_dataset_labels(
    dataset_cfg: dict, num_classes: Optional[int] = None, key: str = "class_frequencies"
) -> Tuple[List[float], Optional[List[str]]]:
    """Images per class of an MMPretrain dataset, built from ``dataset_cfg`` without images.

    Args:
        dataset_cfg (dict): the dataset's config (``type`` from MMPretrain's DATASETS); its
            ``pipeline`` is dropped.
        num_classes (int, optional): K; counts run to K classes even when the last ones have
            no image (they then show as 0, which the GRW weights refuse).
        key (str): the config key, for error messages.

    Returns:
        (counts, names): (K,) images per class; (K,) class names when the dataset has them.
    """
    from mmpretrain.registry import DATASETS

    if "type" not in dataset_cfg:
        raise ValueError(
            f"{key}: a dataset config needs a 'type' (e.g. 'ImageNet', 'CustomDataset'), "
            f"got {dataset_cfg!r}"
        )
    cfg = {k: v for k, v in dataset_cfg.items() if k not in ("pipeline", "lazy_init")}
    dataset = DATASETS.build(dict(cfg, pipeline=[]))
    labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64).reshape(-1)
    if labels.size == 0:
        raise ValueError(f"{key}: the dataset {dataset_cfg.get('type')} has no labelled image")
    names = dataset.metainfo.get("classes")
    names = list(names) if names else None
    k = num_classes or (len(names) if names else int(labels.max()) + 1)
    if labels.min() < 0 or labels.max() >= k:
        # The data check's message: the list file, its lines, the labels, K and the fix.
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        raise ValueError(f"{key}: {label_range_message(dataset, infos, k, key)}")
    counts = np.bincount(labels, minlength=k).astype(float).tolist()
    return counts, (names if names and len(names) == k else None)


def _refuse_annotation_list(path: str, names: Optional[List[str]], key: str) -> None:
    if names and any(n.lower().endswith(_IMAGE_SUFFIXES) for n in names[:50]):
        raise ValueError(
            f"{key}: {path!r} looks like an annotation list ('image-path label' lines), not a "
            "frequency file; pass it as a dataset config instead, e.g. "
            f"{key}=dict(type='CustomDataset', data_root=<image root>, ann_file={path!r})"
        )


def load_class_counts(
    source: ClassCountSource, num_classes: Optional[int] = None, key: str = "class_frequencies"
) -> Tuple[List[float], Optional[List[str]]]:
    """Per-class training image counts from any of the sources above.

    Args:
        source: a dataset config (dict), a frequency file path, or the counts.
        num_classes (int, optional): expected K; another length raises ValueError.
        key (str): the config key, named in error messages.

    Returns:
        (counts, names): (K,) counts, finite and >= 0; (K,) class names or None.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: unparsable data, an annotation list passed as a file, or a count list
            whose length is not ``num_classes``.
    """
    if isinstance(source, dict):
        counts, names = count_dataset_labels(source, num_classes, key)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        counts, names = read_class_frequencies(path, key)
        _refuse_annotation_list(path, names, key)
    else:
        counts, names = [float(c) for c in source], None
        if not counts:
            raise ValueError(f"{key}: the class counts are empty")
    if num_classes is not None and len(counts) != num_classes:
        raise ValueError(
            f"{key}: got counts for {len(counts)} classes but the model has "
            f"num_classes={num_classes}; the frequency data must be of the training set of "
            "this model"
        )
    return counts, names
