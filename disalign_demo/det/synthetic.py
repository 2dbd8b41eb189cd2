"""A seeded generator of a small long-tailed detection / instance-segmentation dataset in LVIS
json format, learnable on a CPU in minutes.

Each class is a colour x shape combination (6 colours x 6 shapes = 36 classes by default), so
every class is recognisable from its appearance and rare classes share their colour and their
shape with frequent ones. Training image counts follow a long tail spanning LVIS's groups:
rare (1-10 images), common (11-100) and frequent (>100). The val split has about the same
number of instances for every class, so rare classes can be evaluated.

Layout written under ``root``::

    root/lvis_synth_train.json, root/lvis_synth_val.json
    root/images/train/000001.png, root/images/val/000001.png   (coco_url ".../train/000001.png")
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["COLOURS", "SHAPES", "long_tail_counts", "generate_lvis_synthetic"]

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (235, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
}
SHAPES = ("square", "circle", "triangle", "diamond", "cross", "frame")


def long_tail_counts(
    num_classes: int,
    num_frequent: int,
    num_common: int,
    seed: int = 0,
    frequent_range: Tuple[int, int] = (120, 240),
) -> List[int]:
    """Training image counts per class, in a random (seeded) class order: ``num_frequent``
    classes with ``frequent_range`` images (default 120-240), ``num_common`` with 11-100, the rest (rare) 4-10, log-spaced.
    """
    num_rare = num_classes - num_frequent - num_common
    if min(num_frequent, num_common, num_rare) < 1:
        raise ValueError(
            f"need at least one frequent, common and rare class, got {num_frequent}, "
            f"{num_common}, {num_rare} of {num_classes}"
        )

    def logspace(hi: float, lo: float, n: int) -> List[int]:
        if n == 1:
            return [round(hi)]
        return [
            round(math.exp(math.log(hi) + (math.log(lo) - math.log(hi)) * i / (n - 1)))
            for i in range(n)
        ]

    counts = (
        logspace(frequent_range[1], frequent_range[0], num_frequent)
        + logspace(100, 11, num_common)
        + logspace(10, 4, num_rare)
    )
    # Rare classes get 4-10 images (LVIS's rare group is 1-10): with 1-3 images a from-scratch
    # tiny model learns nothing of a class, and no calibration can help (seen in this demo).
    order = list(range(num_classes))
    random.Random(seed).shuffle(order)
    out = [0] * num_classes
    for rank, cls in enumerate(order):
        out[cls] = counts[rank]
    return out


def _polygon(shape: str, cx: float, cy: float, r: float) -> List[List[float]]:
    """Polygons (LVIS ``segmentation``: list of flat [x0, y0, x1, y1, ...]) of a shape of
    half-size r centred at (cx, cy)."""

    def ring(n: int, rad: float, phase: float = 0.0) -> List[float]:
        pts = []
        for i in range(n):
            a = phase + 2 * math.pi * i / n
            pts += [cx + rad * math.cos(a), cy + rad * math.sin(a)]
        return pts

    if shape == "square":
        return [[cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]]
    if shape == "circle":
        return [ring(16, r)]
    if shape == "triangle":
        return [[cx, cy - r, cx + r, cy + r, cx - r, cy + r]]
    if shape == "diamond":
        return [[cx, cy - r, cx + r, cy, cx, cy + r, cx - r, cy]]
    if shape == "cross":
        t = r / 3
        return [
            [
                cx - t,
                cy - r,
                cx + t,
                cy - r,
                cx + t,
                cy - t,
                cx + r,
                cy - t,
                cx + r,
                cy + t,
                cx + t,
                cy + t,
                cx + t,
                cy + r,
                cx - t,
                cy + r,
                cx - t,
                cy + t,
                cx - r,
                cy + t,
                cx - r,
                cy - t,
                cx - t,
                cy - t,
            ]
        ]
    if shape == "frame":
        # A square ring as one polygon that goes around the outside, then back around the hole.
        t = r / 2.5
        return [
            [
                cx - r,
                cy - r,
                cx + r,
                cy - r,
                cx + r,
                cy + r,
                cx - r,
                cy + r,
                cx - r,
                cy - r + t,
                cx - r + t,
                cy - r + t,
                cx - r + t,
                cy + r - t,
                cx + r - t,
                cy + r - t,
                cx + r - t,
                cy - r + t,
                cx - r,
                cy - r + t,
            ]
        ]
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _pack(class_tokens: List[int], max_per_image: int, rng: random.Random) -> List[List[int]]:
    """Distribute class tokens into images of 1..max_per_image distinct classes: every token
    lands in exactly one image, so a class's image count equals its token count."""
    rng.shuffle(class_tokens)
    images: List[List[int]] = []
    open_images: List[Tuple[List[int], int]] = []
    for c in class_tokens:
        for i, (img, cap) in enumerate(open_images):
            if c not in img:
                img.append(c)
                if len(img) >= cap:
                    open_images.pop(i)
                break
        else:
            img = [c]
            images.append(img)
            cap = rng.randint(1, max_per_image)
            if cap > 1:
                open_images.append((img, cap))
        if len(open_images) > 8:  # keep images from waiting forever for a distinct class
            open_images.pop(0)
    return images


