#!/usr/bin/env python
"""The MMSegmentation half of the demo: DisAlign on the built-in long-tailed dataset.

1. generates the dataset (``disalign_demo.seg``, ADE20K layout) under ``OUT/data``;
2. counts its class pixels with ``tools/compute_pixel_frequencies.py``;
3. trains stage 1 (plain FCN, tiny ResNet-18-D8) with mmseg's own ``tools/train.py``;
4. trains DisAlign stage 2 from the stage-1 checkpoint (``model.stage1_checkpoint``) with the
   same script;
5. tests both with mmseg's ``tools/test.py`` and the long-tail metric (per-class values on);
6. draws each class's IoU and Acc change against its pixel share with
   ``tools/compare_results.py`` (``OUT/per_class_change_seg.png``, ``OUT/per_class_seg.json``);
7. writes ``OUT/seg_results.json``.

Usage::

    python tools/demo/seg_demo.py --output output/demo/seg [--quick]

mmengine logs each stage's progress with its ETA.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from mm_demo import (
    PER_CLASS_OPTION,
    Runner,
    mm_tool,
    per_class_change,
    schedule_options,
    test_metrics,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "mmseg", "tiny")
STAGE1_CFG = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
STAGE2_CFG = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")
METRIC_KEYS = [
    "aAcc",
    "mIoU",
    "mAcc",
    "head_mIoU",
    "body_mIoU",
    "tail_mIoU",
    "head_mAcc",
    "body_mAcc",
    "tail_mAcc",
]
# (stage-1 iterations, stage-2 iterations)
SCHEDULES = {"full": (600, 200), "quick": (200, 60)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    args = parser.parse_args()

    import torch

    import disalign_seg  # noqa: F401  lets torch.load read mmengine checkpoints (allow-list)
    from disalign_core import groups_by_share, read_class_frequencies
    from disalign_demo.seg import generate_ade20k_synthetic

    start = time.time()
    out = os.path.abspath(args.output)
    data = os.path.join(out, "data")
    os.makedirs(out, exist_ok=True)
    run = Runner("seg demo", "DISALIGN_SEG_DATA", data)
    n1, n2 = SCHEDULES["quick" if args.quick else "full"]
    seed = [f"randomness.seed={args.seed}"]

    print(f"[seg demo] generating the long-tailed dataset in {data}", flush=True)
    meta = generate_ade20k_synthetic(data, seed=args.seed)
    freq = os.path.join(data, "pixel_frequencies.json")
    run(
        "class pixel frequencies",
        [
            "tools/compute_pixel_frequencies.py",
            os.path.join(data, "annotations", "training"),
            "--config",
            STAGE1_CFG,
            "--out",
            freq,
        ],
    )

    train, test = mm_tool("mmseg", "train.py"), mm_tool("mmseg", "test.py")
    w1, w2 = os.path.join(out, "stage1"), os.path.join(out, "disalign")
    run(
        f"stage 1: plain FCN, {n1} iterations",
        [
            train,
            STAGE1_CFG,
            "--work-dir",
            w1,
            "--cfg-options",
            *schedule_options(n1, "param_scheduler.0"),
            *seed,
        ],
    )
    ckpt1 = os.path.join(w1, f"iter_{n1}.pth")
    run(
        f"stage 2: DisAlign calibration, {n2} iterations from {ckpt1}",
        [
            train,
            STAGE2_CFG,
            "--work-dir",
            w2,
            "--cfg-options",
            f"model.stage1_checkpoint={ckpt1}",
            *schedule_options(n2, "param_scheduler.0"),
            *seed,
        ],
    )
    ckpt2 = os.path.join(w2, f"iter_{n2}.pth")
    results = {}
    test_dirs = []
    for name, cfg, ckpt, wd in (
        ("stage1", STAGE1_CFG, ckpt1, w1),
        ("disalign", STAGE2_CFG, ckpt2, w2),
    ):
        test_dir = wd + "_test"
        run(
            f"test {name}",
            [test, cfg, ckpt, "--work-dir", test_dir, "--cfg-options", PER_CLASS_OPTION],
        )
        results[name] = test_metrics(test_dir, METRIC_KEYS)
        test_dirs.append(test_dir)
    change = per_class_change(
        run, "seg", out, test_dirs, freq, "MMSegmentation demo: IoU and Acc per class"
    )

    counts, names = read_class_frequencies(freq)
    state = torch.load(ckpt2, map_location="cpu")["state_dict"]
    results.update(
        class_names=names or meta["classes"],
        class_pixel_counts=[int(c) for c in counts],
        groups=groups_by_share(counts),
        alpha=state["decode_head.calibration.alpha"].tolist(),
        beta=state["decode_head.calibration.beta"].tolist(),
        per_class_change=change,
        commands=run.commands,
        seconds=round(time.time() - start, 1),
    )
    path = os.path.join(out, "seg_results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\n[seg demo] {results['seconds']:.0f} s; results in {path}")
    print(f"{'metric':>10} {'stage 1':>8} {'DisAlign':>8}")
    for key in METRIC_KEYS:
        print(f"{key:>10} {results['stage1'][key]:8.2f} {results['disalign'][key]:8.2f}")


if __name__ == "__main__":
    main()
