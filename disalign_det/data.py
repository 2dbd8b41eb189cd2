"""Registering a user's own LVIS- or COCO-format dataset for DisAlign.

detectron2's ``register_lvis_instances`` only accepts LVIS's own dataset names (it looks up the
built-in metadata by name: "v0.5", "v1" or "cocofied"). ``register_disalign_instances`` registers
any name: the loader is detectron2's ``load_lvis_json`` (or ``load_coco_json``), and the
metadata (class names, per-class image counts, evaluator type) comes from the json itself.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_lvis_json, register_coco_instances

__all__ = ["register_disalign_instances", "check_dataset_images", "FORMATS"]

FORMATS = ("lvis", "coco")


def _load_lvis(json_file: str, image_root: str) -> list:
    try:
        # No dataset name: category ids 1..K map to 0..K-1 and no built-in metadata is used.
        return load_lvis_json(json_file, image_root)
    except KeyError as e:
        if e.args == ("coco_url",):
            raise ValueError(
                f"{json_file}: an LVIS-format image needs 'coco_url' (detectron2 builds the image "
                "path as image_root + <second-to-last url part>/<file name>); register COCO-format "
                "data with format='coco'"
            ) from None
        raise


def register_disalign_instances(
    name: str,
    json_file: str,
    image_root: str,
    *,
    format: str = "lvis",
    metadata: Optional[dict] = None,
) -> None:
    """Register an instance detection/segmentation dataset under any name.

    Args:
        name (str): the dataset name for DATASETS.TRAIN / DATASETS.TEST.
        json_file (str): annotations in LVIS format (categories with ids 1..K; images with
            ``coco_url``) or COCO format.
        image_root (str): for "lvis", the folder holding the ``<split>/<file>`` named by each
            image's ``coco_url``; for "coco", the folder of the images' ``file_name``.
        format (str): "lvis" (evaluated by LVISEvaluator: AP, APr, APc, APf) or "coco"
            (COCOEvaluator).
        metadata (dict): extra metadata to set.

    The LVIS metadata gets ``thing_classes``; when every category has ``image_count``
    (``instance_count``), ``class_image_count`` (``class_instance_count``), used for DisAlign's
    re-weighting (MODEL.DISALIGN.FREQUENCY_TYPE); and ``unannotated_class_ids``, the ids of the
    categories without any annotation in the json.

    Raises:
        ValueError: unknown format, name already registered, or LVIS category ids not 1..K.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if name in DatasetCatalog.list():
        raise ValueError(f"dataset {name!r} is already registered in DatasetCatalog")
    if format == "coco":
        register_coco_instances(name, metadata or {}, json_file, image_root)
        return

    with open(json_file) as f:
        data = json.load(f)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(
            f"{json_file}: LVIS-format category ids must be 1..K in order, got {ids[:10]}..."
        )
    meta = {"thing_classes": [c.get("name", str(c["id"])) for c in categories]}
    for field, key in (
        ("image_count", "class_image_count"),
        ("instance_count", "class_instance_count"),
    ):
        if all(field in c for c in categories):
            meta[key] = [{"id": c["id"], field: c[field]} for c in categories]
    # Noted so that counts of classes the annotations never show can be warned about when the
    # re-weighting uses them (class_frequencies.py); the json is in memory anyway.
    annotated = {a.get("category_id") for a in data.get("annotations", [])}
    meta["unannotated_class_ids"] = [c["id"] for c in categories if c["id"] not in annotated]
    meta.update(metadata or {})

    # load_lvis_json concatenates image_root and the url's folder: make it a directory path.
    root = os.path.join(str(image_root), "")
    DatasetCatalog.register(name, lambda: _load_lvis(json_file, root))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=root, evaluator_type="lvis", **meta
    )


def check_dataset_images(datasets: Sequence[Tuple[str, Sequence[str]]], shown: int = 5) -> None:
    """Raise if an image listed by a registered dataset is not on disk.

    One ``os.path.exists`` per image, before training or evaluation starts, so that a json
    that lists a missing image fails at once instead of when the data loader reaches it.

    Args:
        datasets: (config key, dataset names) pairs, e.g.
            ``[("DATASETS.TRAIN", cfg.DATASETS.TRAIN), ("DATASETS.TEST", cfg.DATASETS.TEST)]``.
        shown (int): how many missing paths the message lists.

    Raises:
        FileNotFoundError: naming the config key, the dataset, its json and image root, the
            number of missing images and the first ``shown`` paths.
    """
    problems = []
    for key, names in datasets:
        for name in names:
            records = DatasetCatalog.get(name)
            missing = [r["file_name"] for r in records if not os.path.exists(r["file_name"])]
            if missing:
                meta = MetadataCatalog.get(name)
                where = ", ".join(
                    f"{k} {meta.get(k)!r}" for k in ("json_file", "image_root") if meta.get(k)
                )
                listed = "\n".join(f"    {p}" for p in missing[:shown])
                more = f"\n    ... and {len(missing) - shown} more" if len(missing) > shown else ""
                problems.append(
                    f"  {key}: dataset {name!r} ({where or 'no json/image_root metadata'}): "
                    f"{len(missing)} of {len(records)} images are missing:\n{listed}{more}"
                )
    if problems:
        raise FileNotFoundError(
            "images listed by the datasets are not on disk:\n"
            + "\n".join(problems)
            + "\nCheck the image root the dataset was registered with (train_net.py --register "
            "NAME JSON IMAGE_ROOT, or register_disalign_instances(name, json, image_root)) and "
            "that every image of the json was copied, or remove the missing images from the json."
        )
