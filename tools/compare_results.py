#!/usr/bin/env python
"""Compare a stage-1 and a DisAlign stage-2 evaluation: the metrics side by side (with the
expected numbers of a published row), and each class's change against its training frequency.

Usage::

    # detectron2: train_net.py's OUTPUT_DIRs; the predictions are evaluated again with the lvis
    # package's LVISEval against --gt, which also gives each category's AP (box, and mask
    # when the predictions have masks)
    python tools/compare_results.py --framework det \\
        --stage1 output/mask_rcnn_R_50_FPN_1x --stage2 output/disalign_mask_rcnn_R_50_FPN_1x \\
        --gt datasets/lvis/lvis_v0.5_val.json --expected LVISv0.5/mask_rcnn_R_50_FPN_1x \\
        --plot per_class_change.png
    # MMSegmentation / MMPretrain: the --work-dir of tools/test.py, run with
    # --cfg-options test_evaluator.per_class=True
    python tools/compare_results.py --framework seg --stage1 work_dirs/fcn_test \\
        --stage2 work_dirs/disalign_fcn_test --frequencies data/ade/objectInfo150.txt \\
        --expected ade20k/fcn_r50-d8:ms-flip --plot per_class_change.png
    python tools/compare_results.py --framework cls --stage1 work_dirs/x50_test \\
        --stage2 work_dirs/disalign_x50_test --frequencies data/imagenet/ImageNet_LT_train.txt
    python tools/compare_results.py --list-expected

What is read:

- det: ``--stage1``/``--stage2`` are the OUTPUT_DIRs (``inference/lvis_instances_results.json``,
  which LVISEvaluator writes) or the prediction files. ``--gt`` is the LVIS json of the
  evaluated split. Training frequencies: the image counts of ``--frequencies`` (an LVIS json,
  e.g. the training split's, or a frequency file), else the ``image_count`` of ``--gt``'s
  categories. ``--max-dets`` must be the run's ``TEST.DETECTIONS_PER_IMAGE`` (LVIS: 300).
- seg / cls: the ``--work-dir`` of ``tools/test.py`` (its newest ``<timestamp>/<timestamp>.json``)
  or that file; per-class values are there when ``LongTailIoUMetric`` / ``LongTailAccuracy`` ran
  with ``per_class=True``. ``--frequencies``: the training pixel counts (the frequency file of
  the config, or ADE20K's objectInfo150.txt) / the training images per class (a frequency file,
  or the training annotation list, ``path label`` lines).

Printed: every metric of both stages with the change; with ``--expected ROW`` (rows in
``tools/expected_results.json``, each with its source) the expected stage-1 and stage-2 values,
their change and the differences to them; then the per-class change by long-tail group.
``--plot`` draws, for each per-class metric, the change stage 2 - stage 1 of every class
against its training frequency (log scale), with the group boundaries of ``disalign_core``
(LVIS rare/common/frequent at 10/100 images, ADE20K head/body/tail at 1%/0.1% of the pixels,
many/medium/few at 100/20 images). ``--json`` writes the table and the per-class values.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from disalign_core import (
    ADE20K_SHARE_THRESHOLDS,
    CLASSIFICATION_COUNT_BINS,
    LVIS_COUNT_BINS,
    check_class_names,
    groups_by_count,
    groups_by_share,
    read_class_frequencies,
)
from disalign_core.per_class import split_per_class

EXPECTED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected_results.json")
FRAMEWORKS = ("det", "seg", "cls")
LVIS_PREDICTIONS = "lvis_instances_results.json"
LVIS_METRICS = ("AP", "APr", "APc", "APf")
# What mmengine logs beside the metrics.
NOT_METRICS = {"time", "data_time", "step", "iter", "epoch", "lr", "memory"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
PER_CLASS_FIX = {
    "seg": "run mmseg's tools/test.py with --cfg-options test_evaluator.per_class=True "
    "(LongTailIoUMetric's per_class option)",
    "cls": "run MMPretrain's tools/test.py with --cfg-options test_evaluator.per_class=True "
    "(LongTailAccuracy's per_class option)",
}


class InputError(ValueError):
    """Bad input: printed as ``error: <message>`` and exit status 2."""


@dataclass
class StageResult:
    """One stage's evaluation. ``metrics`` in percent; ``per_class`` maps a per-class metric
    to its (K,) values in class order (NaN: no value, e.g. a class absent from the test set)."""

    source: str
    metrics: Dict[str, float]
    class_names: List[str] = field(default_factory=list)
    per_class: Dict[str, List[float]] = field(default_factory=dict)


@dataclass
class Frequencies:
    """(K,) training counts (images, or pixels), the group of each class, and how to draw
    them: x values, axis label, group boundaries on the x axis."""

    counts: List[float]
    groups: List[str]
    group_names: List[str]
    x: List[float]
    xlabel: str
    boundaries: List[Tuple[float, str]]
    source: str


# ----------------------------------------------------------------------------- detectron2


def find_lvis_predictions(path: str) -> str:
    """The LVISEvaluator predictions file of an OUTPUT_DIR (or the file itself)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise InputError(f"{path!r} does not exist")
    for candidate in (
        os.path.join(path, "inference", LVIS_PREDICTIONS),
        os.path.join(path, LVIS_PREDICTIONS),
    ):
        if os.path.isfile(candidate):
            return candidate
    found = sorted(glob.glob(os.path.join(path, "**", LVIS_PREDICTIONS), recursive=True))
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(
            f"{path!r} holds {len(found)} {LVIS_PREDICTIONS} files ({', '.join(found[:4])}): "
            "give the one to compare"
        )
    raise InputError(
        f"no {LVIS_PREDICTIONS} under {path!r}: give train_net.py's OUTPUT_DIR (LVISEvaluator "
        f"writes inference/{LVIS_PREDICTIONS} there) or the predictions file"
    )


