"""Per-class frequencies, framework-free: the one reader, writer and class-name check of every
plugin.

A frequency source holds one training count (or share) per class, in class order:
- JSON: a list of numbers, or ``{"counts": [...], "names": [...]}``;
- JSON: the flat list ``[id_1, count_1, id_2, count_2, ...]`` with ids 1..K in order: the DisAlign
  authors' ``num_shots_v1.0.json`` (their code keeps every second entry, ``[1::2]``). A list of
  2K integers whose even entries are exactly 1..K is read this way (K >= 2, or K given as
  ``num_classes``); a list of ``num_classes`` numbers is always a list of counts;
- NumPy ``.npy``: a 1-D numeric array of counts: the authors' ``num_shots_v0.5.npy`` (their code
  reads it with ``np.load`` and uses it as it is). Read without ``allow_pickle``: a file holding
  Python objects (e.g. ``np.save`` of a dict) is refused, since loading it would run code;
- ADE20K's ``objectInfo150.txt``: tab-separated with the header ``Idx Ratio Train Val Name``;
  the count of a class is its ``Ratio`` (its share of all pixels, unlabelled ones included,
  so that the ratios sum to about 0.93); ``Train``/``Val`` count images and are not used;
- other text: one class per line, either ``count`` or ``name<TAB or spaces>count``; lines
  starting with ``#`` are comments;
- the numbers themselves (a list given in a config).

The format is taken from the content (a NumPy header, a JSON document, objectInfo150.txt's
header), not only from the file name, and is named in ``ClassFrequencies.format`` for the log.
Every error names the file, the config key it came from (when the caller gives one), the
formats accepted and, for a file of a known but unusable kind (a pickle, a zip archive, an LVIS
annotation json, an object array), what it seems to be, so a user can fix the file without
reading this module.
"""

from __future__ import annotations

import json
import math
import os
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    "ADE20K_OBJECT_INFO_HEADER",
    "FORMAT_COUNTS_LIST",
    "FORMAT_COUNTS_OBJECT",
    "FORMAT_ID_COUNT_LIST",
    "FORMAT_NUMPY",
    "FORMAT_OBJECT_INFO",
    "FORMAT_SEQUENCE",
    "FORMAT_TEXT",
    "ClassFrequencies",
    "FrequencySource",
    "check_class_names",
    "read_class_frequencies",
    "write_class_frequencies",
]

# A path, or the counts themselves.
FrequencySource = Union[str, os.PathLike, Sequence[float]]

ADE20K_OBJECT_INFO_HEADER = ("idx", "ratio", "train", "val", "name")

# Format names, as ClassFrequencies.format and the log give them.
FORMAT_COUNTS_LIST = "JSON list of counts"
FORMAT_COUNTS_OBJECT = 'JSON object {"counts", "names"}'
FORMAT_ID_COUNT_LIST = (
    "JSON list [id, count, id, count, ...] (the DisAlign authors' num_shots_v1.0.json)"
)
FORMAT_NUMPY = "NumPy .npy array of counts (the DisAlign authors' num_shots_v0.5.npy)"
FORMAT_OBJECT_INFO = "ADE20K objectInfo150.txt (Ratio column)"
FORMAT_TEXT = "text lines 'count' / 'name count'"
FORMAT_SEQUENCE = "a list of numbers"

_FORMATS = (
    'expected a JSON list of counts, a JSON object {"counts": [...], "names": [...]}, '
    "the DisAlign authors' JSON list [id, count, id, count, ...] (num_shots_v1.0.json, ids "
    "1..K in order), a NumPy .npy 1-D numeric array of counts (num_shots_v0.5.npy), "
    "ADE20K's objectInfo150.txt, or text lines 'count' / 'name count'"
)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# Pickle protocols 2..5 start with PROTO (0x80) and the protocol number; UTF-8 text never
# starts with the byte 0x80.
_PICKLE_STARTS = tuple(bytes([0x80, p]) for p in range(2, 6))


