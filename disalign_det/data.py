"""Registering a user's own LVIS- or COCO-format dataset for DisAlign, the image checks, and
the training loader (with the held-out calibration split).

detectron2's ``register_lvis_instances`` only accepts LVIS's own dataset names (it looks up the
built-in metadata by name: "v0.5", "v1" or "cocofied"). ``register_disalign_instances`` registers
any name: the loader is detectron2's ``load_lvis_json`` (or ``load_coco_json``), and the
metadata (class names, per-class image counts, evaluator type) comes from the json itself.

Held-out calibration split (``DATASETS.HELDOUT``, our extension beyond the paper, off by
default): with ``FRACTION`` > 0 the training images of ``DATASETS.TRAIN`` (as detectron2's
DatasetCatalog gives them, before its filters) are split by ``disalign_core.heldout_split``,
each image labelled by the set of its annotations' category ids, and the train loader reads
only the part ``PART`` names: "stage1" (the stage-1 config) or "calibration" (the stage-2
config, so that DisAlign calibrates on images stage 1 never saw). The split depends only on
the image list, FRACTION and SEED, so both stages' configs get complementary parts.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import (
    filter_images_with_few_keypoints,
    filter_images_with_only_crowd_annotations,
)
from detectron2.data.datasets import load_lvis_json, register_coco_instances

from disalign_core import HELDOUT_PARTS, check_heldout_fraction, heldout_split
from disalign_core.image_files import CHECK_MODES, image_file_problem, run_parallel, sample, shard

__all__ = [
    "CHECK_IMAGES_ENV",
    "CHECK_IMAGES_SAMPLE_ENV",
    "FORMATS",
    "ImageErrorNamingMapper",
    "ImageReadError",
    "build_test_loader",
    "build_train_loader",
    "check_dataset_images",
    "check_heldout_config",
    "heldout_dataset_dicts",
    "image_check_settings",
    "register_disalign_instances",
]

# A child of detectron2's logger: default_setup sends it to stdout and OUTPUT_DIR/log.txt.
logger = logging.getLogger("detectron2.disalign")

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


# Environment variables that choose the image check before training (engine.check_images).
CHECK_IMAGES_ENV = "DISALIGN_CHECK_IMAGES"
CHECK_IMAGES_SAMPLE_ENV = "DISALIGN_CHECK_IMAGES_SAMPLE"

_FIX_DAMAGED = (
    "Fix: copy or download these images again (a file cut short is usually an interrupted "
    "transfer), or remove them from the json. An image of another size than the json's "
    "width/height is another copy of the image than the one annotated: use the annotated one, "
    "or correct width/height (detectron2 refuses the mismatch when it loads the image)."
)


class ImageReadError(OSError):
    """An image listed by a dataset cannot be read or decoded, or has another size than its
    annotations; the message names the file, the dataset and the fix."""


def image_check_settings(environ: Mapping[str, str] = os.environ) -> Tuple[str, Optional[int]]:
    """The image check chosen by the environment: (mode, sample size).

    ``DISALIGN_CHECK_IMAGES``: ``headers`` (default: format, size and complete end of every
    image), ``full`` (every image decoded) or ``exists`` (one ``os.path.exists`` per image).
    ``DISALIGN_CHECK_IMAGES_SAMPLE=N``: check the contents of N images per dataset (random,
    fixed seed) instead of all; every image is still checked to exist.
    """
    mode = environ.get(CHECK_IMAGES_ENV, "headers").strip().lower() or "headers"
    if mode not in CHECK_MODES:
        raise ValueError(
            f"{CHECK_IMAGES_ENV}={environ[CHECK_IMAGES_ENV]!r}: expected one of {CHECK_MODES}"
        )
    raw = environ.get(CHECK_IMAGES_SAMPLE_ENV, "").strip()
    try:
        count = int(raw) if raw else None
    except ValueError:
        count = -1
    if count is not None and count < 1:
        raise ValueError(
            f"{CHECK_IMAGES_SAMPLE_ENV}={raw!r}: expected a number of images (>= 1), or unset "
            "to check every image"
        )
    return mode, count


def _where(name: str) -> str:
    meta = MetadataCatalog.get(name)
    where = ", ".join(f"{k} {meta.get(k)!r}" for k in ("json_file", "image_root") if meta.get(k))
    return where or "no json/image_root metadata"


def _listed(lines: Sequence[str], shown: int) -> str:
    more = f"\n    ... and {len(lines) - shown} more" if len(lines) > shown else ""
    return "\n".join(f"    {line}" for line in lines[:shown]) + more


def check_dataset_images(
    datasets: Sequence[Tuple[str, Sequence[str]]],
    shown: int = 5,
    *,
    mode: str = "exists",
    sample_size: Optional[int] = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Optional[Callable[[list], List[list]]] = None,
    num_threads: Optional[int] = None,
) -> None:
    """Raise if an image listed by a registered dataset is missing, or (``mode``) damaged.

    Each dataset is loaded once. Every image must exist (one ``os.path.exists`` each), so that
    a json that lists a missing image fails at once instead of when the data loader reaches
    it. Then, unless ``mode`` is "exists", each image's contents are checked
    (``disalign_core.image_files.image_file_problem``): "headers" reads the format and size
    and checks that a JPEG/PNG ends as a complete file (cut-short files; the size against the
    json's width/height), "full" decodes every pixel. The processes of a distributed run
    split the images (``rank``, ``world_size``) and ``gather`` collects their findings, so
    every process raises the same error.

    Args:
        datasets: (config key, dataset names) pairs, e.g.
            ``[("DATASETS.TRAIN", cfg.DATASETS.TRAIN), ("DATASETS.TEST", cfg.DATASETS.TEST)]``.
        shown (int): how many paths each message lists per dataset.
        mode (str): "exists", "headers" or "full".
        sample_size (int, optional): check the contents of this many images per dataset
            (random, fixed seed) instead of all.
        rank, world_size (int): this process and the number of processes.
        gather: ``comm.all_gather`` in a distributed run: a list of this process's findings
            to the list of every process's.
        num_threads (int, optional): threads of this process (default: its CPUs, at most 8).

    Raises:
        FileNotFoundError: naming the config key, the dataset, its json and image root, the
            number of missing images and the first ``shown`` paths.
        ImageReadError: the same for images that cannot be read, are cut short, or are of
            another size than the json says, with the reason for each.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"mode must be one of {CHECK_MODES}, got {mode!r}")
    problems = []
    loaded: List[Tuple[str, str, list]] = []
    for key, names in datasets:
        for name in names:
            records = DatasetCatalog.get(name)
            loaded.append((key, name, records))
            missing = [r["file_name"] for r in records if not os.path.exists(r["file_name"])]
            if missing:
                problems.append(
                    f"  {key}: dataset {name!r} ({_where(name)}): "
                    f"{len(missing)} of {len(records)} images are missing:\n"
                    f"{_listed(missing, shown)}"
                )
    if problems:
        raise FileNotFoundError(
            "images listed by the datasets are not on disk:\n"
            + "\n".join(problems)
            + "\nCheck the image root the dataset was registered with (train_net.py --register "
            "NAME JSON IMAGE_ROOT, or register_disalign_instances(name, json, image_root)) and "
            "that every image of the json was copied, or remove the missing images from the json."
        )
    if mode == "exists":
        return

    def check(record: dict) -> Optional[str]:
        size = (record["width"], record["height"]) if "width" in record else None
        return image_file_problem(record["file_name"], decode=mode == "full", expected_size=size)

    found: List[Tuple[int, str]] = []  # (index into loaded, "path: problem")
    checked: Dict[int, int] = {}
    for i, (_, _, records) in enumerate(loaded):
        chosen = sample(records, sample_size)
        checked[i] = len(chosen)
        mine = shard(chosen, rank, world_size)
        for record, problem in zip(mine, run_parallel(check, mine, num_threads)):
            if problem:
                found.append((i, f"{record['file_name']}: {problem}"))
    if gather is not None:
        found = [item for part in gather(found) for item in part]
    if not found:
        return
    for i, (key, name, records) in enumerate(loaded):
        lines = sorted(line for j, line in found if j == i)
        if lines:
            of = f"{checked[i]} checked" if checked[i] < len(records) else f"{len(records)}"
            problems.append(
                f"  {key}: dataset {name!r} ({_where(name)}): {len(lines)} of {of} images "
                f"cannot be used:\n{_listed(lines, shown)}"
            )
    what = {"headers": "format, size and complete end", "full": "every pixel decoded"}[mode]
    raise ImageReadError(
        f"images listed by the datasets cannot be used (checked before training: {what}; "
        f"{CHECK_IMAGES_ENV}={mode}):\n" + "\n".join(problems) + "\n" + _FIX_DAMAGED
    )