def load_lvis_gt(path: str):
    """The ``lvis.LVIS`` of ``--gt``, with a clear error for a file that is not LVIS json."""
    from lvis import LVIS

    if not os.path.isfile(path):
        raise InputError(f"--gt {path!r} does not exist")
    try:
        gt = LVIS(path)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(
            f"--gt {path!r} is not an LVIS-format json (images, annotations, categories with "
            f"'frequency'): {type(e).__name__}: {e}"
        ) from None
    cats = gt.dataset.get("categories") or []
    if not cats or not all("frequency" in c for c in cats):
        raise InputError(
            f"--gt {path!r}: LVISEval needs every category's 'frequency' (r/c/f); "
            "is this an LVIS json?"
        )
    return gt


def evaluate_lvis(
    predictions_path: str, gt, max_dets: int = 300, iou_types: Sequence[str] = ("bbox", "segm")
) -> StageResult:
    """Evaluate LVISEvaluator's predictions as detectron2 does (``_evaluate_predictions_on_lvis``:
    mask AP without the boxes, at most ``max_dets`` per image) and read each category's AP from
    ``eval["precision"]`` as ``LVISEval.summarize`` reads AP: the mean over IoU thresholds and
    recall levels, area "all", ignoring -1.

    Returns:
        StageResult: ``{iou_type}/{AP,APr,APc,APf}`` and per-class ``{iou_type}/AP`` (NaN for a
        category without ground truth), in percent, categories in id order.
    """
    from lvis import LVISEval, LVISResults

    logging.getLogger("lvis").setLevel(logging.ERROR)
    try:
        with open(predictions_path) as f:
            predictions = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{predictions_path!r} is not json: {e}") from None
    if not isinstance(predictions, list) or not all(
        isinstance(p, dict) and {"image_id", "category_id", "score"} <= set(p) for p in predictions
    ):
        raise InputError(
            f"{predictions_path!r} is not a list of LVIS predictions (image_id, category_id, "
            "score, bbox/segmentation), as LVISEvaluator writes"
        )
    cat_ids = sorted(gt.get_cat_ids())
    names = [c["name"] for c in gt.load_cats(cat_ids)]
    unknown = sorted({p["category_id"] for p in predictions} - set(cat_ids))
    if unknown:
        raise InputError(
            f"{predictions_path!r} predicts category ids {unknown[:10]} that --gt has not "
            f"(it has {len(cat_ids)} categories, ids {cat_ids[0]}..{cat_ids[-1]}): the class "
            "counts differ; is --gt the json of the evaluated dataset?"
        )
    images = set(gt.get_img_ids())
    strangers = sorted({p["image_id"] for p in predictions} - images)
    if strangers:
        raise InputError(
            f"{predictions_path!r} has predictions for {len(strangers)} images that --gt has "
            f"not (e.g. image ids {strangers[:5]}): is --gt the evaluated split's json?"
        )
    result = StageResult(predictions_path, {}, names)
    # The types the predictions have (detectron2: masks only from a mask model), taken before
    # LVISResults gives box predictions a "segmentation" (the box's polygon).
    first = predictions[0] if predictions else {}
    present = [t for t, k in (("bbox", "bbox"), ("segm", "segmentation")) if k in first]
    for iou_type in iou_types:
        if not predictions:  # detectron2 gives NaN when there is no prediction
            result.metrics.update({f"{iou_type}/{m}": math.nan for m in LVIS_METRICS})
            result.per_class[f"{iou_type}/AP"] = [math.nan] * len(cat_ids)
            continue
        if iou_type not in present:
            continue
        # Copies: LVISResults and LVISEval write into the predictions they get.
        if iou_type == "segm":
            # As detectron2: with the box, LVIS would take the box's area for small/medium/large.
            dts = [{k: v for k, v in p.items() if k != "bbox"} for p in predictions]
        else:
            dts = [dict(p) for p in predictions]
        evaluator = LVISEval(gt, LVISResults(gt, dts, max_dets=max_dets), iou_type)
        evaluator.run()
        for m in LVIS_METRICS:
            v = float(evaluator.results[m])
            result.metrics[f"{iou_type}/{m}"] = v * 100 if v >= 0 else math.nan
        precision = evaluator.eval["precision"]  # (T IoU thresholds, R recalls, K, A areas)
        area_all = evaluator.params.area_rng_lbl.index("all")
        per_class = []
        for k in range(len(cat_ids)):
            p = precision[:, :, k, area_all]
            p = p[p > -1]
            per_class.append(float(p.mean() * 100) if p.size else math.nan)
        result.per_class[f"{iou_type}/AP"] = per_class
    return result