class ClassFrequencies(tuple):
    """What a frequency source holds. It is the pair ``(counts, names)`` (it unpacks, indexes
    and compares as that tuple) with three more attributes.

    Attributes:
        counts (list[float]): (K,) counts (or shares) per class, each finite and >= 0.
        names (list[str] | None): (K,) class names, or None when the source has none.
        share_total (float | None): what the counts are shares of, for grouping classes by
            share (``groups_by_share(counts, total=share_total)``): 1.0 for ADE20K's
            ``objectInfo150.txt``, whose ratios are already shares of all pixels; None (their
            sum) for counts.
        source (str): the source as error messages name it: the quoted path, or
            "a list of K numbers".
        format (str): the format it was read as (one of the ``FORMAT_*`` names of this
            module), for the log.
    """

    def __new__(
        cls,
        counts: List[float],
        names: Optional[List[str]] = None,
        *,
        share_total: Optional[float] = None,
        source: str = "",
        format: str = "",
    ):
        self = super().__new__(cls, (counts, names))
        self.share_total = share_total
        self.source = source
        self.format = format
        return self

    def __getnewargs_ex__(self):
        # tuple's own would pass the pair as ``counts``: copy and pickle go through __new__.
        return (self[0], self[1]), {
            "share_total": self.share_total,
            "source": self.source,
            "format": self.format,
        }

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
    hint = ""
    if isinstance(value, dict) and ({"image_count", "instance_count"} & set(value)):
        hint = (
            " (the file looks like detectron2's class_image_count metadata, a list of "
            "{'id', 'image_count'} entries: set it as the training dataset's class_image_count "
            "metadata and leave the frequency file empty, or write the counts alone)"
        )
    try:
        count = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: the count of {label} is {value!r:.80}, not a number{hint}; {_FORMATS}"
        ) from None
    if not math.isfinite(count) or count < 0:
        raise ValueError(
            f"{where}: the count of {label} is {value!r}; counts must be finite and >= 0 "
            "(images, instances or pixels of the class in the training set)"
        )
    return count


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id_count_list(data: list) -> bool:
    """``[1, c_1, 2, c_2, ..., K, c_K]``: ids 1..K in order at the even positions."""
    return (
        len(data) % 2 == 0
        and all(_is_int(v) for v in data[0::2])
        and data[0::2] == list(range(1, len(data) // 2 + 1))
    )


def _read_json_list(
    data: list, where: str, num_classes: Optional[int]
) -> Tuple[list, Optional[list], str]:
    if num_classes is not None and len(data) == num_classes:
        return data, None, FORMAT_COUNTS_LIST
    if _is_id_count_list(data) and (len(data) >= 4 or num_classes is not None):
        return data[1::2], None, FORMAT_ID_COUNT_LIST
    if (
        num_classes is not None
        and len(data) == 2 * num_classes
        and all(_is_int(v) for v in data[0::2])
    ):
        ids = data[0::2]
        first = next(i for i, v in enumerate(ids) if v != i + 1)
        raise ValueError(
            f"{where}: a JSON list of {len(data)} numbers for {num_classes} classes looks like "
            "the DisAlign authors' [id, count, id, count, ...] list (num_shots_v1.0.json), but "
            f"its ids are not 1..{num_classes} in order (entry {2 * first} is {ids[first]}, "
            f"expected {first + 1}); write the counts in class order, one per class"
        )
    return data, None, FORMAT_COUNTS_LIST


def _read_json(
    text: str, where: str, num_classes: Optional[int]
) -> Tuple[list, Optional[list], str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{where} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            f"{_FORMATS}"
        ) from None
    if isinstance(data, dict):
        if not isinstance(data.get("counts"), list):
            if isinstance(data.get("categories"), list):
                raise ValueError(
                    f"{where}: the JSON object has 'categories' but no 'counts': it looks like "
                    "an LVIS/COCO annotation file, not a frequency file. Use it as the training "
                    "dataset (its categories' image_count/instance_count are read from there) "
                    "and leave the frequency file empty, or write the counts with "
                    f"disalign_core.write_class_frequencies; {_FORMATS}"
                )
            raise ValueError(f"{where}: the JSON object needs a 'counts' list; {_FORMATS}")
        names = data.get("names")
        if names is not None and (
            not isinstance(names, list) or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(f"{where}: 'names' must be a list of strings, got {names!r:.80}")
        return data["counts"], names, FORMAT_COUNTS_OBJECT
    if not isinstance(data, list):
        raise ValueError(f"{where}: got a JSON {type(data).__name__}; {_FORMATS}")
    return _read_json_list(data, where, num_classes)


def _describe_numpy_object_array(shape: tuple) -> str:
    if shape == ():
        return "a single pickled Python object (e.g. np.save of a dict {class: count})"
    return f"an array of Python objects of shape {shape} (e.g. np.save of a list of mixed types)"


def _npy_header(path: str) -> Optional[Tuple[tuple, object]]:
    """(shape, dtype) from a .npy header without reading the data, or None if unreadable."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
    except (ValueError, OSError, EOFError):
        return None
    return shape, dtype


def _read_numpy(path: str, where: str) -> list:
    """The counts of a .npy file holding a 1-D numeric array; never unpickles."""
    import numpy as np

    header = _npy_header(path)
    if header is not None and header[1].hasobject:
        raise ValueError(
            f"{where} holds {_describe_numpy_object_array(header[0])}, which NumPy only loads "
            "with allow_pickle=True, i.e. running whatever code the file carries: it is not "
            "read. Save the counts as a numeric array, "
            f"np.save(path, np.asarray(counts, dtype=np.int64)); {_FORMATS}"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array whose header we could not read ourselves
        if "allow_pickle" in str(e):
            raise ValueError(
                f"{where} holds Python objects, which NumPy only loads with allow_pickle=True, "
                "i.e. running whatever code the file carries: it is not read. Save the counts "
                f"as a numeric array; {_FORMATS}"
            ) from None
        raise ValueError(
            f"{where} is a truncated or damaged NumPy .npy file ({e}); {_FORMATS}"
        ) from None
    except (OSError, EOFError) as e:
        raise ValueError(
            f"{where} is a truncated or damaged NumPy .npy file ({type(e).__name__}: {e}); "
            f"{_FORMATS}"
        ) from None
    if array.dtype.names:
        raise ValueError(
            f"{where} holds a structured NumPy array with fields {array.dtype.names}, not an "
            f"array of counts; save the count field alone; {_FORMATS}"
        )
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{where} holds a NumPy array of dtype {array.dtype}, not numbers; {_FORMATS}"
        )
    if array.ndim == 2 and array.shape[1] == 2:
        raise ValueError(
            f"{where} holds a NumPy array of shape {array.shape}: it looks like (id, count) "
            f"rows; save the counts alone, in class order (np.save(path, array[:, 1])); "
            f"{_FORMATS}"
        )
    if array.ndim != 1:
        raise ValueError(
            f"{where} holds a NumPy array of shape {array.shape}; expected one dimension, one "
            f"count per class; {_FORMATS}"
        )
    return array.tolist()


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
                f"{path}:{lineno}: expected 'count' or 'name count', got {line!r:.80} ({where}); "
                f"{_FORMATS}"
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


def _refuse_binary(head: bytes, where: str) -> None:
    """Raise, saying what the file seems to be, for the binary kinds that are not read."""
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"{where} is a zip archive: a NumPy .npz (several arrays) or a PyTorch checkpoint, "
            "not a frequency file. Save the counts alone with np.save(path.npy, counts) or as "
            f"JSON; {_FORMATS}"
        )
    if head.startswith(_PICKLE_STARTS):
        raise ValueError(
            f"{where} is a Python pickle (e.g. pickle.dump or torch.save of the counts): not "
            "read, since unpickling runs whatever code the file carries. Save the counts with "
            f"np.save or as JSON; {_FORMATS}"
        )


def _read_file(
    path: str, where: str, num_classes: Optional[int]
) -> Tuple[list, Optional[list], Optional[float], str]:
    """(raw counts, names or None, share total, format) of a file, opened once."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} not found; {_FORMATS}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(_NPY_MAGIC):
        return _read_numpy(path, where), None, None, FORMAT_NUMPY
    _refuse_binary(raw[:4], where)
    if path.endswith(".npy"):
        raise ValueError(
            f"{where} is named .npy but is not a NumPy file (no NumPy header; it starts with "
            f"{raw[:16]!r}); {_FORMATS}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{where} is neither a NumPy .npy file nor UTF-8 text (byte {e.start} is "
            f"{raw[e.start:e.start + 1]!r}); {_FORMATS}"
        ) from None
    if path.endswith(".json") or text.lstrip()[:1] in ("[", "{"):
        counts, names, fmt = _read_json(text, where, num_classes)
        return counts, names, None, fmt
    lines = _lines(text)
    if _is_object_info(lines):
        return (*_read_object_info(lines, where, path), 1.0, FORMAT_OBJECT_INFO)
    return (*_read_text(lines, where, path), None, FORMAT_TEXT)


def read_class_frequencies(
    source: FrequencySource, key: Optional[str] = None, *, num_classes: Optional[int] = None
) -> ClassFrequencies:
    """Read per-class frequencies from a file (formats in the module docstring) or a list.

    Args:
        source (str | os.PathLike | sequence of float): the file (its format is taken from its
            content: a NumPy header, JSON (a ``.json`` name, or text starting with ``[``/``{``),
            objectInfo150.txt's header, else text lines), or the counts themselves.
        key (str, optional): the config key that named the source, for error messages
            (e.g. ``"MODEL.DISALIGN.FREQUENCY_FILE"``).
        num_classes (int, optional): the number of classes the caller expects. It only tells
            a JSON list of K counts from the authors' ``[id, count, ...]`` list of 2K numbers;
            the caller still checks the count of the result.

    Returns:
        ClassFrequencies: unpacks as ``(counts, names)``: (K,) counts per class, each finite
        and >= 0, and (K,) class names or None; ``.share_total``, ``.source`` and ``.format``
        as documented there.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the source cannot be parsed (or is a pickle, a zip archive, a NumPy object
            array, an annotation json: the message says which), is empty, has a count that is
            not a finite number >= 0, or a names list of another length than its counts; the
            message names the file, the key, the formats accepted and the class or line.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        described = repr(path)
        where = _where(described, key)
        raw_counts, names, share_total, fmt = _read_file(path, where, num_classes)
    else:
        raw_counts, names, share_total = list(source), None, None
        fmt = FORMAT_SEQUENCE
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
    return ClassFrequencies(counts, names, share_total=share_total, source=described, format=fmt)


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
