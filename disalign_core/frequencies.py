"""Reading and writing per-class frequency files, framework-free.

A frequency file holds one training count (or share) per class, in class order, as
- JSON: a list of numbers, or ``{"counts": [...], "names": [...]}``;
- text: one class per line, either ``count`` or ``name<TAB or spaces>count``; lines starting
  with ``#`` are comments.

Every error names the file, the config key it came from (when the caller gives one) and what
is expected, so a user can fix the file without reading this module.
"""
from __future__ import annotations

import json
import math
import os
from typing import List, Optional, Sequence, Tuple

__all__ = ["read_class_frequencies", "write_class_frequencies"]

_FORMATS = (
    'expected a JSON list of counts, a JSON object {"counts": [...], "names": [...]}, or text '
    "lines 'count' / 'name count'"
)


def _where(path: str, key: Optional[str]) -> str:
    return f"class frequency file {path!r}" + (f" (config key {key})" if key else "")


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


def _read_text(text: str, where: str, path: str) -> Tuple[list, Optional[list]]:
    counts, names = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
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


def read_class_frequencies(
    path: str, key: Optional[str] = None
) -> Tuple[List[float], Optional[List[str]]]:
    """Read a frequency file.

    Args:
        path (str): the file (``.json`` is read as JSON, anything else as text).
        key (str, optional): the config key that named the file, for error messages
            (e.g. ``"MODEL.DISALIGN.FREQUENCY_FILE"``).

    Returns:
        (counts, names): (K,) counts per class, each finite and >= 0; (K,) class names when
        the file has them, else None.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file cannot be parsed, is empty, has a count that is not a finite
            number >= 0, or a names list of another length than its counts; the message names
            the file, the key and the class or line.
    """
    where = _where(path, key)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} not found")
    with open(path) as f:
        text = f.read()
    reader = _read_json if path.endswith(".json") else _read_text
    raw_counts, names = reader(text, where, path)
    if not raw_counts:
        raise ValueError(f"{where} holds no class frequencies; {_FORMATS}")
    if names is not None and len(names) != len(raw_counts):
        raise ValueError(
            f"{where} has {len(raw_counts)} counts but {len(names)} names: give one name per "
            "count, in class order (or no names)"
        )
    counts = [
        _to_count(c, where, i, names[i] if names else None) for i, c in enumerate(raw_counts)
    ]
    return counts, names


def write_class_frequencies(
    path: str, counts: Sequence[float], names: Sequence[str] = None
) -> None:
    """Write a frequency file (JSON if ``path`` ends in .json, else text)."""
    if names is not None and len(names) != len(counts):
        raise ValueError(f"{len(names)} names for {len(counts)} counts")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        if path.endswith(".json"):
            json.dump({"counts": list(counts), "names": list(names) if names else None}, f, indent=1)
            return
        for i, c in enumerate(counts):
            f.write(f"{names[i]}\t{c}\n" if names else f"{c}\n")