def lvis_frequencies(path: str, gt=None) -> Tuple[List[float], List[str], str]:
    """(counts, names, source) of training images per category: an LVIS/COCO json's
    ``image_count``s, or a frequency file (core ``read_class_frequencies``)."""
    data = gt.dataset if gt is not None else None
    source = f"--gt {path!r}" if gt is not None else f"--frequencies {path!r}"
    if data is None and path.endswith(".json"):
        if not os.path.isfile(path):
            raise InputError(f"--frequencies {path!r} does not exist")
        try:
            with open(path) as f:
                loaded = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"--frequencies {path!r} is not valid json: {e}") from None
        if isinstance(loaded, dict) and "categories" in loaded:
            data = loaded
    if data is None:
        return (*_read_frequency_file(path), f"--frequencies {path!r}")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    lacking = [c.get("name", c["id"]) for c in cats if "image_count" not in c]
    if lacking:
        raise InputError(
            f"{source}: {len(lacking)} categories have no 'image_count' (e.g. {lacking[:3]}); "
            "give the training frequencies with --frequencies (the training split's LVIS json "
            "or a frequency file)"
        )
    return [float(c["image_count"]) for c in cats], [c["name"] for c in cats], source


# ----------------------------------------------------------------- MMSegmentation, MMPretrain


