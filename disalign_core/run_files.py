"""The files of a training run, framework-free: atomic writes, complete checkpoints, the
checkpoint ``--resume`` should load, and the recipe a run was trained with.

Every plugin's checkpointer uses these (detectron2's ``DisAlignCheckpointer``, mmengine's
``DisAlignCheckpointHook`` and ``DisAlignRecipeGuardHook``), so that the rules are the same:

- a checkpoint or pointer file is written to a temporary file beside it, flushed and renamed
  onto it (``atomic_write``): a full disk or a kill leaves the old file whole;
- ``--resume`` loads the checkpoint the pointer file names when it is complete, otherwise the
  newest complete one of the folder, and says why (``resolve_resume_checkpoint``);
- a recipe is a flat dict ``{config key: plain value}``; two recipes are compared key by key,
  a file's hash only when both have it (``recipe_differences``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, List, Mapping, Optional, Tuple, Union

__all__ = [
    "HASH_SUFFIX",
    "NOT_SET",
    "ResumeChoice",
    "atomic_write",
    "file_sha256",
    "is_complete_checkpoint",
    "plain_value",
    "recipe_differences",
    "resolve_resume_checkpoint",
]

# The suffix of a recipe key holding a file's sha256 (``<key> (sha256 of the file)``).
HASH_SUFFIX = " (sha256 of the file)"
# How a recipe key that one recipe lacks is shown.
NOT_SET = "<not set>"
# torch.save's zip format starts with a local file header.
_ZIP_MAGIC = b"PK\x03\x04"


def atomic_write(
    path: str, data: Union[bytes, str, Callable[[BinaryIO], None]], encoding: str = "utf-8"
) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old or its new contents.

    Writes a temporary file in the same folder, flushes it to disk, renames it onto ``path``
    and flushes the folder. On any error the temporary file is removed and ``path`` is
    untouched.

    Args:
        data: bytes, text (encoded with ``encoding``), or a function that writes to the open
            binary file (e.g. ``lambda f: torch.save(obj, f)``, without a copy in memory).
    """
    if isinstance(data, str):
        data = data.encode(encoding)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(
        folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make a rename durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a checkpoint file written to its end.

    torch.save's zip format ends with the archive's central directory, so a cut-off file does
    not open as a zip archive. An empty file is incomplete; a non-empty file in another format
    (torch's legacy pickle format) counts as complete: loading it decides.
    """
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return False
        with open(path, "rb") as f:
            if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
                return True
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@dataclass
class ResumeChoice:
    """What ``--resume`` loads.

    Attributes:
        path: the checkpoint file; None: nothing to resume (training starts anew).
        pointer: the text of the pointer file (None: no such file).
        fallback: why ``path`` is not the file the pointer names (None: it is).
    """

    path: Optional[str]
    pointer: Optional[str]
    fallback: Optional[str] = None


def resolve_resume_checkpoint(
    pointer_file: str,
    to_path: Callable[[str], str],
    checkpoint_order: Callable[[str], Optional[float]],
) -> ResumeChoice:
    """The checkpoint ``--resume`` should load: the one ``pointer_file`` names when it is
    complete; otherwise the newest complete checkpoint of the folder it names (of the pointer
    file's folder when it names none). Without a complete one, ``path`` is the file the pointer
    names (its load then fails naming it), or None.

    Args:
        pointer_file (str): ``last_checkpoint`` of the run's folder.
        to_path: the checkpoint path of the pointer's text (detectron2 writes a name relative
            to OUTPUT_DIR, mmengine a path).
        checkpoint_order: a file name's place among the run's checkpoints (its iteration or
            epoch; ``inf`` for a final one), None for a file that is not a checkpoint.
    """
    pointer = None
    if os.path.isfile(pointer_file):
        with open(pointer_file, encoding="utf-8", errors="replace") as f:
            pointer = f.read().strip()
    named = to_path(pointer) if pointer else None
    if named and is_complete_checkpoint(named):
        return ResumeChoice(named, pointer)
    if pointer is None:
        problem = f"there is no {pointer_file}"
    elif not pointer:
        problem = f"{pointer_file} is empty (cut off while being written?)"
    elif not os.path.exists(named):
        problem = f"{pointer_file} names {pointer!r}, which is not a file"
    else:
        problem = (
            f"{pointer_file} names {pointer!r}, which is empty or truncated (cut off while "
            "being written?)"
        )
    folder = os.path.dirname(named) if named else os.path.dirname(pointer_file)
    for _, candidate in _checkpoints_newest_first(folder, checkpoint_order):
        if candidate != named and is_complete_checkpoint(candidate):
            return ResumeChoice(
                candidate,
                pointer,
                f"{problem}: resuming from {candidate}, the newest complete checkpoint of "
                f"{folder}",
            )
    return ResumeChoice(named, pointer)


def _checkpoints_newest_first(
    folder: str, checkpoint_order: Callable[[str], Optional[float]]
) -> List[Tuple[float, str]]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(checkpoint_order(n), os.path.join(folder, n)) for n in names]
    return sorted(((o, p) for o, p in found if o is not None), reverse=True)


def plain_value(value: Any) -> Any:
    """``value`` as plain dicts, lists and scalars: what ``torch.load(weights_only=True)``
    reads back, and what compares equal whether it came from a tuple or a list."""
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recipe_differences(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> List[Tuple[str, Any, Any]]:
    """(key, old value, new value) of every recipe key that differs, sorted by key. A key one
    recipe lacks is ``NOT_SET``; a file's hash (a key ending in ``HASH_SUFFIX``) is compared
    only when both recipes have it (not for a recipe read from an old config, nor for a file
    that is gone)."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key.endswith(HASH_SUFFIX) and (key not in old or key not in new):
            continue
        before, after = plain_value(old.get(key, NOT_SET)), plain_value(new.get(key, NOT_SET))
        if before != after:
            diffs.append((key, before, after))
    return diffs
