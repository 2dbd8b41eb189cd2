"""A seeded, small, long-tailed semantic segmentation dataset in ADE20K's format.

Layout (as ADE20K in mmseg)::

    root/images/{training,validation}/NNNNN.jpg      RGB images
    root/annotations/{training,validation}/NNNNN.png label maps, 0 = unlabelled, c+1 = class c

so it is read with ``reduce_zero_label=True`` (0 becomes the ignore label 255, c+1 becomes c).

Every class has its own colour and texture (stripes of a class-specific period and
direction), so a small network can recognise it. Class pixel shares span ADE20K's groups:
- head (> 1% of the labelled training pixels): backgrounds that fill image regions;
- body (0.1% - 1%): objects in a fraction of the images;
- tail (< 0.1%): objects in only a few training images.
Head classes are greyish textures, body and tail classes saturated colours; what makes an
instance-balanced model ignore the rare ones is only how few pixels they have. The validation
split shows every class in several images, so that each class's IoU is measured.
"""

from __future__ import annotations

import colorsys
import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

__all__ = ["SyntheticLongTailSpec", "DEFAULT_SPEC", "generate_ade20k_synthetic", "class_palette"]


class SyntheticLongTailSpec:
    """Sizes of the synthetic dataset.

    Args:
        num_head (int): background classes (head).
        num_body (int): classes present in ``body_image_share`` of the training images.
        num_tail (int): classes present in ``tail_train_images`` training images each.
        image_size (int): square image side in pixels.
        num_train (int), num_val (int): images per split.
    """

    def __init__(
        self,
        num_head: int = 4,
        num_body: int = 4,
        num_tail: int = 6,
        image_size: int = 64,
        num_train: int = 160,
        num_val: int = 48,
        body_image_share: float = 0.12,
        tail_train_images: int = 2,
        object_size: Sequence[int] = (12, 20),
    ):
        self.num_head, self.num_body, self.num_tail = num_head, num_body, num_tail
        self.image_size = image_size
        self.num_train, self.num_val = num_train, num_val
        self.body_image_share = body_image_share
        self.tail_train_images = tail_train_images
        self.object_size = tuple(object_size)

    @property
    def num_classes(self) -> int:
        return self.num_head + self.num_body + self.num_tail

    def class_names(self) -> List[str]:
        return (
            [f"head{i}" for i in range(self.num_head)]
            + [f"body{i}" for i in range(self.num_body)]
            + [f"tail{i}" for i in range(self.num_tail)]
        )


DEFAULT_SPEC = SyntheticLongTailSpec()


def _appearances(spec: SyntheticLongTailSpec, rng: np.random.Generator) -> List[Dict]:
    """Colour (RGB in [0, 1]) and stripe texture of every class."""
    looks = []
    # Head classes: greyish backgrounds told apart by brightness and stripe direction/period.
    for i in range(spec.num_head):
        grey = 0.3 + 0.5 * i / max(1, spec.num_head - 1)
        looks.append(
            dict(
                rgb=np.array([grey, grey * 0.95, grey * 0.9]),
                period=3 + i % 3,
                vertical=bool(i % 2),
            )
        )
    # Body and tail classes: saturated colours of evenly spaced hues, each with its texture.
    n_obj = spec.num_body + spec.num_tail
    for j in range(n_obj):
        hue = j / n_obj
        looks.append(
            dict(
                rgb=np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.9)),
                period=2 + j % 4,
                vertical=bool(j % 2),
            )
        )
    return looks


def class_palette(num_classes: int) -> List[List[int]]:
    """A distinct display colour per class (mmseg's ``palette`` metainfo)."""
    return [
        [int(255 * c) for c in colorsys.hsv_to_rgb(i / num_classes, 0.9, 0.9)]
        for i in range(num_classes)
    ]