def find_test_log(path: str) -> str:
    """The newest ``<timestamp>/<timestamp>.json`` of a tools/test.py work dir (or the file)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise InputError(f"{path!r} does not exist")
    logs = sorted(
        p
        for p in glob.glob(os.path.join(path, "*", "*.json"))
        if os.path.basename(p)[:-5] == os.path.basename(os.path.dirname(p))
    )
    if not logs:
        raise InputError(
            f"no test metrics under {path!r}: give the --work-dir of tools/test.py (mmengine "
            "writes <work_dir>/<timestamp>/<timestamp>.json) or that file"
        )
    return logs[-1]


def read_mm_metrics(path: str) -> StageResult:
    """The metrics of a test run: the last json line of mmengine's test log."""
    log = find_test_log(path)
    with open(log) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    try:
        tag = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError as e:
        raise InputError(f"{log!r} is not mmengine's json test log: {e}") from None
    if not isinstance(tag, dict):
        raise InputError(f"{log!r} is not mmengine's json test log (one json dict per line)")
    others, per_class = split_per_class(tag)
    metrics = {
        k: float(v)
        for k, v in others.items()
        if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if not metrics and not per_class:
        raise InputError(f"{log!r} holds no metric")
    names = next(iter(per_class.values()), {})
    result = StageResult(log, metrics, list(names))
    for metric, values in per_class.items():
        if list(values) != result.class_names:
            raise InputError(f"{log!r}: the per-class metrics do not list the same classes")
        result.per_class[metric] = list(values.values())
    return result


def _annotation_list_counts(lines: List[str], path: str) -> Optional[List[int]]:
    """Labels of an annotation list (``image-path label`` lines), or None if it is not one."""
    parts = [ln.rsplit(maxsplit=1) for ln in lines]
    head = parts[:50]
    if not head or not all(
        len(p) == 2 and p[0].lower().endswith(IMAGE_SUFFIXES) and p[1].lstrip("-").isdigit()
        for p in head
    ):
        return None
    labels = []
    for n, p in enumerate(parts, 1):
        if len(p) != 2 or not p[1].lstrip("-").isdigit():
            raise InputError(f"{path}:{n}: expected 'image-path label', got {lines[n - 1]!r}")
        labels.append(int(p[1]))
    return labels


def _read_frequency_file(path: str, num_classes: Optional[int] = None):
    """(counts, names or None) of a frequency file or an annotation list."""
    if not os.path.isfile(path):
        raise InputError(f"--frequencies {path!r} does not exist")
    if not path.endswith(".json"):
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
        labels = _annotation_list_counts(lines, path)
        if labels is not None:
            k = num_classes or max(labels) + 1
            if min(labels) < 0 or max(labels) >= k:
                raise InputError(
                    f"--frequencies {path!r}: labels run from {min(labels)} to {max(labels)}, "
                    f"outside the {k} classes of the evaluation output"
                )
            return np.bincount(labels, minlength=k).astype(float).tolist(), None
    try:
        freq = read_class_frequencies(path, key="--frequencies")
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e)) from None
    return freq.counts, freq.names


def count_frequencies(framework: str, counts: List[float], source: str) -> Frequencies:
    """Groups and plot axis of training image counts (det: LVIS bins, cls: many/medium/few)."""
    bounds, names = LVIS_COUNT_BINS if framework == "det" else CLASSIFICATION_COUNT_BINS
    groups = groups_by_count(counts, bounds, names)
    # A bound b is inclusive (group i holds counts <= b): the line lies between b and b + 1.
    boundaries = [(b + 0.5, f"{names[i]} <= {b:g} < {names[i + 1]}") for i, b in enumerate(bounds)]
    return Frequencies(
        counts,
        groups,
        list(names),
        list(counts),
        "training images per class (log)",
        boundaries,
        source,
    )


