"""Per-class frequencies, framework-free: the one reader, writer and class-name check of every
plugin.

A frequency source holds one training count (or share) per class, in class order:
- JSON: a list of numbers, or ``{"counts": [...], "names": [...]}``;
- ADE20K's ``objectInfo150.txt``: tab-separated with the header ``Idx Ratio Train Val Name``;
  the count of a class is its ``Ratio`` (its share of all pixels, unlabelled ones included,
  so that the ratios sum to about 0.93); ``Train``/``Val`` count images and are not used;
- other text: one class per line, either ``count`` or ``name<TAB or spaces>count``; lines
  starting with ``#`` are comments;
- the numbers themselves (a list given in a config).

Every error names the file, the config key it came from (when the caller gives one) and what
is expected, so a user can fix the file without reading this module.
"""

from __future__ import annotations

import json
import math
import os
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    "ADE20K_OBJECT_INFO_HEADER",
    "ClassFrequencies",
    "FrequencySource",
    "check_class_names",
    "read_class_frequencies",
    "write_class_frequencies",
]

# A path, or the counts themselves.
FrequencySource = Union[str, os.PathLike, Sequence[float]]

ADE20K_OBJECT_INFO_HEADER = ("idx", "ratio", "train", "val", "name")

_FORMATS = (
    'expected a JSON list of counts, a JSON object {"counts": [...], "names": [...]}, '
    "ADE20K's objectInfo150.txt, or text lines 'count' / 'name count'"
)


class ClassFrequencies(tuple):
    """What a frequency source holds. It is the pair ``(counts, names)`` (it unpacks, indexes
    and compares as that tuple) with two more attributes.

    Attributes:
        counts (list[float]): (K,) counts (or shares) per class, each finite and >= 0.
        names (list[str] | None): (K,) class names, or None when the source has none.
        share_total (float | None): what the counts are shares of, for grouping classes by
            share (``groups_by_share(counts, total=share_total)``): 1.0 for ADE20K's
            ``objectInfo150.txt``, whose ratios are already shares of all pixels; None (their
            sum) for counts.
        source (str): the source as error messages name it: the quoted path, or
            "a list of K numbers".
    """

    def __new__(
        cls,
        counts: List[float],
        names: Optional[List[str]] = None,
        *,
        share_total: Optional[float] = None,
        source: str = "",
    ):
        self = super().__new__(cls, (counts, names))
        self.share_total = share_total
        self.source = source
        return self

    def __getnewargs_ex__(self):
        # tuple's own would pass the pair as ``counts``: copy and pickle go through __new__.
        return (self[0], self[1]), {"share_total": self.share_total, "source": self.source}

    @property
    def counts(self) -> List[float]:
        return self[0]

    @property
    def names(self) -> Optional[List[str]]:
        return self[1]


def _where(source: str, key: Optional[str]) -> str:
    return f"class frequency file {source}" + (f" (config key {key})" if key else "")


def _to_count(value, where: str, i: int, name: Optional[str] = None) -> float:
    """One class's count as a finite float >= 0, or a ValueError naming the class."""
    label = f"class {i}" + (f" ({name!r})" if name is not None else "")
    try:
        count = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: the count of {label} is {value!r}, not a number; {_FORMATS}"
        ) from None
    if not math.isfinite(count) or count < 0:
        raise ValueError(
            f"{where}: the count of {label} is {value!r}; counts must be finite and >= 0 "
            "(images, instances or pixels of the class in the training set)"
        )
    return count


def _read_json(text: str, where: str, path: str) -> Tuple[list, Optional[list]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{where} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            f"{_FORMATS}"
        ) from None
    if isinstance(data, dict):
        if not isinstance(data.get("counts"), list):
            raise ValueError(f"{where}: the JSON object needs a 'counts' list; {_FORMATS}")
        names = data.get("names")
        if names is not None and (
            not isinstance(names, list) or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(f"{where}: 'names' must be a list of strings, got {names!r:.80}")
        return data["counts"], names
    if not isinstance(data, list):
        raise ValueError(f"{where}: got a JSON {type(data).__name__}; {_FORMATS}")
    return data, None


def _lines(text: str) -> List[Tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor ``#`` comments."""
    numbered = enumerate(text.splitlines(), 1)
    return [(n, ln) for n, ln in numbered if ln.strip() and not ln.strip().startswith("#")]


def _is_object_info(lines: List[Tuple[int, str]]) -> bool:
    """Whether the first line is objectInfo150.txt's header ``Idx Ratio Train Val Name``."""
    if not lines:
        return False
    header = tuple(x.strip().lower() for x in lines[0][1].split("\t"))
    return header == ADE20K_OBJECT_INFO_HEADER


def _read_object_info(lines: List[Tuple[int, str]], where: str, path: str) -> Tuple[list, list]:
    counts, names = [], []
    for lineno, line in lines[1:]:
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 5:
            raise ValueError(
                f"{path}:{lineno}: expected 5 tab-separated fields (Idx Ratio Train Val Name), "
                f"got {line.strip()!r} ({where})"
            )
        try:
            float(fields[1])
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: Ratio {fields[1]!r} is not a number ({where})"
            ) from None
        counts.append(fields[1])
        names.append(fields[4].strip())
    return counts, names


def _read_text(lines: List[Tuple[int, str]], where: str, path: str) -> Tuple[list, Optional[list]]:
    counts, names = [], []
    for lineno, line in lines:
        line = line.strip()
        parts = line.rsplit(maxsplit=1) if len(line.split()) > 1 else [line]
        try:
            float(parts[-1])
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: expected 'count' or 'name count', got {line!r} ({where})"
            ) from None
        counts.append(parts[-1])
        if len(parts) == 2:
            names.append(parts[0].strip())
    if names and len(names) != len(counts):
        raise ValueError(
            f"{where}: {len(names)} of {len(counts)} lines have a class name; give every line "
            "a name or none"
        )
    return counts, (names or None)


