"""Per-class metric values in a flat metrics dict, framework-free: the one key format the
long-tail metrics write and ``tools/compare_results.py`` reads.

Shapes: K classes.

With ``per_class=True``, ``LongTailIoUMetric`` (MMSegmentation) and ``LongTailAccuracy``
(MMPretrain) add one value per class to the dict they return, under
``per_class/<metric>/<class name>`` (``per_class/IoU/wall``, ``per_class/top1/tench``).
mmengine puts the evaluator's prefix in front (MMPretrain's ``accuracy/per_class/top1/...``)
and its test loop writes the dict to ``<work_dir>/<timestamp>/<timestamp>.json``.

A class name that occurs more than once gets its index, ``<name> #<i>``, so that no value
overwrites another; a metric name holds no ``/``, a class name may.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

__all__ = ["PER_CLASS", "per_class_keys", "per_class_metrics", "split_per_class"]

PER_CLASS = "per_class"


def per_class_keys(metric: str, class_names: Sequence[str]) -> List[str]:
    """``per_class/<metric>/<name>`` for each class, in class order.

    Args:
        metric (str): the metric's name (``IoU``, ``Acc``, ``top1``); no ``/``.
        class_names (sequence of str): (K,) names; a repeated name gets ``" #<index>"``.

    Returns:
        list[str]: (K,) keys, all different.
    """
    if not metric or "/" in metric:
        raise ValueError(f"a per-class metric name must be non-empty without '/', got {metric!r}")
    names = [str(n) for n in class_names]
    seen: Dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [
        f"{PER_CLASS}/{metric}/{n}" + (f" #{i}" if seen[n] > 1 else "") for i, n in enumerate(names)
    ]


def per_class_metrics(
    metric: str, class_names: Sequence[str], values: Sequence[float]
) -> Dict[str, float]:
    """``{per_class/<metric>/<name>: value}`` in class order (NaN stays NaN: a class without a
    value, e.g. one absent from the test set).

    Args:
        metric (str): the metric's name, no ``/``.
        class_names (sequence of str): (K,) names.
        values (sequence of float): (K,) values.
    """
    if len(class_names) != len(values):
        raise ValueError(f"{len(class_names)} class names for {len(values)} per-class values")
    keys = per_class_keys(metric, class_names)
    return {k: float(v) for k, v in zip(keys, values)}


def split_per_class(
    metrics: Mapping[str, object],
) -> Tuple[Dict[str, object], Dict[str, Dict[str, float]]]:
    """Split a metrics dict into its other entries and its per-class values.

    Args:
        metrics (mapping): a flat metrics dict, possibly with an evaluator prefix before
            ``per_class/`` (``accuracy/per_class/top1/<name>``).

    Returns:
        (others, per_class): the entries that are not per-class, unchanged and in order; and
        ``{<prefix><metric>: {class name: value}}`` (``"IoU"``, ``"accuracy/top1"``), classes in
        the dict's order. NaN, or a value that is not a number, reads as NaN.
    """
    others: Dict[str, object] = {}
    per_class: Dict[str, Dict[str, float]] = {}
    marker = PER_CLASS + "/"
    for key, value in metrics.items():
        at = key.find(marker)
        while at > 0 and key[at - 1] != "/":
            at = key.find(marker, at + 1)
        if at < 0:
            others[key] = value
            continue
        metric, sep, name = key[at + len(marker) :].partition("/")
        if not sep or not metric:
            others[key] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        per_class.setdefault(key[:at] + metric, {})[name] = number
    return others, per_class