def share_frequencies(path: str, num_classes: int) -> Tuple[Frequencies, Optional[List[str]]]:
    """Groups (ADE20K head/body/tail by share) and plot axis (share in %) of pixel counts."""
    try:
        freq = read_class_frequencies(path, key="--frequencies")
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e)) from None
    _check_count(len(freq.counts), num_classes, f"--frequencies {path!r}")
    thresholds, names = ADE20K_SHARE_THRESHOLDS
    groups = groups_by_share(freq.counts, thresholds, names, total=freq.share_total)
    total = freq.share_total or float(sum(freq.counts))
    x = [100.0 * c / total for c in freq.counts]
    # Group i holds shares above thresholds[i] (and up to the previous one).
    boundaries = [
        (100.0 * t, f"{names[i + 1]} <= {100 * t:g}% < {names[i]}")
        for i, t in enumerate(thresholds)
    ]
    frequencies = Frequencies(
        list(freq.counts),
        groups,
        list(names),
        x,
        "share of the training pixels, % (log)",
        boundaries,
        f"--frequencies {path!r}",
    )
    return frequencies, freq.names


def _check_count(got: int, want: int, source: str) -> None:
    if got != want:
        raise InputError(
            f"{source} has frequencies for {got} classes but the evaluation output has "
            f"{want} classes: the class counts differ (wrong frequency file or dataset?)"
        )


def _real_names(names: Sequence[str]) -> Optional[List[str]]:
    """Class names, or None when they are the class indices (a dataset without names)."""
    names = list(names)
    return None if names == [str(i) for i in range(len(names))] else names


def load_frequencies(
    framework: str, stage: StageResult, frequencies: Optional[str], gt_path: Optional[str], gt
) -> Frequencies:
    """Training frequencies of the evaluated classes, checked against the evaluation's class
    count and, when both have names, its class names."""
    k = len(stage.class_names)
    if framework == "seg":
        if not frequencies:
            raise InputError(
                "--frequencies is needed for seg: the training pixel counts (the config's "
                "class_frequencies file, or ADE20K's objectInfo150.txt)"
            )
        freq, names = share_frequencies(frequencies, k)
    elif framework == "cls":
        if not frequencies:
            raise InputError(
                "--frequencies is needed for cls: the training images per class (a frequency "
                "file, or the training annotation list of 'path label' lines)"
            )
        counts, names = _read_frequency_file(frequencies, k)
        _check_count(len(counts), k, f"--frequencies {frequencies!r}")
        freq = count_frequencies("cls", counts, f"--frequencies {frequencies!r}")
    else:
        if frequencies:
            counts, names, source = lvis_frequencies(frequencies)
        else:
            counts, names, source = lvis_frequencies(gt_path, gt)
        _check_count(len(counts), k, source)
        freq = count_frequencies("det", counts, source)
        _warn_lvis_groups(gt, freq, source)
    try:
        check_class_names(
            names,
            _real_names(stage.class_names),
            source=freq.source,
            key="--frequencies",
            dataset="the evaluation output",
            fix="give the training frequencies of the evaluated dataset's classes, in its order",
        )
    except ValueError as e:
        raise InputError(str(e)) from None
    return freq


def _warn_lvis_groups(gt, freq: Frequencies, source: str) -> None:
    """LVISEval's APr/APc/APf use the json's 'frequency' letters; say when the counts put
    classes elsewhere (e.g. the counts of the val split rather than of the training split)."""
    if gt is None:
        return
    letters = [c["frequency"] for c in gt.load_cats(sorted(gt.get_cat_ids()))]
    ours = [g[0] for g in freq.groups]
    differ = sum(a != b for a, b in zip(letters, ours))
    if differ:
        print(
            f"warning: the image counts of {source} put {differ} of {len(ours)} categories in "
            "another group than the 'frequency' of --gt (which APr/APc/APf use); are they the "
            "training counts? Give the training json or a frequency file with --frequencies.",
            file=sys.stderr,
        )