def _paint(
    img: np.ndarray,
    lab: np.ndarray,
    mask: np.ndarray,
    cls: int,
    look: Dict,
    rng: np.random.Generator,
) -> None:
    h, w = mask.shape
    coord = (
        np.arange(w)[None, :].repeat(h, 0)
        if look["vertical"]
        else np.arange(h)[:, None].repeat(w, 1)
    )
    stripes = ((coord // look["period"]) % 2).astype(np.float32)[..., None]
    colour = look["rgb"][None, None, :] * (0.75 + 0.25 * stripes)
    noise = rng.normal(0, 0.06, size=(h, w, 3))
    img[mask] = np.clip(colour + noise, 0, 1)[mask]
    lab[mask] = cls + 1  # ADE20K format: 0 is "unlabelled"


def _blob(size: int, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    """Boolean mask of an ellipse or a rectangle at a random place."""
    mask = np.zeros((size, size), bool)
    bh, bw = rng.integers(lo, hi + 1, size=2)
    y, x = rng.integers(0, size - bh + 1), rng.integers(0, size - bw + 1)
    if rng.random() < 0.5:
        mask[y : y + bh, x : x + bw] = True
    else:
        yy, xx = np.mgrid[:bh, :bw]
        mask[y : y + bh, x : x + bw] = ((yy - (bh - 1) / 2) / (bh / 2)) ** 2 + (
            (xx - (bw - 1) / 2) / (bw / 2)
        ) ** 2 <= 1
    return mask


def _image(spec, looks, objects: List[int], rng) -> (np.ndarray, np.ndarray):
    s = spec.image_size
    img = np.zeros((s, s, 3), np.float32)
    lab = np.zeros((s, s), np.uint8)
    # Background: two head classes split by a random horizontal or vertical line.
    a, b = rng.choice(spec.num_head, size=2, replace=False)
    cut = rng.integers(s // 4, 3 * s // 4)
    first = np.zeros((s, s), bool)
    if rng.random() < 0.5:
        first[:cut] = True
    else:
        first[:, :cut] = True
    _paint(img, lab, first, int(a), looks[a], rng)
    _paint(img, lab, ~first, int(b), looks[b], rng)
    for cls in objects:
        _paint(img, lab, _blob(s, rng, *spec.object_size), cls, looks[cls], rng)
    # A thin unlabelled frame, ignored after reduce_zero_label (as ADE20K's "other").
    lab[0, :] = 0
    lab[:, 0] = 0
    return (img * 255).astype(np.uint8), lab


def generate_ade20k_synthetic(
    root: str, spec: SyntheticLongTailSpec = DEFAULT_SPEC, seed: int = 0
) -> Dict:
    """Write the dataset under ``root`` (same ``seed`` and ``spec``: same files).

    Returns:
        dict: ``classes`` (K names), ``palette``, ``root``, ``num_train``, ``num_val``.
    """
    rng = np.random.default_rng(seed)
    looks = _appearances(spec, rng)
    body = list(range(spec.num_head, spec.num_head + spec.num_body))
    tail = list(range(spec.num_head + spec.num_body, spec.num_classes))

    train_objects: List[List[int]] = [[] for _ in range(spec.num_train)]
    for i in range(spec.num_train):
        train_objects[i] = [c for c in body if rng.random() < spec.body_image_share]
    for c in tail:
        for i in rng.choice(spec.num_train, size=spec.tail_train_images, replace=False):
            train_objects[i].append(c)
    # Validation: every non-head class in about a quarter of the images.
    val_objects = [[c for c in body + tail if rng.random() < 0.25] for _ in range(spec.num_val)]

    for split, objects in (("training", train_objects), ("validation", val_objects)):
        img_dir = os.path.join(root, "images", split)
        ann_dir = os.path.join(root, "annotations", split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i, objs in enumerate(objects):
            img, lab = _image(spec, looks, objs, rng)
            name = f"{split[0]}{i:05d}"
            Image.fromarray(img).save(os.path.join(img_dir, name + ".jpg"), quality=95)
            Image.fromarray(lab).save(os.path.join(ann_dir, name + ".png"))
    names = spec.class_names()
    return dict(
        classes=names,
        palette=class_palette(len(names)),
        root=root,
        num_train=spec.num_train,
        num_val=spec.num_val,
    )
