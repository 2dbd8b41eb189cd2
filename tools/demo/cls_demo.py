#!/usr/bin/env python
"""The MMPretrain half of the demo: DisAlign image classification on built-in long-tailed data.

1. generates the dataset (``disalign_demo.cls.generate_cls_synthetic``) under ``OUT/data``: 16 classes, each a
   (shape, colour) pair drawn on a noisy 32x32 image; training images per class from 5 to 320
   (5 many-shot classes > 100, 6 medium-shot 20-100, 5 few-shot < 20), a class-balanced test
   split of 40 images per class, MMPretrain ``CustomDataset`` annotation lists
   (``meta/train.txt``, ``meta/test.txt``: ``path label`` per line, as ImageNet_LT_train.txt);
2. trains stage 1 (a narrow ResNet-18, linear head) with MMPretrain's own ``tools/train.py``;
3. trains DisAlign stage 2 from the stage-1 checkpoint (``model.stage1_checkpoint``) with the
   same script;
4. tests both with MMPretrain's ``tools/test.py`` and ``LongTailAccuracy``
   (top-1 overall, many, medium, few; per-class values on);
5. draws each class's top-1 change against its training images with
   ``tools/compare_results.py`` (``OUT/per_class_change_cls.png``, ``OUT/per_class_cls.json``);
6. writes ``OUT/cls_results.json``.

Usage::

    python tools/demo/cls_demo.py --output output/demo/cls [--quick] [--seed 0]

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

from disalign_demo.cls import generate_cls_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "mmpretrain", "tiny")
STAGE1_CFG = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2_CFG = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
METRIC_KEYS = ["top1", "many_top1", "medium_top1", "few_top1"]
# (stage-1 iterations, stage-2 iterations)
SCHEDULES = {"full": (400, 200), "quick": (40, 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    args = parser.parse_args()

    import torch

    start = time.time()
    out = os.path.abspath(args.output)
    data = os.path.join(out, "data")
    os.makedirs(out, exist_ok=True)
    run = Runner("cls demo", "DISALIGN_CLS_DATA", data)
    n1, n2 = SCHEDULES["quick" if args.quick else "full"]
    seed = [f"randomness.seed={args.seed}"]

    print(f"[cls demo] generating the long-tailed dataset in {data}", flush=True)
    info = generate_cls_synthetic(data, seed=args.seed)

    train, test = mm_tool("mmpretrain", "train.py"), mm_tool("mmpretrain", "test.py")
    w1, w2 = os.path.join(out, "stage1"), os.path.join(out, "disalign")
    run(
        f"stage 1: plain ResNet-18 (narrow), linear head, {n1} iterations",
        [
            train,
            STAGE1_CFG,
            "--work-dir",
            w1,
            "--cfg-options",
            *schedule_options(n1, "param_scheduler"),
            *seed,
        ],
    )
    ckpt1 = os.path.join(w1, f"iter_{n1}.pth")
    run(
        f"stage 2: DisAlign calibration, {n2} iterations from {ckpt1}",
        [train, STAGE2_CFG, "--work-dir", w2, "--cfg-options", f"model.stage1_checkpoint={ckpt1}",
         *schedule_options(n2, "param_scheduler"), *seed],
    )  # fmt: skip
    ckpt2 = os.path.join(w2, f"iter_{n2}.pth")
    results: dict = {}
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
        results[name] = test_metrics(test_dir, METRIC_KEYS, prefix="accuracy/")
        test_dirs.append(test_dir)
    # Training images per class: counted from the training annotation list, as the config's.
    train_list = os.path.join(data, "meta", "train.txt")
    change = per_class_change(
        run, "cls", out, test_dirs, train_list, "MMPretrain demo: top-1 per class"
    )

    from disalign_core import CLASSIFICATION_COUNT_BINS, groups_by_count

    counts = [c["train_count"] for c in info["classes"]]
    state = torch.load(ckpt2, map_location="cpu", weights_only=False)["state_dict"]
    results.update(
        class_names=[c["name"] for c in info["classes"]],
        class_image_counts=counts,
        groups=groups_by_count(counts, *CLASSIFICATION_COUNT_BINS),
        alpha=state["head.calibration.alpha"].tolist(),
        beta=state["head.calibration.beta"].tolist(),
        per_class_change=change,
        iterations={"stage1": n1, "disalign": n2},
        commands=run.commands,
        seconds=round(time.time() - start, 1),
    )
    path = os.path.join(out, "cls_results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\n[cls demo] {results['seconds']:.0f} s; results in {path}")
    print(f"{'metric':>12} {'stage 1':>8} {'DisAlign':>8}")
    for key in METRIC_KEYS:
        print(f"{key:>12} {results['stage1'][key]:8.2f} {results['disalign'][key]:8.2f}")


if __name__ == "__main__":
    main()