# ------------------------------------------------------------------------------- comparing


def load_expected(name: str, framework: str, path: str = EXPECTED_FILE) -> dict:
    """One row of the expected-results table (``stage1``, ``stage2``, ``source``)."""
    with open(path) as f:
        rows = json.load(f)["rows"]
    if name not in rows:
        close = [r for r in rows if rows[r]["framework"] == framework]
        raise InputError(
            f"no expected row {name!r} in {os.path.relpath(path)}; {framework} rows: "
            + ", ".join(close)
        )
    row = rows[name]
    if row["framework"] != framework:
        raise InputError(f"expected row {name!r} is a {row['framework']} row, not {framework}")
    return row


def compare_metrics(
    stage1: StageResult, stage2: StageResult, expected: Optional[dict] = None
) -> List[dict]:
    """One row per metric both stages have: stage 1, stage 2, change, and with ``expected``
    the expected values, their change and the differences to them (None where absent)."""
    rows = []
    for key in stage1.metrics:
        if key not in stage2.metrics:
            continue
        a, b = stage1.metrics[key], stage2.metrics[key]
        row = dict(metric=key, stage1=a, stage2=b, change=b - a)
        if expected is not None:
            e1, e2 = expected["stage1"].get(key), expected["stage2"].get(key)
            row.update(
                expected_stage1=e1,
                expected_stage2=e2,
                expected_change=None if e1 is None or e2 is None else e2 - e1,
                stage1_vs_expected=None if e1 is None else a - e1,
                stage2_vs_expected=None if e2 is None else b - e2,
            )
        rows.append(row)
    return rows


def per_class_rows(
    stage1: StageResult, stage2: StageResult, freq: Frequencies
) -> Dict[str, List[dict]]:
    """Per metric, one row per class: name, training count, group, both values and the change."""
    out = {}
    for metric, before in stage1.per_class.items():
        after = stage2.per_class.get(metric)
        if after is None:
            continue
        out[metric] = [
            dict(
                name=name,
                count=freq.counts[i],
                x=freq.x[i],
                group=freq.groups[i],
                stage1=before[i],
                stage2=after[i],
                change=after[i] - before[i],
            )
            for i, name in enumerate(stage1.class_names)
        ]
    return out


def group_summary(rows: List[dict], group_names: Sequence[str]) -> List[dict]:
    """Per group: classes, classes with a value in both stages, mean change, up, down."""
    out = []
    for g in group_names:
        changes = [r["change"] for r in rows if r["group"] == g]
        valid = [c for c in changes if not math.isnan(c)]
        out.append(
            dict(
                group=g,
                classes=len(changes),
                valued=len(valid),
                mean_change=float(np.mean(valid)) if valid else math.nan,
                up=sum(c > 0 for c in valid),
                down=sum(c < 0 for c in valid),
            )
        )
    return out


def _fmt(v, signed: bool = False, width: int = 8) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'-':>{width}}"
    v = round(v, 2) + 0.0  # no "-0.00"
    return f"{v:+{width}.2f}" if signed else f"{v:{width}.2f}"


