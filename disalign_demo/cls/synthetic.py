"""A seeded long-tailed image classification data set, learnable on a CPU in minutes.

16 classes, each a (shape, colour) pair drawn on a noisy 32x32 image; training images per class
from 5 to 320 (5 many-shot classes > 100, 6 medium-shot 20-100, 5 few-shot < 20), a
class-balanced test split, MMPretrain ``CustomDataset`` annotation lists (``path label`` per
line, as ImageNet_LT_train.txt).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np

__all__ = [
    "COLOURS",
    "SHAPES",
    "TRAIN_COUNTS",
    "class_table",
    "draw_image",
    "generate_cls_synthetic",
]

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


def generate_cls_synthetic(out: str, seed: int = 0, test_per_class: int = TEST_PER_CLASS) -> dict:
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