def _datasets_of(file_name: str, names: Sequence[str]) -> List[str]:
    """The datasets among ``names`` whose image root holds ``file_name`` (all if none does)."""
    roots = {n: MetadataCatalog.get(n).get("image_root") for n in names}
    inside = [
        n for n, root in roots.items() if root and file_name.startswith(os.path.join(root, ""))
    ]
    return inside or list(names)


class ImageErrorNamingMapper:
    """A dataset mapper whose image read errors name the image, its dataset and the fix.

    detectron2's ``DatasetMapper`` raises PIL's error (e.g. ``OSError: image file is truncated
    (71 bytes not processed)``), which names no file, when the loader reaches a damaged image,
    possibly hours into training. This wrapper raises ``ImageReadError`` instead: the file, the
    dataset (found by its image root among ``dataset_names``), the config key, PIL's message,
    and how to find every such image at once (the full check before training). It catches what
    reading an image raises (``OSError``, ``SyntaxError``); other errors pass unchanged.

    Args:
        mapper: the mapper to call (e.g. ``DatasetMapper(cfg, is_train=True)``).
        dataset_names: the datasets the loader reads.
        key (str): their config key, ``DATASETS.TRAIN`` or ``DATASETS.TEST``.
    """

    def __init__(self, mapper: Callable[[dict], dict], dataset_names: Sequence[str], key: str):
        self.mapper = mapper
        self.dataset_names = list(dataset_names)
        self.key = key

    def __call__(self, dataset_dict: dict) -> dict:
        try:
            return self.mapper(dataset_dict)
        except (OSError, SyntaxError) as e:
            if isinstance(e, ImageReadError):
                raise
            file_name = dataset_dict.get("file_name", "<no file_name>")
            datasets = ", ".join(
                f"{n!r} ({_where(n)})" for n in _datasets_of(file_name, self.dataset_names)
            )
            raise ImageReadError(
                f"cannot read the image {file_name} ({type(e).__name__}: {e}), listed by "
                f"{self.key}: {datasets}. The check before training reads, by default "
                f"({CHECK_IMAGES_ENV}=headers), each image's header and end, not every "
                "pixel: damage inside an image is found by "
                f"{CHECK_IMAGES_ENV}=full, which decodes every image of the datasets before "
                "training and lists all damaged ones at once. Fix: copy or download this "
                "image again, or remove it from the json."
            ) from e


