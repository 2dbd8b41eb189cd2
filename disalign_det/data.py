"""Registering a user's own LVIS- or COCO-format dataset for DisAlign.

detectron2's ``register_lvis_instances`` only accepts LVIS's own dataset names (it looks up the
built-in metadata by name: "v0.5", "v1" or "cocofied"). ``register_disalign_instances`` registers
any name: the loader is detectron2's ``load_lvis_json`` (or ``load_coco_json``), and the
metadata (class names, per-class image counts, evaluator type) comes from the json itself.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_lvis_json, register_coco_instances

__all__ = ["register_disalign_instances", "FORMATS"]

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

    The LVIS metadata gets ``thing_classes`` and, when every category has ``image_count``,
    ``class_image_count`` (used for DisAlign's re-weighting).

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
        categories = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(
            f"{json_file}: LVIS-format category ids must be 1..K in order, got {ids[:10]}..."
        )
    meta = {"thing_classes": [c.get("name", str(c["id"])) for c in categories]}
    if all("image_count" in c for c in categories):
        meta["class_image_count"] = [
            {"id": c["id"], "image_count": c["image_count"]} for c in categories
        ]
    meta.update(metadata or {})

    # load_lvis_json concatenates image_root and the url's folder: make it a directory path.
    root = os.path.join(str(image_root), "")
    DatasetCatalog.register(name, lambda: _load_lvis(json_file, root))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=root, evaluator_type="lvis", **meta
    )
