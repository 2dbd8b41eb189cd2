"""Per-class training frequencies r_j for the re-weighting.

``MODEL.DISALIGN.FREQUENCY_TYPE`` says what r_j counts: "images" (images containing class j,
the default and the paper's "per-class training frequency") or "instances" (annotations of
class j); "images" is LVIS's own definition of the rare/common/frequent groups. The authors'
code reads their ``num_shots_v0.5.npy`` / ``num_shots_v1.0.json`` (release downloads linked
from their ``instance_seg/README.md``), one number per class; which of the two they count is
not stated there. Both files can be given as ``MODEL.DISALIGN.FREQUENCY_FILE``.

Sources, in order of precedence:
1. ``MODEL.DISALIGN.FREQUENCY_FILE`` when set (``disalign_core.read_class_frequencies``: JSON,
   the authors' ``.npy`` and ``[id, count, ...]`` JSON, text; the format is logged): its counts
   are used as they are, whatever FREQUENCY_TYPE says;
2. the ``class_image_count`` ("images") or ``class_instance_count`` ("instances") metadata of
   every training dataset, where all of them have it: detectron2 sets ``class_image_count`` for
   LVIS v1 (its LVIS v0.5 metadata has no counts), ``register_disalign_instances`` sets both
   from the json's ``image_count`` / ``instance_count``;
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

from disalign_core import check_class_names, grw_class_weights, read_class_frequencies

__all__ = [
    "FREQUENCY_TYPES",
    "count_class_images",
    "count_class_instances",
    "class_frequencies_from_datasets",
    "class_frequencies_from_config",
    "class_weights_from_config",
]

logger = logging.getLogger(__name__)

FREQUENCY_TYPES = ("images", "instances")
# FREQUENCY_TYPE -> (metadata key, count field of its entries). Entries are {"id", field},
# as detectron2's class_image_count of LVIS v1.
_METADATA = {
    "images": ("class_image_count", "image_count"),
    "instances": ("class_instance_count", "instance_count"),
}


def _count_classes(dataset_dicts: Sequence[dict], num_classes: int, per_image: bool) -> List[int]:
    counts = [0] * num_classes
    for record in dataset_dicts:
        classes = [int(a["category_id"]) for a in record.get("annotations", [])]
        for c in set(classes) if per_image else classes:
            if not 0 <= c < num_classes:
                raise ValueError(
                    f"image {record.get('file_name', record.get('image_id'))!r} has category_id "
                    f"{c}, outside [0, {num_classes}) (MODEL.ROI_HEADS.NUM_CLASSES={num_classes})"
                )
            counts[c] += 1
    return counts


def count_class_images(dataset_dicts: Sequence[dict], num_classes: int) -> List[int]:
    """Number of images containing each class, from detectron2-format dataset dicts.

    Args:
        dataset_dicts (list[dict]): records with "annotations", each with a contiguous
            "category_id" in [0, num_classes).
        num_classes (int): K.

    Returns:
        list[int]: (K,) image counts.
    """
    return _count_classes(dataset_dicts, num_classes, per_image=True)


def count_class_instances(dataset_dicts: Sequence[dict], num_classes: int) -> List[int]:
    """Number of annotations (instances) of each class; arguments as ``count_class_images``.

    Returns:
        list[int]: (K,) instance counts.
    """
    return _count_classes(dataset_dicts, num_classes, per_image=False)


def _metadata_counts(name: str, frequency_type: str) -> Optional[List[float]]:
    meta = MetadataCatalog.get(name)
    key, field = _METADATA[frequency_type]
    if not meta.get(key):
        return None
    # As detectron2's get_fed_loss_cls_weights: entries {"id", "image_count"} sorted by id.
    entries = sorted(meta.get(key), key=lambda c: c["id"])
    counts = [float(c[field]) for c in entries]
    # register_disalign_instances notes the classes that have no annotation in the json.
    unannotated = set(meta.get("unannotated_class_ids", ()))
    claimed = [
        meta.thing_classes[i] if meta.get("thing_classes") else str(c["id"])
        for i, c in enumerate(entries)
        if c["id"] in unannotated and float(c[field]) > 0
    ]
    if claimed:
        logger.warning(
            f"{name}: {key} gives {len(claimed)} class(es) a nonzero {field}, but the json "
            f"{meta.get('json_file', '')!r} has no annotation of them: "
            f"{', '.join(claimed[:10])}{' ...' if len(claimed) > 10 else ''}. The re-weighting "
            f"uses {key} as it is (the json's {field} unless set otherwise); if these classes "
            f"have no training data, correct {field} in the json, or remove it to count from the "
            "annotations, or set MODEL.DISALIGN.FREQUENCY_FILE."
        )
    return counts


def class_frequencies_from_datasets(
    dataset_names: Sequence[str], num_classes: int, frequency_type: str = "images"
) -> Tuple[List[float], Optional[List[str]], str]:
    """Image (or instance) counts per class summed over the training datasets.

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
    key = _METADATA[frequency_type][0]
    from_meta = [_metadata_counts(n, frequency_type) for n in names]
    if all(c is not None for c in from_meta):
        counts = (
            [sum(col) for col in zip(*from_meta)] if len({len(c) for c in from_meta}) == 1 else None
        )
        if counts is None:
            raise ValueError(
                f"training datasets {names} have {key} metadata of different "
                f"lengths {[len(c) for c in from_meta]}"
            )
        source = f"{key} metadata of {names}"
    else:
        counts = [0.0] * num_classes
        for n in names:
            for i, c in enumerate(
                _count_classes(DatasetCatalog.get(n), num_classes, frequency_type == "images")
            ):
                counts[i] += c
        source = f"{frequency_type} per class counted in {names}"
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
    frequency_type = cfg.MODEL.DISALIGN.FREQUENCY_TYPE
    if frequency_type not in FREQUENCY_TYPES:
        raise ValueError(
            f"MODEL.DISALIGN.FREQUENCY_TYPE is {frequency_type!r}; expected one of "
            f"{FREQUENCY_TYPES} (what the class frequencies count)"
        )
    if path:
        frequencies = read_class_frequencies(
            path, key="MODEL.DISALIGN.FREQUENCY_FILE", num_classes=num_classes
        )
        counts, names = frequencies
        source = f"MODEL.DISALIGN.FREQUENCY_FILE={path!r} ({frequencies.format})"
    else:
        counts, names, source = class_frequencies_from_datasets(
            cfg.DATASETS.TRAIN, num_classes, frequency_type
        )
    if len(counts) != num_classes:
        raise ValueError(
            f"class frequencies from {source} have {len(counts)} entries, but "
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}"
        )
    if path and cfg.DATASETS.TRAIN:
        # A file whose classes are in another order would silently weight the wrong classes.
        dataset = cfg.DATASETS.TRAIN[0]
        check_class_names(
            names,
            MetadataCatalog.get(dataset).get("thing_classes"),
            source=repr(path),
            key="MODEL.DISALIGN.FREQUENCY_FILE",
            dataset=dataset,
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
