"""Checks of image and label-map files before training reads them: framework-free (PIL and
numpy, imported when a check runs), shared by the three plugins' data checks.

What one check costs and finds (measured in ``benchmarks/bench_data_check.py``):

- ``image_file_problem(path)``, the **header check**: PIL identifies the format and reads the
  size from the header (no pixel is decoded), then the file's last bytes are read: a JPEG must
  end with its EOI marker, a PNG with its IEND chunk. A file cut short (an interrupted download
  or copy) fails this; detectron2 would otherwise crash on it when the loader reaches it,
  without naming it. A file that does not end so (bytes appended after the image, or another
  format than JPEG/PNG) is decoded in full to decide, so the check never refuses a file the
  loader can read. Two small reads per file.
- ``image_file_problem(path, decode=True)``, the **full check**: every pixel decoded, what the
  loader will do; finds damage inside a file whose ends are intact (PIL raises on it for PNG;
  for JPEG only when the entropy-coded data cannot be parsed).
- ``label_map_values(path)``: a label map decoded in full, its distinct values.

``run_parallel`` runs a check over many files in threads (PIL releases the GIL while it
decodes; file reads release it too); ``shard`` splits the files among distributed processes.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

__all__ = [
    "CHECK_MODES",
    "default_num_threads",
    "image_file_problem",
    "label_map_values",
    "run_parallel",
    "sample",
    "shard",
]

T = TypeVar("T")
R = TypeVar("R")

# What a check of image files does: "exists" (one stat per file), "headers" (the header check
# above) or "full" (every pixel decoded).
CHECK_MODES = ("exists", "headers", "full")

_JPEG_END = b"\xff\xd9"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_EXIF_ORIENTATION = 0x0112  # orientations 5-8 swap width and height


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _ends_intact(f, image_format: Optional[str]) -> bool:
    """Whether the file ends as a complete JPEG / PNG does (False for other formats)."""
    end = {"JPEG": _JPEG_END, "PNG": _PNG_END}.get(image_format or "")
    if end is None:
        return False
    f.seek(0, os.SEEK_END)
    if f.tell() < len(end):
        return False
    f.seek(-len(end), os.SEEK_END)
    return f.read(len(end)) == end


def _oriented_size(image, full: bool) -> Tuple[int, int]:
    """(width, height) after the EXIF orientation, which detectron2's ``read_image`` applies.
    ``full=False`` reads only the EXIF block the header held (``Image.getexif`` of a PNG
    decodes the whole image to look for one after the pixels)."""
    from PIL import Image

    if full:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    else:
        exif = Image.Exif()
        raw = image.info.get("exif")
        if raw:
            exif.load(raw)
        orientation = exif.get(_EXIF_ORIENTATION)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def image_file_problem(
    path: str,
    *,
    decode: bool = False,
    expected_size: Optional[Tuple[int, int]] = None,
) -> Optional[str]:
    """What is wrong with one image file, or None.

    Args:
        path (str): the image file.
        decode (bool): decode every pixel (the full check) instead of the header check.
        expected_size ((width, height), optional): the size the annotations give; compared
            with the header's size after the EXIF orientation, which detectron2's
            ``read_image`` applies.

    Returns:
        None, or a short description: missing, not an image PIL can identify, cut short /
        undecodable (with PIL's message), or of another size than expected.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            try:
                image = Image.open(f)
            except UnidentifiedImageError:
                return "is not an image file PIL can read (unknown format or a damaged header)"
            size = _oriented_size(image, full=False)
            if decode or not _ends_intact(f, image.format):
                f.seek(0)
                try:
                    Image.open(f).load()
                except (OSError, SyntaxError, ValueError) as e:
                    what = "cannot be decoded" if decode else "is cut short or damaged"
                    return f"{what} ({_describe(e)})"
            if expected_size is not None and size != tuple(expected_size):
                # The EXIF block of a PNG may follow the pixels: read all of it to be sure.
                f.seek(0)
                size = _oriented_size(Image.open(f), full=True)
    except FileNotFoundError:
        return "does not exist"
    except (OSError, SyntaxError, ValueError) as e:
        return f"cannot be read ({_describe(e)})"
    if expected_size is not None and size != tuple(expected_size):
        return (
            f"is {size[0]}x{size[1]} pixels (after its EXIF orientation) but the annotations "
            f"say {expected_size[0]}x{expected_size[1]}"
        )
    return None


def label_map_values(path: str) -> Tuple[List[int], Optional[str]]:
    """The distinct values of a label map (decoded in full), or what is wrong with it.

    Returns:
        (values, problem): sorted distinct pixel values and None; or [] and a description
        (missing, undecodable, or more than one channel: a colour-coded map is not a map of
        class ids).
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                return [], (
                    f"has {len(image.getbands())} channels (PIL mode {image.mode!r}); a label "
                    "map holds one class id per pixel (a colour-coded map must be converted to "
                    "class ids)"
                )
            array = np.asarray(image)
    except FileNotFoundError:
        return [], "does not exist"
    except (OSError, SyntaxError, ValueError) as e:
        return [], f"cannot be decoded ({_describe(e)})"
    if array.dtype == np.uint8:
        return np.flatnonzero(np.bincount(array.ravel(), minlength=256)).tolist(), None
    return np.unique(array).astype(np.int64).tolist(), None


def default_num_threads() -> int:
    """Threads for ``run_parallel``: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def run_parallel(
    check: Callable[[T], R], items: Sequence[T], num_threads: Optional[int] = None
) -> List[R]:
    """``[check(x) for x in items]``, in ``num_threads`` threads (default
    ``default_num_threads()``), in the order of ``items``."""
    num_threads = num_threads or default_num_threads()
    if num_threads <= 1 or len(items) <= 1:
        return [check(x) for x in items]
    with ThreadPoolExecutor(num_threads) as pool:
        return list(pool.map(check, items))


def shard(items: Sequence[T], rank: int, world_size: int) -> List[T]:
    """The items process ``rank`` of ``world_size`` checks: every ``world_size``-th one."""
    return list(items[rank::world_size])


def sample(items: Sequence[T], count: Optional[int], seed: int = 0) -> List[T]:
    """``count`` items drawn without replacement (fixed seed, in their order), or all of them
    when ``count`` is None or not smaller than ``len(items)``."""
    if count is None or count >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[i] for i in chosen]