def _draw_split(
    split: str,
    image_classes: List[List[int]],
    class_specs: Sequence[Tuple[str, str]],
    root: str,
    size: int,
    obj_size: Tuple[int, int],
    rng: random.Random,
) -> Tuple[List[dict], List[dict]]:
    os.makedirs(os.path.join(root, "images", split), exist_ok=True)
    images, annotations = [], []
    all_ids = set(range(1, len(class_specs) + 1))
    np_rng = np.random.default_rng(rng.randrange(2**32))
    for image_id, classes in enumerate(image_classes, 1):
        bg = tuple(int(v) for v in np_rng.integers(30, 90, size=3))
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        placed: List[Tuple[float, float, float]] = []
        for c in classes:
            colour_name, shape = class_specs[c]
            for _ in range(100):  # rejection-sample a place that overlaps no earlier object
                r = rng.uniform(*obj_size) / 2
                cx, cy = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
                if all(abs(cx - x) > r + q + 1 or abs(cy - y) > r + q + 1 for x, y, q in placed):
                    break
            placed.append((cx, cy, r))
            jitter = np_rng.integers(-20, 21, size=3)
            colour = tuple(int(v) for v in np.clip(np.array(COLOURS[colour_name]) + jitter, 0, 255))
            polys = _polygon(shape, cx, cy, r)
            for poly in polys:
                draw.polygon(poly, fill=colour)
            if shape == "frame":  # punch the hole (a polygon cannot draw it in one fill)
                t = r / 2.5
                draw.rectangle([cx - r + t, cy - r + t, cx + r - t, cy + r - t], fill=bg)
            xs, ys = polys[0][0::2], polys[0][1::2]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": c + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "segmentation": [[round(v, 2) for v in p] for p in polys],
                }
            )
        pixels = np.asarray(img, dtype=np.int16)
        noise = np_rng.integers(-12, 13, size=pixels.shape)
        Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(
            os.path.join(root, "images", split, f"{image_id:06d}.png")
        )
        present = {c + 1 for c in classes}
        images.append(
            {
                "id": image_id,
                "width": size,
                "height": size,
                "file_name": f"{image_id:06d}.png",
                "coco_url": f"http://synthetic.local/{split}/{image_id:06d}.png",
                # Every object is annotated: no class is "not exhaustive", and every absent
                # class is a verified negative (its detections count as false positives).
                "not_exhaustive_category_ids": [],
                "neg_category_ids": sorted(all_ids - present),
            }
        )
    return images, annotations


def generate_lvis_synthetic(
    root: str,
    *,
    num_classes: int = 36,
    num_frequent: int = 8,
    num_common: int = 14,
    frequent_range: Tuple[int, int] = (120, 240),
    val_instances_per_class: int = 8,
    image_size: int = 64,
    object_size: Tuple[int, int] = (14, 26),
    max_objects_per_image: int = 3,
    seed: int = 0,
) -> Dict[str, object]:
    """Write the train and val splits under ``root``.

    Args:
        root (str): output folder.
        num_classes (int): K <= 36 (colour x shape combinations).
        num_frequent, num_common (int): classes in those groups; the rest are rare.
        frequent_range (tuple): (min, max) training images of a frequent class (min > 100).
        val_instances_per_class (int): instances of every class in the val split.
        image_size (int): square image side in pixels.
        object_size (tuple): (min, max) object side in pixels.
        max_objects_per_image (int): objects per image are 1..this (distinct classes).
        seed (int): everything is determined by it.

    Returns:
        dict: paths ("train_json", "val_json", "image_root"), "class_names" (K,) and
        "train_image_counts" (K,).
    """
    specs = [(c, s) for s in SHAPES for c in COLOURS]
    if not 3 <= num_classes <= len(specs):
        raise ValueError(f"num_classes must be in [3, {len(specs)}], got {num_classes}")
    rng = random.Random(seed)
    rng.shuffle(specs)
    specs = specs[:num_classes]
    names = [f"{colour}_{shape}" for colour, shape in specs]
    if frequent_range[0] <= 100:
        raise ValueError(f"frequent classes need > 100 images, got frequent_range={frequent_range}")
    counts = long_tail_counts(num_classes, num_frequent, num_common, seed, frequent_range)

    train_tokens = [c for c, n in enumerate(counts) for _ in range(n)]
    val_tokens = [c for c in range(num_classes) for _ in range(val_instances_per_class)]
    out = {}
    for split, tokens in (("train", train_tokens), ("val", val_tokens)):
        image_classes = _pack(tokens, max_objects_per_image, rng)
        images, annotations = _draw_split(
            split, image_classes, specs, root, image_size, object_size, rng
        )
        split_counts = [0] * num_classes
        for classes in image_classes:
            for c in classes:
                split_counts[c] += 1
        categories = [
            {
                "id": i + 1,
                "name": names[i],
                "synonyms": [names[i]],
                "def": f"a {specs[i][0]} {specs[i][1]}",
                "synset": f"{names[i]}.n.01",
                # LVIS's groups come from the training image counts in every split's json.
                "frequency": "r" if counts[i] <= 10 else ("c" if counts[i] <= 100 else "f"),
                "image_count": split_counts[i],
                "instance_count": split_counts[i],
            }
            for i in range(num_classes)
        ]
        path = os.path.join(root, f"lvis_synth_{split}.json")
        with open(path, "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
        out[f"{split}_json"] = path
    out.update(
        image_root=os.path.join(root, "images", ""), class_names=names, train_image_counts=counts
    )
    return out