def check_heldout_config(cfg) -> bool:
    """Validate ``DATASETS.HELDOUT``; True when the split is on (FRACTION > 0).

    Raises:
        ValueError: naming the key, the value and what is expected.
    """
    h = cfg.DATASETS.HELDOUT
    fraction = h.FRACTION
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(
            f"DATASETS.HELDOUT.FRACTION = {fraction!r}: expected a number, 0.0 (off) or in (0, 1)"
        )
    if h.PART not in HELDOUT_PARTS:
        raise ValueError(
            f"DATASETS.HELDOUT.PART = {h.PART!r}: expected one of {HELDOUT_PARTS} ('stage1' in "
            "the stage-1 config, 'calibration' in the stage-2 config)"
        )
    if isinstance(h.SEED, bool) or not isinstance(h.SEED, int):
        raise ValueError(f"DATASETS.HELDOUT.SEED = {h.SEED!r}: expected an integer")
    if fraction == 0:
        return False
    check_heldout_fraction(fraction, "DATASETS.HELDOUT.FRACTION")
    return True


def heldout_dataset_dicts(cfg) -> list:
    """The training dataset dicts of the part ``DATASETS.HELDOUT.PART`` (module docstring).

    The full list is detectron2's ``get_detection_dataset_dicts`` of ``DATASETS.TRAIN``
    (DatasetCatalog, precomputed proposals) *before* its filters, so the split does not depend
    on the filter settings of a stage; detectron2's filters (images without non-crowd
    annotations, with too few keypoints) then apply to the chosen part as they would to the
    whole list.

    Returns:
        list[dict]: the part's records, in their order in the full list.
    """
    check_heldout_config(cfg)
    h = cfg.DATASETS.HELDOUT
    records = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=False,
        min_keypoints=0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    if not isinstance(records, list):
        raise ValueError(
            f"DATASETS.HELDOUT.FRACTION = {h.FRACTION}: the held-out split needs a list of "
            f"dataset dicts, but DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} is a "
            f"{type(records).__name__}; set DATASETS.HELDOUT.FRACTION 0.0"
        )
    # One label set per image: the categories it contains (stratified by the rarest).
    labels = [{int(a["category_id"]) for a in r.get("annotations", [])} for r in records]
    split = heldout_split(labels, h.FRACTION, seed=h.SEED, key="DATASETS.HELDOUT.FRACTION")
    part = [records[i] for i in split.part(h.PART, "DATASETS.HELDOUT.PART")]
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS and part and "annotations" in part[0]:
        part = filter_images_with_only_crowd_annotations(part)
    if cfg.MODEL.KEYPOINT_ON and cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE > 0:
        part = filter_images_with_few_keypoints(
            part, cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
        )
    if not part:
        raise ValueError(
            f"DATASETS.HELDOUT: the part {h.PART!r} of DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} "
            f"(FRACTION {h.FRACTION}, SEED {h.SEED}) has no usable image"
        )
    logger.info(
        f"DisAlign held-out split (DATASETS.HELDOUT): training on the {h.PART!r} part, "
        f"{len(part)} of {len(records)} images of {list(cfg.DATASETS.TRAIN)} (FRACTION "
        f"{h.FRACTION} withheld for calibration, SEED {h.SEED}); class frequencies stay "
        "those of the whole training set"
    )
    return part


def build_train_loader(cfg):
    """detectron2's ``build_detection_train_loader(cfg)``, its ``DatasetMapper`` wrapped in
    ``ImageErrorNamingMapper``; with ``DATASETS.HELDOUT.FRACTION`` > 0, on the part
    ``DATASETS.HELDOUT.PART`` of the training images only (``heldout_dataset_dicts``; the
    sampler, e.g. LVIS's RepeatFactorTrainingSampler, is built on that part)."""
    mapper = ImageErrorNamingMapper(DatasetMapper(cfg, True), cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    if check_heldout_config(cfg):
        return build_detection_train_loader(cfg, mapper=mapper, dataset=heldout_dataset_dicts(cfg))
    return build_detection_train_loader(cfg, mapper=mapper)


def build_test_loader(cfg, dataset_name: str):
    """detectron2's ``build_detection_test_loader(cfg, dataset_name)``, its ``DatasetMapper``
    wrapped in ``ImageErrorNamingMapper``."""
    mapper = ImageErrorNamingMapper(DatasetMapper(cfg, False), [dataset_name], "DATASETS.TEST")
    return build_detection_test_loader(cfg, dataset_name, mapper=mapper)
