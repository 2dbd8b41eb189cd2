"""Per-class training frequencies r_j (images containing class j) for the re-weighting.

Sources, in order of precedence:
1. ``MODEL.DISALIGN.FREQUENCY_FILE`` when set (``disalign_core.read_class_frequencies``);
2. the ``class_image_count`` metadata of every training dataset, where all of them have it
   (detectron2 sets it for LVIS v1; ``register_disalign_instances`` sets it from the json);
3. counted from the training datasets in detectron2's DatasetCatalog (LVIS v0.5, COCO, ...).

The result is deterministic given the same files; in a distributed run every process computes
it and then takes rank 0's copy (``comm.all_gather``), so all ranks train with identical
weights even if a process saw different files.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from disalign_core import grw_class_weights, read_class_frequencies

__all__ = [
    "count_class_images",
    "class_frequencies_from_datasets",
    "class_frequencies_from_config",
    "class_weights_from_config",
]

logger = logging.getLogger(__name__)


def count_class_images(dataset_dicts: Sequence[dict], num_classes: int) -> List[int]:
    """Number of images containing each class, from detectron2-format dataset dicts.

    Args:
        dataset_dicts (list[dict]): records with "annotations", each with a contiguous
            "category_id" in [0, num_classes).
        num_classes (int): K.

    Returns:
        list[int]: (K,) image counts.
    """
    counts = [0] * num_classes
    for record in dataset_dicts:
        for c in {int(a["category_id"]) for a in record.get("annotations", [])}:
            if not 0 <= c < num_classes:
                raise ValueError(
                    f"image {record.get('file_name', record.get('image_id'))!r} has category_id "
                    f"{c}, outside [0, {num_classes}) (MODEL.ROI_HEADS.NUM_CLASSES={num_classes})"
                )
            counts[c] += 1
    return counts


def _metadata_counts(name: str) -> Optional[List[float]]:
    meta = MetadataCatalog.get(name)
    if not meta.get("class_image_count"):
        return None
    # As detectron2's get_fed_loss_cls_weights: entries {"id", "image_count"} sorted by id.
    return [float(c["image_count"]) for c in sorted(meta.class_image_count, key=lambda c: c["id"])]


def class_frequencies_from_datasets(
    dataset_names: Sequence[str], num_classes: int
) -> Tuple[List[float], Optional[List[str]], str]:
    """Image counts per class summed over the training datasets.

    Returns:
        (counts, class names or None, description of the source).

    Raises:
        ValueError: no dataset names, or a dataset is not registered.
    """
    names = list(dataset_names)
    if not names:
        raise ValueError(
            "DisAlign re-weighting needs class frequencies, but DATASETS.TRAIN is empty and "
            "MODEL.DISALIGN.FREQUENCY_FILE is not set"
        )
    unknown = [n for n in names if n not in DatasetCatalog.list()]
    if unknown:
        raise ValueError(
            f"DisAlign re-weighting needs class frequencies, but the training dataset(s) "
            f"{unknown} are not registered in DatasetCatalog; register them "
            "(disalign_det.register_disalign_instances) or set MODEL.DISALIGN.FREQUENCY_FILE"
        )
    from_meta = [_metadata_counts(n) for n in names]
    if all(c is not None for c in from_meta):
        counts = (
            [sum(col) for col in zip(*from_meta)] if len({len(c) for c in from_meta}) == 1 else None
        )
        if counts is None:
            raise ValueError(
                f"training datasets {names} have class_image_count metadata of different "
                f"lengths {[len(c) for c in from_meta]}"
            )
        source = f"class_image_count metadata of {names}"
    else:
        counts = [0.0] * num_classes
        for n in names:
            for i, c in enumerate(count_class_images(DatasetCatalog.get(n), num_classes)):
                counts[i] += c
        source = f"images per class counted in {names}"
    class_names = MetadataCatalog.get(names[0]).get("thing_classes")
    return counts, (list(class_names) if class_names else None), source


def class_frequencies_from_config(cfg) -> Tuple[List[float], Optional[List[str]]]:
    """Class frequencies for ``cfg`` (see the module docstring), identical on all ranks.

    Returns:
        (counts, class names or None): counts has MODEL.ROI_HEADS.NUM_CLASSES entries.

    Raises:
        ValueError: wrong number of classes, or no frequency data.
        FileNotFoundError: FREQUENCY_FILE is set but missing.
    """
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    path = cfg.MODEL.DISALIGN.FREQUENCY_FILE
    if path:
        counts, names = read_class_frequencies(path)
        source = f"MODEL.DISALIGN.FREQUENCY_FILE={path!r}"
    else:
        counts, names, source = class_frequencies_from_datasets(cfg.DATASETS.TRAIN, num_classes)
    if len(counts) != num_classes:
        raise ValueError(
            f"class frequencies from {source} have {len(counts)} entries, but "
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}"
        )
    if path and names is not None and cfg.DATASETS.TRAIN:
        # A file whose classes are in another order would silently weight the wrong classes.
        classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes")
        if classes is not None and list(classes) != list(names):
            i = next(i for i, (a, b) in enumerate(zip(names, classes)) if a != b)
            raise ValueError(
                f"{source} names class {i} {names[i]!r}, but {cfg.DATASETS.TRAIN[0]} calls it "
                f"{classes[i]!r}: the file's classes must be the dataset's, in the same order"
            )
    if comm.get_world_size() > 1:
        # Rank 0's frequencies everywhere.
        counts, names = comm.all_gather((counts, names))[0]
    logger.info(f"DisAlign class frequencies from {source}: {len(counts)} classes")
    return [float(c) for c in counts], names


def class_weights_from_config(cfg) -> torch.Tensor:
    """(K,) GRW weights of the foreground classes for ``cfg`` (MODEL.DISALIGN.RHO)."""
    counts, names = class_frequencies_from_config(cfg)
    weights = grw_class_weights(
        counts,
        cfg.MODEL.DISALIGN.RHO,
        num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        zero_count=cfg.MODEL.DISALIGN.ZERO_COUNT,
        class_names=names,
    )
    logger.info(
        f"DisAlign re-weighting, rho={cfg.MODEL.DISALIGN.RHO}: class weights from "
        f"{weights.min().item():.3g} to {weights.max().item():.3g}"
    )
    return weights
