#!/usr/bin/env python
"""The MMPretrain half of the demo: DisAlign image classification on built-in long-tailed data.

1. generates the dataset (``generate_dataset`` below) under ``OUT/data``: 16 classes, each a
   (shape, colour) pair drawn on a noisy 32x32 image; training images per class from 5 to 320
   (5 many-shot classes > 100, 6 medium-shot 20-100, 5 few-shot < 20), a class-balanced test
   split of 40 images per class, MMPretrain ``CustomDataset`` annotation lists
   (``meta/train.txt``, ``meta/test.txt``: ``path label`` per line, as ImageNet_LT_train.txt);
2. trains stage 1 (a narrow ResNet-18, linear head) with MMPretrain's own ``tools/train.py``;
3. trains DisAlign stage 2 from the stage-1 checkpoint (``model.stage1_checkpoint``) with the
   same script;
4. tests both with MMPretrain's ``tools/test.py`` and ``LongTailAccuracy``
   (top-1 overall, many, medium, few);
5. writes ``OUT/cls_results.json``.

Usage::

    python tools/demo/cls_demo.py --output output/demo/cls [--quick] [--seed 0]

mmengine logs each stage's progress with its ETA.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "mmpretrain", "tiny")
STAGE1_CFG = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2_CFG = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")
METRIC_KEYS = ["top1", "many_top1", "medium_top1", "few_top1"]
# (stage-1 iterations, stage-2 iterations)
SCHEDULES = {"full": (400, 200), "quick": (40, 20)}

SHAPES = ("disc", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 50, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
}
# Training images per class, most frequent first; assigned to the 16 (shape, colour) pairs in a
# seeded random order so that every shape and colour has frequent and rare classes.
TRAIN_COUNTS = (320, 260, 210, 170, 130, 90, 70, 55, 42, 32, 24, 16, 12, 9, 7, 5)
TEST_PER_CLASS = 40
IMAGE_SIZE = 32


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """(size, size) bool mask of one shape centred at (cx, cy) with half-size r."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    if shape == "disc":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":
        # apex up: inside when below the two slanted edges and above the base
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        w = r * 0.35
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def draw_image(rng: np.random.Generator, shape: str, colour: str) -> np.ndarray:
    """One (32, 32, 3) uint8 RGB image: a jittered coloured shape on a noisy background."""
    s = IMAGE_SIZE
    background = rng.uniform(60, 160, size=3)
    img = np.empty((s, s, 3), np.float32)
    img[:] = background
    # a faint distractor blob of a random colour, so that colour alone is not trivial
    mask = _shape_mask("disc", s, *rng.uniform(4, s - 4, size=2), rng.uniform(3, 6))
    img[mask] = 0.6 * img[mask] + 0.4 * rng.uniform(0, 255, size=3)
    r = rng.uniform(6, 11)
    cx, cy = rng.uniform(r, s - r, size=2)
    mask = _shape_mask(shape, s, cx, cy, r)
    img[mask] = np.asarray(COLOURS[colour], np.float32) + rng.normal(0, 30, size=3)
    img += rng.normal(0, 22, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def class_table(seed: int = 0) -> List[Dict]:
    """The 16 classes: name, shape, colour and training count, in label order."""
    pairs = [(sh, co) for sh in SHAPES for co in COLOURS]
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [
        {"name": f"{pairs[i][1]}_{pairs[i][0]}", "shape": pairs[i][0], "colour": pairs[i][1],
         "train_count": TRAIN_COUNTS[rank]}
        for rank, i in enumerate(order)
    ]  # fmt: skip


def generate_dataset(out: str, seed: int = 0, test_per_class: int = TEST_PER_CLASS) -> dict:
    """Write the long-tailed dataset under ``out``; returns its metadata (also in meta/info.json).

    Layout: ``train/<label>_<i>.png``, ``test/<label>_<i>.png``, ``meta/train.txt`` and
    ``meta/test.txt`` (``path label`` lines), ``meta/classes.txt``,
    ``meta/class_counts.json`` (a frequency file: counts and names).
    """
    from PIL import Image

    classes = class_table(seed)
    rng = np.random.default_rng(seed + 1)
    for split in ("train", "test", "meta"):
        os.makedirs(os.path.join(out, split), exist_ok=True)
    for split in ("train", "test"):
        lines = []
        for label, c in enumerate(classes):
            n = c["train_count"] if split == "train" else test_per_class
            for i in range(n):
                rel = f"{split}/{label:02d}_{i:03d}.png"
                Image.fromarray(draw_image(rng, c["shape"], c["colour"])).save(
                    os.path.join(out, rel)
                )
                lines.append(f"{rel} {label}")
        with open(os.path.join(out, "meta", f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    names = [c["name"] for c in classes]
    with open(os.path.join(out, "meta", "classes.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    counts = [c["train_count"] for c in classes]
    with open(os.path.join(out, "meta", "class_counts.json"), "w") as f:
        json.dump({"counts": counts, "names": names}, f, indent=1)
    info = {"classes": classes, "seed": seed, "test_per_class": test_per_class}
    with open(os.path.join(out, "meta", "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def _mmpretrain_tool(name: str) -> str:
    import mmpretrain

    return os.path.join(os.path.dirname(mmpretrain.__file__), ".mim", "tools", name)


class Runner:
    """Runs commands with the demo's environment, echoing and recording them."""

    def __init__(self, data_dir: str):
        self.env = dict(os.environ, DISALIGN_CLS_DATA=data_dir)
        self.env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
        self.commands: List[str] = []
        self.start = time.time()

    def __call__(self, step: str, args: list) -> None:
        cmd = [sys.executable] + args
        line = f"DISALIGN_CLS_DATA={self.env['DISALIGN_CLS_DATA']} " + shlex.join(cmd)
        self.commands.append(line)
        print(f"\n[cls demo {time.time() - self.start:5.0f}s] {step}\n$ {line}", flush=True)
        subprocess.run(cmd, env=self.env, cwd=ROOT, check=True)


def schedule_options(n: int) -> List[str]:
    """--cfg-options that set a tiny config's iteration count to ``n``."""
    return [
        f"train_cfg.max_iters={n}",
        f"train_cfg.val_interval={n}",
        f"param_scheduler.end={n}",
        f"default_hooks.checkpoint.interval={n}",
        f"default_hooks.logger.interval={max(10, n // 10)}",
    ]


def test_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics mmengine's LoggerHook dumped after the test loop (percent)."""
    logs = sorted(glob.glob(os.path.join(work_dir, "*", "*.json")))
    if not logs:
        raise FileNotFoundError(f"no test metrics under {work_dir}")
    with open(logs[-1]) as f:
        tag = json.loads(f.read().strip().splitlines()[-1])
    return {k: float(tag[f"accuracy/{k}"]) for k in METRIC_KEYS}


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
    run = Runner(data)
    n1, n2 = SCHEDULES["quick" if args.quick else "full"]
    seed = [f"randomness.seed={args.seed}"]

    print(f"[cls demo] generating the long-tailed dataset in {data}", flush=True)
    info = generate_dataset(data, seed=args.seed)

    train, test = _mmpretrain_tool("train.py"), _mmpretrain_tool("test.py")
    w1, w2 = os.path.join(out, "stage1"), os.path.join(out, "disalign")
    run(
        f"stage 1: plain ResNet-18 (narrow), linear head, {n1} iterations",
        [train, STAGE1_CFG, "--work-dir", w1, "--cfg-options", *schedule_options(n1), *seed],
    )
    ckpt1 = os.path.join(w1, f"iter_{n1}.pth")
    run(
        f"stage 2: DisAlign calibration, {n2} iterations from {ckpt1}",
        [train, STAGE2_CFG, "--work-dir", w2, "--cfg-options", f"model.stage1_checkpoint={ckpt1}",
         *schedule_options(n2), *seed],
    )  # fmt: skip
    ckpt2 = os.path.join(w2, f"iter_{n2}.pth")
    results: dict = {}
    for name, cfg, ckpt, wd in (
        ("stage1", STAGE1_CFG, ckpt1, w1),
        ("disalign", STAGE2_CFG, ckpt2, w2),
    ):
        test_dir = wd + "_test"
        run(f"test {name}", [test, cfg, ckpt, "--work-dir", test_dir])
        results[name] = test_metrics(test_dir)

    from disalign_core import CLASSIFICATION_COUNT_BINS, groups_by_count

    counts = [c["train_count"] for c in info["classes"]]
    state = torch.load(ckpt2, map_location="cpu", weights_only=False)["state_dict"]
    results.update(
        class_names=[c["name"] for c in info["classes"]],
        class_image_counts=counts,
        groups=groups_by_count(counts, *CLASSIFICATION_COUNT_BINS),
        alpha=state["head.calibration.alpha"].tolist(),
        beta=state["head.calibration.beta"].tolist(),
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
