"""Reading and writing per-class frequency files, framework-free.

A frequency file holds one training count (or share) per class, in class order, as
- JSON: a list of numbers, or ``{"counts": [...], "names": [...]}``;
- text: one class per line, either ``count`` or ``name<TAB or spaces>count``; lines starting
  with ``#`` are comments.
"""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

__all__ = ["read_class_frequencies", "write_class_frequencies"]


def read_class_frequencies(path: str) -> Tuple[List[float], Optional[List[str]]]:
    """Read a frequency file.

    Returns:
        (counts, names): counts per class; names when the file has them, else None.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file cannot be parsed, naming the line.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class frequency file not found: {path!r}")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):
            if "counts" not in data:
                raise ValueError(f"{path}: a JSON object needs a 'counts' list")
            return [float(c) for c in data["counts"]], data.get("names")
        return [float(c) for c in data], None
    counts, names = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1) if len(line.split()) > 1 else [line]
        try:
            counts.append(float(parts[-1]))
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: expected 'count' or 'name count', got {line!r}"
            ) from None
        if len(parts) == 2:
            names.append(parts[0].strip())
    if not counts:
        raise ValueError(f"{path}: no class frequencies in the file")
    if names and len(names) != len(counts):
        raise ValueError(f"{path}: some lines have a class name and some do not")
    return counts, (names or None)


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
