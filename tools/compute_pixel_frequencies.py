"""Count the training pixels of every class in a folder of label maps (PNG): the command line
over ``disalign_seg.frequencies.count_class_pixels``.

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
import sys
from typing import Optional, Sequence

import numpy as np

from disalign_core import write_class_frequencies
from disalign_seg.frequencies import count_class_pixels, dataset_classes_from_config


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
        names, cfg_reduce = dataset_classes_from_config(args.config)
        reduce = reduce or bool(cfg_reduce)
        if args.num_classes is not None and args.num_classes != len(names):
            parser.error(
                f"--num-classes {args.num_classes} but the config has {len(names)} classes"
            )
    num_classes = len(names) if names else args.num_classes
    if not num_classes or num_classes < 1:
        parser.error("give --num-classes K (a positive int) or --config")
    counts = count_class_pixels(
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
