#!/usr/bin/env python
"""See a DisAlign detector's predictions, in the shape of detectron2's demo/demo.py: detectron2's
own ``DefaultPredictor`` and ``Visualizer`` on images, one output image per input.

    # the DisAlign (stage-2) model alone
    python projects/DisAlign/demo.py --config-file <stage-2 yaml> --input img.jpg imgs/ 'more/*.jpg' \
        --output out/ --opts MODEL.WEIGHTS <stage-2 model_final.pth>
    # stage 1 (left) and DisAlign (right) side by side
    python projects/DisAlign/demo.py --config-file <stage-2 yaml> --input imgs/ --output out/ \
        --compare-weights <stage-1 model_final.pth> --opts MODEL.WEIGHTS <stage-2 model_final.pth>

``--input`` takes image files, folders (their images, not recursively) and glob patterns;
``--output`` is a folder (created; one image of the input's name per input) or, for a single
input, a file. ``--compare-weights`` draws a second model's predictions on the left, titled
"stage 1", and the ``--config-file`` model's on the right, titled "DisAlign"; its config is
``--compare-config-file``, by default ``--config-file`` itself: a stage-1 checkpoint has no
calibration parameters, so they stay at the identity (alpha = beta = 0) and that model is
exactly stage 1. ``--opts`` applies to both models (``--compare-weights`` replaces
MODEL.WEIGHTS for the left one).

Boxes are coloured by the class's LVIS group (rare: 1-10 training images, red; common: 11-100,
orange; frequent: > 100, blue) and labelled "name score [r]" for rare classes, when the groups
are known: from MODEL.DISALIGN.FREQUENCY_FILE, else the ``class_image_count`` metadata of
DATASETS.TRAIN (detectron2's LVIS v1, ``--register``ed LVIS-format data), else the
``frequency`` field of the categories in the json of DATASETS.TEST / DATASETS.TRAIN (LVIS's
own r/c/f). Each side's title counts its shown detections per group.

Class names come from the metadata of DATASETS.TEST[0] (as DefaultPredictor): register your
own data with ``--register NAME JSON IMAGE_ROOT`` (as train_net.py). ``--demo`` adds the demo's
tiny backbone (configs/detectron2/demo/ and quick_schedules/), as train_net.py --demo.

Checkpoints are loaded with ``disalign_det.DisAlignCheckpointer``, which refuses a checkpoint
of another class count or classifier type (detectron2's ``DetectionCheckpointer``, which
DefaultPredictor uses, would skip the classifier with a warning and predict with a random
one). MODEL.DISALIGN.REWEIGHT is set to False: the re-weighting only enters the training loss
and would otherwise read the training annotations.

Unlike detectron2's demo there is no OpenCV window, webcam or video input: --output is required.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from disalign_core import LVIS_COUNT_BINS, groups_by_count, read_class_frequencies
from disalign_det import DisAlignCheckpointer, add_disalign_config
from disalign_det.engine import register_datasets

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
GROUPS = LVIS_COUNT_BINS[1]  # ("rare", "common", "frequent")
# RGB in [0, 1] (matplotlib, the Visualizer's colours)
GROUP_COLOURS = {"rare": (0.9, 0.1, 0.1), "common": (1.0, 0.55, 0.0), "frequent": (0.1, 0.4, 0.9)}
LVIS_FREQUENCY = {"r": "rare", "c": "common", "f": "frequent"}

logger = logging.getLogger("detectron2.disalign_demo")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="DisAlign predictions (detectron2 DefaultPredictor + Visualizer), "
        "optionally stage 1 and DisAlign side by side"
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="config of the (DisAlign) model"
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image files, folders of images and/or glob patterns such as 'directory/*.jpg'",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="folder for the output images (created), or a file when there is one input",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score for instance predictions to be shown",
    )
    parser.add_argument(
        "--compare-weights",
        metavar="FILE",
        help="checkpoint drawn on the left (titled 'stage 1'), e.g. the stage-1 model_final.pth",
    )
    parser.add_argument(
        "--compare-config-file",
        metavar="FILE",
        help="config of --compare-weights (default: --config-file; a stage-1 checkpoint in the "
        "stage-2 config is exactly stage 1, its calibration at the identity)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="output scale of each panel (Visualizer's scale)"
    )
    parser.add_argument(
        "--register",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register an LVIS-format dataset (class names, groups) under NAME (repeatable)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="add the demo's tiny CPU backbone and its MODEL.TINY_BACKBONE keys "
        "(configs/detectron2/demo/ and quick_schedules/), as train_net.py --demo",
    )
    parser.add_argument(
        "--opts",
        help="modify config options using the command-line 'KEY VALUE' pairs (both models)",
        default=[],
        nargs=argparse.REMAINDER,
    )
    return parser


# ----------------------------------------------------------------------------- config, model
def config_hooks(demo: bool) -> list:
    """``train_net.py --demo``'s config hook: the demo's tiny backbone keys."""
    if not demo:
        return []
    try:
        from disalign_demo.det import add_tiny_backbone_config
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"--demo needs the package disalign_demo of this repository ({e}): install the "
            "repository (pip install -e .) or put its root on PYTHONPATH"
        ) from e
    return [add_tiny_backbone_config]


def setup_cfg(
    config_file: str,
    opts: Sequence[str] = (),
    confidence_threshold: float = 0.5,
    hooks: Sequence = (),
    weights: Optional[str] = None,
) -> CfgNode:
    """The config of one model, in detectron2's order (get_cfg, add_disalign_config, the hooks,
    the file, the options), with the demo's score threshold; ``weights`` (if given) replaces
    MODEL.WEIGHTS. MODEL.DISALIGN.REWEIGHT is False: prediction needs no GRW class weights."""
    cfg = get_cfg()
    add_disalign_config(cfg)
    for hook in hooks:
        hook(cfg)
    try:
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:
        message = str(e.args[0]) if e.args else str(e)
        if not message.startswith("Non-existent"):
            raise
        raise ValueError(
            f"{config_file} / --opts: {message}. The configs of configs/detectron2/demo/ and "
            "quick_schedules/ need --demo (the tiny backbone's MODEL.TINY_BACKBONE keys)."
        ) from None
    name = cfg.MODEL.BACKBONE.NAME
    demo_backbone = name in BACKBONE_REGISTRY and BACKBONE_REGISTRY.get(name).__module__.startswith(
        "disalign_demo."
    )
    if name not in BACKBONE_REGISTRY or (demo_backbone and "TINY_BACKBONE" not in cfg.MODEL):
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name!r} ({config_file} and --opts) "
            + (
                "is the demo's tiny backbone: the configs of configs/detectron2/demo/ and "
                "quick_schedules/ need --demo."
                if demo_backbone or name.startswith("build_disalign_tiny")
                else "is not in detectron2's BACKBONE_REGISTRY: import the module that "
                "registers it."
            )
        )
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = confidence_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = confidence_threshold
    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = confidence_threshold
    cfg.MODEL.DISALIGN.REWEIGHT = False
    cfg.freeze()
    return cfg


# The loggers of DefaultPredictor's DetectionCheckpointer (detectron2's and fvcore's).
_CHECKPOINT_LOGGERS = ("detectron2.checkpoint.detection_checkpoint", "fvcore.common.checkpoint")


def _drop(record: logging.LogRecord) -> bool:
    return False


def build_predictor(cfg: CfgNode) -> DefaultPredictor:
    """detectron2's ``DefaultPredictor`` for ``cfg``, its checkpoint (MODEL.WEIGHTS) loaded by
    ``DisAlignCheckpointer``: a checkpoint of another class count or classifier type is an
    error, not a randomly initialised classifier.

    Raises:
        ValueError: MODEL.WEIGHTS is empty, or the checkpoint does not fit the model.
        FileNotFoundError: MODEL.WEIGHTS names no file.
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.WEIGHTS is empty: the model would predict with random weights. Pass the "
            "trained checkpoint, e.g. --opts MODEL.WEIGHTS output/.../model_final.pth"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS {weights!r} is not a file")
    no_weights = cfg.clone()
    no_weights.defrost()
    no_weights.MODEL.WEIGHTS = ""  # DefaultPredictor's DetectionCheckpointer loads nothing
    no_weights.freeze()
    # ... and would log that it loads "" and initialises the model from scratch: not so.
    loggers = [logging.getLogger(n) for n in _CHECKPOINT_LOGGERS]
    for lg in loggers:
        lg.addFilter(_drop)
    try:
        predictor = DefaultPredictor(no_weights)
    finally:
        for lg in loggers:
            lg.removeFilter(_drop)
    DisAlignCheckpointer(predictor.model).load(weights)
    predictor.cfg = cfg.clone()
    return predictor