def _read_file(path: str, where: str) -> Tuple[list, Optional[list], Optional[float]]:
    """(raw counts, names or None, share total) of a file, opened once."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} not found; {_FORMATS}")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        return (*_read_json(text, where, path), None)
    lines = _lines(text)
    if _is_object_info(lines):
        return (*_read_object_info(lines, where, path), 1.0)
    return (*_read_text(lines, where, path), None)


def read_class_frequencies(source: FrequencySource, key: Optional[str] = None) -> ClassFrequencies:
    """Read per-class frequencies from a file (formats in the module docstring) or a list.

    Args:
        source (str | os.PathLike | sequence of float): the file (``.json`` is read as JSON,
            anything else as objectInfo150.txt when it has its header, else as text lines), or
            the counts themselves.
        key (str, optional): the config key that named the source, for error messages
            (e.g. ``"MODEL.DISALIGN.FREQUENCY_FILE"``).

    Returns:
        ClassFrequencies: unpacks as ``(counts, names)``: (K,) counts per class, each finite
        and >= 0, and (K,) class names or None; ``.share_total`` and ``.source`` as documented
        there.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the source cannot be parsed, is empty, has a count that is not a finite
            number >= 0, or a names list of another length than its counts; the message names
            the file, the key and the class or line.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        described = repr(path)
        where = _where(described, key)
        raw_counts, names, share_total = _read_file(path, where)
    else:
        raw_counts, names, share_total = list(source), None, None
        described = f"a list of {len(raw_counts)} numbers"
        where = "class frequencies " + described + (f" (config key {key})" if key else "")
    if not raw_counts:
        raise ValueError(f"{where} holds no class frequencies; {_FORMATS}")
    if names is not None and len(names) != len(raw_counts):
        raise ValueError(
            f"{where} has {len(raw_counts)} counts but {len(names)} names: give one name per "
            "count, in class order (or no names)"
        )
    counts = [_to_count(c, where, i, names[i] if names else None) for i, c in enumerate(raw_counts)]
    return ClassFrequencies(counts, names, share_total=share_total, source=described)


def write_class_frequencies(
    path: str, counts: Sequence[float], names: Sequence[str] = None
) -> None:
    """Write a frequency file (JSON if ``path`` ends in .json, else text)."""
    if names is not None and len(names) != len(counts):
        raise ValueError(f"{len(names)} names for {len(counts)} counts")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        if path.endswith(".json"):
            json.dump(
                {"counts": list(counts), "names": list(names) if names else None}, f, indent=1
            )
            return
        for i, c in enumerate(counts):
            f.write(f"{names[i]}\t{c}\n" if names else f"{c}\n")


def _synonyms(name: str) -> List[str]:
    """ADE20K's 'building, edifice' (or 'building;edifice') -> ['building', 'edifice']."""
    return [s.strip().lower() for s in name.replace(";", ",").split(",") if s.strip()]


def _same_class(file_name: str, dataset_name: str) -> bool:
    """The file's name is the dataset's, or lists it among its comma/semicolon synonyms."""
    if file_name == dataset_name:
        return True
    return str(dataset_name).strip().lower() in _synonyms(str(file_name))


def check_class_names(
    file_names: Optional[Sequence[str]],
    dataset_names: Optional[Sequence[str]],
    *,
    source: str,
    key: str,
    dataset: str = "the dataset",
    fix: str = "give the frequencies of the dataset's classes, in the dataset's order",
) -> None:
    """Refuse frequencies whose class names are not the dataset's, in the dataset's order.

    A file's name matches when it equals the dataset's, or when one of its comma- or
    semicolon-separated synonyms does, ignoring case and surrounding spaces (ADE20K's
    ``objectInfo150.txt`` says 'television, television receiver, ...' where mmseg says
    'television receiver'). Exact equality is the special case of a single synonym. Nothing
    is checked when either side has no names (a bare list of numbers, a dataset without class
    names).

    Args:
        file_names: (K,) names from the frequency source, or None.
        dataset_names: the dataset's class names, or None.
        source (str): the frequency source as error messages name it
            (``ClassFrequencies.source``, or e.g. ``"MODEL.DISALIGN.FREQUENCY_FILE='f.json'"``).
        key (str): the config key that named the source.
        dataset (str): how to name the dataset in the message.
        fix (str): what the user should do, appended to the message.

    Raises:
        ValueError: a different class count, or the first (up to 5) differing classes, with
            the source, the key and ``fix``.
    """
    if file_names is None or dataset_names is None:
        return
    if len(file_names) != len(dataset_names):
        raise ValueError(
            f"class frequencies {source} ({key}) list {len(file_names)} classes but "
            f"{dataset} has {len(dataset_names)}: {fix}"
        )
    bad = [
        (i, f, d)
        for i, (f, d) in enumerate(zip(file_names, dataset_names))
        if not _same_class(f, d)
    ]
    if bad:
        shown = "; ".join(
            f"class {i}: {str(f).strip()!r} in the file, {d!r} in the data" for i, f, d in bad[:5]
        )
        raise ValueError(
            f"class frequencies {source} ({key}) are not those of {dataset}'s classes: "
            f"{len(bad)} of {len(dataset_names)} names differ ({shown}"
            f"{'; ...' if len(bad) > 5 else ''}). Weights or groups would go to the wrong "
            f"classes: {fix}"
        )