def format_report(
    metric_rows: List[dict],
    classes: Dict[str, List[dict]],
    freq: Optional[Frequencies],
    expected: Optional[dict] = None,
    expected_name: Optional[str] = None,
) -> str:
    """The printed table and the per-group summary of the per-class change."""
    w = max([len(r["metric"]) for r in metric_rows] + [6])
    head = f"{'metric':<{w}} {'stage 1':>8} {'stage 2':>8} {'change':>8}"
    if expected is not None:
        head += f" | {'exp. 1':>8} {'exp. 2':>8} {'change':>8} | {'1 - exp.':>8} {'2 - exp.':>8}"
    lines = []
    if expected is not None:
        lines.append(f"expected: {expected_name} ({expected['source']})")
        lines.append("exp. 1/2: expected stage 1/2; 1 - exp.: stage 1 minus expected stage 1")
    lines += [head, "-" * len(head)]
    for r in metric_rows:
        line = (
            f"{r['metric']:<{w}} {_fmt(r['stage1'])} {_fmt(r['stage2'])} "
            f"{_fmt(r['change'], True)}"
        )
        if expected is not None:
            line += (
                f" | {_fmt(r['expected_stage1'])} {_fmt(r['expected_stage2'])} "
                f"{_fmt(r['expected_change'], True)} | {_fmt(r['stage1_vs_expected'], True)} "
                f"{_fmt(r['stage2_vs_expected'], True)}"
            )
        lines.append(line)
    if expected is not None:
        shown = {r["metric"] for r in metric_rows}
        missing = [k for k in {**expected["stage1"], **expected["stage2"]} if k not in shown]
        if missing:
            lines.append(f"(expected but not in both outputs: {', '.join(missing)})")
    for metric, rows in classes.items():
        lines += [
            "",
            f"per-class {metric}, stage 2 - stage 1, by group ({freq.source}):",
            f"{'group':<10} {'classes':>7} {'mean change':>11} {'up':>5} {'down':>5} "
            f"{'no value':>8}",
        ]
        for s in group_summary(rows, freq.group_names):
            lines.append(
                f"{s['group']:<10} {s['classes']:>7} {_fmt(s['mean_change'], True, 11)} "
                f"{s['up']:>5} {s['down']:>5} {s['classes'] - s['valued']:>8}"
            )
    return "\n".join(lines)


GROUP_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd")