def calibration_is_identity(model) -> bool:
    """Whether every DisAlign calibration of ``model`` has alpha = beta = 0 (none: False)."""
    found = False
    for name, p in model.named_parameters():
        if ".calibration." in f".{name}" and name.endswith(("alpha", "beta")):
            found = True
            if p.detach().abs().sum() > 0:
                return False
    return found


# ----------------------------------------------------------------------------- class groups
def _json_frequencies(json_file: str) -> Optional[List[str]]:
    with open(json_file) as f:
        categories = json.load(f).get("categories", [])
    categories = sorted(categories, key=lambda c: c["id"])
    if not categories or not all(c.get("frequency") in LVIS_FREQUENCY for c in categories):
        return None
    return [LVIS_FREQUENCY[c["frequency"]] for c in categories]


def class_groups(cfg: CfgNode) -> Tuple[Optional[List[str]], str]:
    """LVIS group ("rare", "common", "frequent") of each class, and where it came from.

    Sources, in order: MODEL.DISALIGN.FREQUENCY_FILE; the ``class_image_count`` metadata of
    every dataset of DATASETS.TRAIN (training images per class, summed); the ``frequency``
    field of the categories in the json of DATASETS.TEST / DATASETS.TRAIN (LVIS's r/c/f).

    Returns:
        (list[str] of length K, or None when no source has them; a description of the source)
    """
    k = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if cfg.MODEL.DISALIGN.FREQUENCY_FILE:
        counts, _ = read_class_frequencies(
            cfg.MODEL.DISALIGN.FREQUENCY_FILE, "MODEL.DISALIGN.FREQUENCY_FILE"
        )
        if len(counts) == k:
            return groups_by_count(counts), "MODEL.DISALIGN.FREQUENCY_FILE"
    train = list(cfg.DATASETS.TRAIN)
    entries = [MetadataCatalog.get(n).get("class_image_count") for n in train]
    if train and all(entries) and all(len(e) == k for e in entries):
        counts = np.zeros(k)
        for e in entries:
            counts += [c["image_count"] for c in sorted(e, key=lambda c: c["id"])]
        return groups_by_count(counts.tolist()), f"class_image_count of {', '.join(train)}"
    for name in list(cfg.DATASETS.TEST) + train:
        json_file = MetadataCatalog.get(name).get("json_file")
        if json_file and os.path.isfile(json_file):
            groups = _json_frequencies(json_file)
            if groups is not None and len(groups) == k:
                return groups, f"the categories' frequency in {json_file}"
    return None, "unknown (no frequency file, class_image_count or LVIS json)"


