"""Count the training pixels of every class in a folder of label maps (PNG).

The output is the frequency file that ``GRWCrossEntropyLoss`` and ``LongTailIoUMetric`` read
(``class_frequencies=...``): JSON ``{"counts": [...], "names": [...]}``, or text lines
``name<TAB>count`` when the output name does not end in ``.json``.

Examples::

    # ADE20K: label 0 is "other" (ignored), classes are 1..150
    python tools/compute_pixel_frequencies.py data/ade/ADEChallengeData2016/annotations/training \
        --num-classes 150 --reduce-zero-label --out data/ade_pixel_frequencies.json
    # class count and names from an mmseg config's training dataset
    python tools/compute_pixel_frequencies.py ANN_DIR --config configs/mmseg/....py --out F.json
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from disalign_core import write_class_frequencies  # noqa: E402


def count_pixels(
    ann_dir: str,
    num_classes: int,
    *,
    reduce_zero_label: bool = False,
    ignore_index: int = 255,
    suffix: str = ".png",
    progress: bool = True,
) -> np.ndarray:
    """(K,) int64 pixel count per class over every ``*suffix`` label map under ``ann_dir``.

    With ``reduce_zero_label`` (ADE20K), label 0 is ignored and label c+1 counts for class c,
    as mmseg's LoadAnnotations does. ``ignore_index`` pixels are not counted.

    Raises:
        FileNotFoundError: no folder or no label map in it.
        ValueError: a label outside [0, K) that is not the ignore label, naming the file.
    """
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(f"annotation folder not found: {ann_dir!r}")
    files = sorted(
        os.path.join(dp, f) for dp, _, fs in os.walk(ann_dir) for f in fs if f.endswith(suffix)
    )
    if not files:
        raise FileNotFoundError(f"no '*{suffix}' label maps under {ann_dir!r}")
    counts = np.zeros(num_classes, np.int64)
    for path in tqdm(files, desc="counting class pixels", unit="map", disable=not progress):
        label = np.asarray(Image.open(path)).astype(np.int64)
        if label.ndim != 2:
            raise ValueError(
                f"{path}: expected a single-channel label map, got shape {label.shape}"
            )
        if reduce_zero_label:
            # exactly mmseg's LoadAnnotations: 0 -> 255, c -> c-1, and 255 stays 255
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        label = label[label != ignore_index]
        bad = (label < 0) | (label >= num_classes)
        if bad.any():
            raise ValueError(
                f"{path}: label {int(label[bad][0])} outside [0, {num_classes}) "
                f"(num_classes={num_classes}, reduce_zero_label={reduce_zero_label})"
            )
        counts += np.bincount(label, minlength=num_classes)
    return counts


def classes_from_config(config: str) -> Tuple[List[str], Optional[bool]]:
    """Class names and reduce_zero_label of the training dataset of an mmseg config."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get("default_scope", "mmseg"))
    ds = cfg.train_dataloader.dataset
    while "dataset" in ds:  # RepeatDataset and other wrappers
        ds = ds.dataset
    classes = (ds.get("metainfo") or {}).get("classes")
    if classes is None:
        classes = DATASETS.get(ds.type).METAINFO["classes"]
    reduce = ds.get("reduce_zero_label")
    if reduce is None:
        # e.g. mmseg's ADE20K config leaves it to ADE20KDataset, whose default is True.
        default = inspect.signature(DATASETS.get(ds.type)).parameters.get("reduce_zero_label")
        reduce = default.default if default is not None else None
    return list(classes), reduce


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ann_dir", help="folder of training label maps")
    parser.add_argument("--out", required=True, help="output file (.json, or text)")
    parser.add_argument("--num-classes", type=int, help="K (or give --config)")
    parser.add_argument("--config", help="mmseg config: class names, K, reduce_zero_label")
    parser.add_argument("--reduce-zero-label", action="store_true", help="ADE20K's labels")
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--suffix", default=".png")
    args = parser.parse_args(argv)

    names, reduce = None, args.reduce_zero_label
    if args.config:
        names, cfg_reduce = classes_from_config(args.config)
        reduce = reduce or bool(cfg_reduce)
        if args.num_classes is not None and args.num_classes != len(names):
            parser.error(
                f"--num-classes {args.num_classes} but the config has {len(names)} classes"
            )
    num_classes = len(names) if names else args.num_classes
    if not num_classes or num_classes < 1:
        parser.error("give --num-classes K (a positive int) or --config")
    counts = count_pixels(
        args.ann_dir,
        num_classes,
        reduce_zero_label=reduce,
        ignore_index=args.ignore_index,
        suffix=args.suffix,
    )
    write_class_frequencies(args.out, [int(c) for c in counts], names)
    total = counts.sum()
    empty = [names[i] if names else str(i) for i in np.flatnonzero(counts == 0)]
    print(f"{total} labelled pixels in {num_classes} classes -> {args.out}")
    if empty:
        print(f"warning: classes without any pixel: {', '.join(empty)}", file=sys.stderr)


if __name__ == "__main__":
    main()
