"""Class pixel frequencies for the GRW loss and the long-tail metric.

Accepted sources:
- ADE20K's ``objectInfo150.txt``: tab-separated with the header ``Idx Ratio Train Val Name``;
  the pixel share of each class is the ``Ratio`` column (``Train``/``Val`` count images);
- the project's frequency files (core ``read_class_frequencies``): a JSON list, a JSON object
  ``{"counts": [...], "names": [...]}`` as written by ``tools/compute_pixel_frequencies.py``,
  or text lines ``count`` / ``name count``;
- a list of numbers given directly in the config.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

from disalign_core import read_class_frequencies

__all__ = [
    "ADE20K_OBJECT_INFO_HEADER",
    "check_class_names",
    "describe_source",
    "load_class_frequencies",
    "share_total",
]

ADE20K_OBJECT_INFO_HEADER = ("idx", "ratio", "train", "val", "name")

FrequencySource = Union[str, Sequence[float]]


def _read_object_info(path: str, lines: List[str]) -> Tuple[List[float], List[str]]:
    counts, names = [], []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 5:
            raise ValueError(
                f"{path}:{lineno}: expected 5 tab-separated fields (Idx Ratio Train Val Name), "
                f"got {line.strip()!r}"
            )
        try:
            counts.append(float(fields[1]))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: Ratio {fields[1]!r} is not a number") from None
        names.append(fields[4].strip())
    if not counts:
        raise ValueError(f"{path}: no classes below the header")
    return counts, names


def _is_object_info(source: FrequencySource) -> bool:
    if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
        return False
    with open(source) as f:
        first = next((ln for ln in f if ln.strip()), "")
    return tuple(x.strip().lower() for x in first.split("\t")) == ADE20K_OBJECT_INFO_HEADER


def describe_source(source: FrequencySource) -> str:
    """The frequency source as error messages name it: the file path, or 'a list of K numbers'."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return f"a list of {len(list(source))} numbers"


def share_total(source: FrequencySource) -> Optional[float]:
    """What the frequencies of ``source`` are shares of, for grouping by share.

    ADE20K's ``objectInfo150.txt`` ratios are already shares of all pixels, unlabelled ones
    included (they sum to about 0.93): 1.0. Other sources hold counts: None (their sum).
    """
    return 1.0 if _is_object_info(source) else None


def load_class_frequencies(
    source: FrequencySource, key: Optional[str] = None
) -> Tuple[List[float], Optional[List[str]]]:
    """Per-class pixel frequencies (any positive scale) and class names when known.

    Args:
        source (str | sequence of float): a file path (formats above) or the numbers themselves.
        key (str, optional): the config key that named the source, for error messages.

    Returns:
        (counts, names): (K,) frequencies, and (K,) names or None.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be parsed (naming the line) or the source is empty.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"class frequency file not found: {path!r}"
                + (f" (config key {key})" if key else "")
                + ": compute it with tools/compute_pixel_frequencies.py, or give ADE20K's "
                "objectInfo150.txt"
            )
        if _is_object_info(path):
            with open(path) as f:
                lines = f.readlines()
            first = next(ln for ln in lines if ln.strip())
            return _read_object_info(path, lines[lines.index(first) :])
        return read_class_frequencies(path, key=key)
    counts = [float(c) for c in source]
    if not counts:
        raise ValueError("class frequencies are empty")
    return counts, None


def _synonyms(name: str) -> List[str]:
    """ADE20K's 'building, edifice' (or 'building;edifice') -> ['building', 'edifice']."""
    return [s.strip().lower() for s in name.replace(";", ",").split(",") if s.strip()]


def check_class_names(
    frequency_names: Optional[Sequence[str]],
    dataset_classes: Optional[Sequence[str]],
    *,
    source: str,
    key: str,
    dataset: str = "the dataset",
) -> None:
    """Refuse frequencies whose class names are not the dataset's, in the dataset's order.

    A frequency file's name matches when it, or one of its comma/semicolon-separated synonyms
    (ADE20K's ``objectInfo150.txt``: 'television, television receiver, ...'), equals the
    dataset's class name, ignoring case and surrounding spaces. Nothing is checked when either
    side has no names (a bare list of numbers, a dataset without ``classes``).

    Args:
        frequency_names: (K,) names from the frequency source, or None.
        dataset_classes: the dataset's ``metainfo['classes']``, or None.
        source (str): the frequency source as ``describe_source`` gives it.
        key (str): the config key that named the source.
        dataset (str): how to name the dataset in the message.

    Raises:
        ValueError: naming the first differing classes, the file, the key and the fix.
    """
    if frequency_names is None or dataset_classes is None:
        return
    fix = (
        f"compute the frequencies of this dataset with tools/compute_pixel_frequencies.py "
        f"<train label dir> --config <your config> --out <file>, and set {key} to that file"
    )
    if len(frequency_names) != len(dataset_classes):
        raise ValueError(
            f"class frequencies {source} ({key}) list {len(frequency_names)} classes but "
            f"{dataset} has {len(dataset_classes)}: {fix}"
        )
    bad = [
        (i, f, d)
        for i, (f, d) in enumerate(zip(frequency_names, dataset_classes))
        if str(d).strip().lower() not in _synonyms(str(f))
    ]
    if bad:
        shown = "; ".join(
            f"class {i}: {f.strip()!r} in the file, {d!r} in the data" for i, f, d in bad[:5]
        )
        raise ValueError(
            f"class frequencies {source} ({key}) are not those of {dataset}'s classes: "
            f"{len(bad)} of {len(dataset_classes)} names differ ({shown}"
            f"{'; ...' if len(bad) > 5 else ''}). Weights or groups would go to the wrong classes: {fix}"
        )