# ----------------------------------------------------------------------------- drawing
def draw_instances(
    image_rgb: np.ndarray,
    instances,
    metadata,
    groups: Optional[Sequence[str]],
    scale: float = 1.0,
) -> np.ndarray:
    """Draw ``instances`` (detectron2 Instances on CPU) with detectron2's ``Visualizer``;
    with ``groups``, boxes take their class group's colour and rare classes are labelled
    "[r]". Returns the RGB uint8 image (H*scale, W*scale, 3)."""
    visualizer = Visualizer(image_rgb, metadata, scale=scale)
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else []
    scores = instances.scores.tolist() if instances.has("scores") else [None] * len(classes)
    names = metadata.get("thing_classes", None)
    labels, colours = [], []
    for c, s in zip(classes, scores):
        label = names[c] if names and c < len(names) else str(c)
        if s is not None:
            label += f" {s * 100:.0f}%"
        if groups is not None:
            group = groups[c]
            colours.append(GROUP_COLOURS[group])
            if group == "rare":
                label += " [r]"
        labels.append(label)
    masks = None
    if instances.has("pred_masks"):
        masks = list(np.asarray(instances.pred_masks))
    visualizer.overlay_instances(
        boxes=instances.pred_boxes if instances.has("pred_boxes") else None,
        labels=labels,
        masks=masks,
        assigned_colors=colours if groups is not None else None,
        alpha=0.5,
    )
    return visualizer.output.get_image()