def plot_per_class_change(
    classes: Dict[str, List[dict]], freq: Frequencies, path: str, title: str = ""
) -> str:
    """One panel per per-class metric: each class's change (stage 2 - stage 1) against its
    training frequency (log x), coloured by group, the group boundaries dashed and each
    group's mean change as a horizontal segment. Classes without a value or with a zero count
    are left out (the panel says how many). Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(classes)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 4.4), squeeze=False)
    # Rarest group first in the legend, whatever order the group names are in.
    order = sorted(
        freq.group_names,
        key=lambda g: min((x for x, gg in zip(freq.x, freq.groups) if gg == g), default=0),
    )
    colour = {g: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, g in enumerate(order)}
    for ax, metric in zip(axes[0], metrics):
        rows = [r for r in classes[metric] if not math.isnan(r["change"]) and r["x"] > 0]
        left_out = len(classes[metric]) - len(rows)
        for g in order:
            pts = [r for r in rows if r["group"] == g]
            if not pts:
                continue
            xs, ys = [r["x"] for r in pts], [r["change"] for r in pts]
            ax.scatter(xs, ys, s=18, color=colour[g], label=f"{g} ({len(pts)})", zorder=3)
            mean = float(np.mean(ys))
            ax.hlines(mean, min(xs), max(xs), colors=colour[g], linewidth=2.2, alpha=0.6)
            ax.annotate(
                f"mean {mean:+.1f}",
                (math.sqrt(min(xs) * max(xs)), mean),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=8,
                color=colour[g],
            )
        ax.set_xscale("log")
        ax.axhline(0, color="gray", linewidth=0.8)
        for x, label in freq.boundaries:
            ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
            ax.annotate(
                label,
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=8,
            )
        ax.set_xlabel(freq.xlabel)
        ax.set_ylabel(f"{metric}: stage 2 - stage 1")
        note = f", {left_out} without a value or a training count left out" if left_out else ""
        ax.set_title(f"{metric} per class ({len(rows)} classes{note})", fontsize=10)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ command line


def list_expected(path: str = EXPECTED_FILE) -> str:
    with open(path) as f:
        rows = json.load(f)["rows"]
    return "\n".join(f"{name:<48} {r['framework']:<4} {r['source']}" for name, r in rows.items())


def load_stages(args) -> Tuple[StageResult, StageResult, object]:
    gt = None
    if args.framework == "det":
        if not args.gt:
            raise InputError("--gt is needed for det: the LVIS json of the evaluated split")
        gt = load_lvis_gt(args.gt)
        iou_types = args.iou_type or ("bbox", "segm")
        stages = [
            evaluate_lvis(find_lvis_predictions(p), gt, args.max_dets, iou_types)
            for p in (args.stage1, args.stage2)
        ]
    else:
        stages = [read_mm_metrics(p) for p in (args.stage1, args.stage2)]
    s1, s2 = stages
    if s1.class_names and s2.class_names and s1.class_names != s2.class_names:
        raise InputError(
            f"the two stages list different classes ({len(s1.class_names)} in {s1.source}, "
            f"{len(s2.class_names)} in {s2.source}): not the same dataset"
        )
    return s1, s2, gt


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--framework", choices=FRAMEWORKS)
    parser.add_argument("--stage1", help="stage-1 evaluation output (folder or file)")
    parser.add_argument("--stage2", help="stage-2 (DisAlign) evaluation output (folder or file)")
    parser.add_argument("--gt", help="det: LVIS json of the evaluated split")
    parser.add_argument("--frequencies", help="training frequencies (see below)")
    parser.add_argument("--expected", metavar="ROW", help="a row of tools/expected_results.json")
    parser.add_argument("--plot", metavar="PNG", help="draw the per-class change here")
    parser.add_argument("--json", metavar="FILE", help="write the table and per-class values")
    parser.add_argument("--title", default="", help="title of the figure")
    parser.add_argument(
        "--max-dets", type=int, default=300, help="det: TEST.DETECTIONS_PER_IMAGE (default 300)"
    )
    parser.add_argument(
        "--iou-type", action="append", choices=("bbox", "segm"), help="det: only these"
    )
    parser.add_argument("--list-expected", action="store_true", help="list the expected rows")
    args = parser.parse_args(argv)
    if args.list_expected:
        print(list_expected())
        return 0
    if not (args.framework and args.stage1 and args.stage2):
        parser.error("--framework, --stage1 and --stage2 are required")
    try:
        return _run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    expected = load_expected(args.expected, args.framework) if args.expected else None
    s1, s2, gt = load_stages(args)
    metric_rows = compare_metrics(s1, s2, expected)
    classes: Dict[str, List[dict]] = {}
    freq = None
    missing = [s.source for s in (s1, s2) if not s.per_class]
    fix = PER_CLASS_FIX.get(args.framework, "")
    if missing and (args.plot or args.json):
        raise InputError(f"no per-class values in {' and '.join(missing)}: {fix}")
    if not missing:
        freq = load_frequencies(args.framework, s1, args.frequencies, args.gt, gt)
        classes = per_class_rows(s1, s2, freq)
        if not classes:
            raise InputError(
                f"the stages have no per-class metric in common ({', '.join(s1.per_class)} in "
                f"{s1.source}; {', '.join(s2.per_class)} in {s2.source})"
            )
    print(f"stage 1: {s1.source}\nstage 2: {s2.source}")
    print(format_report(metric_rows, classes, freq, expected, args.expected))
    if missing:
        print(f"\n(no per-class values in {' and '.join(missing)}: {fix})")
    if args.plot:
        plot_per_class_change(classes, freq, args.plot, args.title)
        print(f"\nfigure: {args.plot}")
    if args.json:
        out = dict(
            framework=args.framework,
            stage1=s1.source,
            stage2=s2.source,
            expected=dict(expected, name=args.expected) if expected else None,
            metrics=metric_rows,
            per_class=classes,
            groups={m: group_summary(r, freq.group_names) for m, r in classes.items()},
        )
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