def group_counts(instances, groups: Optional[Sequence[str]]) -> Dict[str, int]:
    """Shown detections per group (``{"all": n}`` only, without groups)."""
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else []
    out = {"all": len(classes)}
    if groups is not None:
        out.update({g: sum(groups[c] == g for c in classes) for g in GROUPS})
    return out


def _put_fitted(img: np.ndarray, text: str, y0: int, height: int, colour, x0: int = 4) -> int:
    """Draw ``text`` (cv2, BGR colour) from ``x0`` in the band of rows [y0, y0 + height),
    shrunk to fit the image width; returns the x after it."""
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    (w, h), _ = cv2.getTextSize(text, font, 1.0, thickness)
    size = min((height * 0.7) / h, max(img.shape[1] - x0 - 2, 1) / w)
    (w, h), base = cv2.getTextSize(text, font, size, thickness)
    cv2.putText(img, text, (x0, y0 + (height + h) // 2), font, size, colour, thickness, cv2.LINE_AA)
    return x0 + w


def titled(panel: np.ndarray, title: str, counts: Dict[str, int]) -> np.ndarray:
    """``panel`` (RGB) under a white band: the title and the number of detections (per group,
    in the group's colour, when known)."""
    line = max(12, int(round(panel.shape[0] * 0.06)))
    band = np.full((2 * line, panel.shape[1], 3), 255, np.uint8)
    band = np.ascontiguousarray(band[:, :, ::-1])  # drawn in BGR, as cv2
    _put_fitted(band, f"{title}: {counts['all']} detections", 0, line, (0, 0, 0))
    x = 4
    for g in GROUPS:
        if g in counts:
            bgr = tuple(int(255 * v) for v in GROUP_COLOURS[g][::-1])
            x = _put_fitted(band, f"{g} {counts[g]}", line, line, bgr, x0=x) + 8
    return np.concatenate([band[:, :, ::-1], panel], axis=0)


# ----------------------------------------------------------------------------- files
def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Image paths of ``--input``: files, the images of folders, glob patterns (sorted).

    Raises:
        FileNotFoundError: naming every item that is no file or folder and matches nothing.
        ValueError: a folder without images.
    """
    files, missing = [], []
    for item in inputs:
        path = os.path.expanduser(item)
        if os.path.isdir(path):
            found = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise ValueError(
                    f"--input {item}: the folder holds no image ({', '.join(IMAGE_EXTENSIONS)})"
                )
            files += [os.path.join(path, n) for n in found]
        elif os.path.isfile(path):
            files.append(path)
        else:
            matches = sorted(m for m in glob.glob(path) if os.path.isfile(m))
            if not matches:
                missing.append(item)
            files += matches
    if missing:
        raise FileNotFoundError(
            "--input: not found: "
            + ", ".join(repr(m) for m in missing)
            + " (no such file or folder, and no file matches it as a glob pattern)"
        )
    return files


def output_paths(files: Sequence[str], output: str) -> List[str]:
    """Where each input's image is written: ``output/<input name>`` when ``output`` is a folder
    (an existing one, one ending in '/', one without an extension, or any with several
    inputs; created), else ``output`` itself.

    Raises:
        ValueError: two inputs of the same name into one folder, or an output path that is
            one of the inputs.
    """
    output = os.path.expanduser(output)
    is_dir = (
        os.path.isdir(output)
        or output.endswith(("/", os.sep))
        or not os.path.splitext(output)[1]
        or len(files) > 1
    )
    if is_dir:
        os.makedirs(output, exist_ok=True)
        paths = [os.path.join(output, os.path.basename(f)) for f in files]
        seen: Dict[str, str] = {}
        for f, p in zip(files, paths):
            if p in seen:
                raise ValueError(
                    f"--input {seen[p]!r} and {f!r} have the same name: both would be written "
                    f"to {p!r}; give them separately with different --output folders"
                )
            seen[p] = f
    else:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        paths = [output]
    inputs = {os.path.abspath(f) for f in files}
    clash = [p for p in paths if os.path.abspath(p) in inputs]
    if clash:
        raise ValueError(f"--output would overwrite the input image(s) {clash}: use another folder")
    return paths


# ----------------------------------------------------------------------------- main
def _format_counts(counts: Dict[str, int]) -> str:
    groups = [f"{g} {counts[g]}" for g in GROUPS if g in counts]
    return f"{counts['all']}" + (f" ({', '.join(groups)})" if groups else "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.compare_config_file and not args.compare_weights:
        parser.error(
            "--compare-config-file needs --compare-weights (the stage-1 checkpoint): the "
            "config's own MODEL.WEIGHTS may be an ImageNet initialisation"
        )
    try:
        files = expand_inputs(args.input)
        outputs = output_paths(files, args.output)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))

    setup_logger(name="fvcore")
    setup_logger(name="disalign_det")
    setup_logger()  # detectron2, and this script's logger (detectron2.disalign_demo)
    logger.info("Arguments: " + str(args))
    try:
        register_datasets(args.register)
        hooks = config_hooks(args.demo)
        cfg = setup_cfg(args.config_file, args.opts, args.confidence_threshold, hooks)
        predictor = build_predictor(cfg)
        models = [("DisAlign", predictor)]
        if args.compare_weights:
            cfg1 = setup_cfg(
                args.compare_config_file or args.config_file,
                args.opts,
                args.confidence_threshold,
                hooks,
                weights=args.compare_weights,
            )
            models.insert(0, ("stage 1", build_predictor(cfg1)))
    except (FileNotFoundError, ValueError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    if not cfg.MODEL.DISALIGN.CALIBRATION:
        models[-1] = (os.path.basename(args.config_file), predictor)  # not titled DisAlign
    elif calibration_is_identity(predictor.model):
        logger.warning(
            f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} holds no trained calibration (alpha = beta = 0"
            " in every calibration): its predictions are stage 1's. For DisAlign's, pass the "
            "stage-2 model_final.pth with --opts MODEL.WEIGHTS."
        )
    if len(models) > 1 and not calibration_is_identity(models[0][1].model):
        if any(".calibration." in f".{n}" for n, _ in models[0][1].model.named_parameters()):
            logger.warning(
                f"--compare-weights {args.compare_weights!r} holds a trained calibration: the "
                "left side (titled 'stage 1') is not the stage-1 model."
            )
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
    groups, source = class_groups(cfg)
    logger.info(f"class groups: {source}")

    totals = {title: {} for title, _ in models}
    for path, out_path in zip(files, outputs):
        try:
            image = read_image(path, format="BGR")
        except (OSError, ValueError) as e:
            print(f"{parser.prog}: error: cannot read --input image {path!r}: {e}", file=sys.stderr)
            return 1
        start = time.time()
        panels, summary = [], []
        for title, model in models:
            instances = model(image)["instances"].to("cpu")
            counts = group_counts(instances, groups)
            for k, v in counts.items():
                totals[title][k] = totals[title].get(k, 0) + v
            panel = draw_instances(image[:, :, ::-1], instances, metadata, groups, args.scale)
            panels.append(titled(panel, title, counts) if len(models) > 1 else panel)
            summary.append(f"{title} {_format_counts(counts)}")
        Image.fromarray(np.concatenate(panels, axis=1)).save(out_path)
        logger.info(
            f"{path}: detected {'; '.join(summary)} in {time.time() - start:.2f}s -> {out_path}"
        )
    logger.info(
        f"{len(files)} image(s), detections above {args.confidence_threshold}: "
        + "; ".join(f"{t} {_format_counts(c)}" for t, c in totals.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())  # pragma: no cover
