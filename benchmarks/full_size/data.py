"""Generated data of full size, laid out where the shipped configs look for it: LVIS v0.5 / v1
(detectron2's builtin datasets, the real class lists), ADE20K (mmseg's layout, its 150 classes)
and the long-tail classification split files (ImageNet-LT, iNaturalist 2018, Places-LT).

Content does not matter for the cost measurement, size and classes do: images are flat shapes
of the dataset's image size. Each generator writes a marker file when done and returns at once
if it is there (same arguments, same seed: the same files).

Not shared with ``disalign_demo``'s generators: those draw learnable shapes (polygons, stripes,
masks, with noise) into small images from their own random streams; these draw flat
rectangles at full size with PIL, so no drawing function fits both without changing one or the
other's files.
"""

from __future__ import annotations

import json
import os
from typing import List

from .families import ROOT

# ADE20K's objectInfo150.txt (class pixel ratios; names as the dataset's release)
ADE20K_OBJECT_INFO = os.path.join(ROOT, "tests", "seg", "data", "objectInfo150.txt")

# LVIS images are resized to a shorter side of 640..800 (at most 1333): generate the largest.
LVIS_IMAGE_HW = (800, 1333)
# ADE20K images are resized to (2048, 512) with their ratio kept, then cropped to 512 x 512.
ADE20K_IMAGE_HW = (512, 683)

# The long-tail split files the classification configs read ('path label' lines): their names,
# classes, largest and smallest class of the real training list, the real images per class of
# the evaluation lists, and an image size typical of the dataset.
CLS_DATASETS = {
    "imagenet-lt": dict(
        root="data/imagenet", classes=1000, largest=1280, smallest=5, image_hw=(375, 500),
        train="ImageNet_LT_train.txt", evaluation={"ImageNet_LT_val.txt": 20, "ImageNet_LT_test.txt": 50},
    ),
    "inat2018": dict(
        root="data/inat2018", classes=8142, largest=1000, smallest=2, image_hw=(600, 800),
        train="iNaturalist18_train.txt", evaluation={"iNaturalist18_val.txt": 3},
    ),
    "places-lt": dict(
        root="data/places365", classes=365, largest=4980, smallest=5, image_hw=(256, 256),
        train="Places_LT_train.txt", evaluation={"Places_LT_val.txt": 20, "Places_LT_test.txt": 100},
    ),
}  # fmt: skip


def _shapes_image(h: int, w: int, boxes, colours, rng):
    """An RGB (h, w) PIL image of flat rectangles ``boxes`` ((x, y, width, height) each) in
    ``colours`` ((N, 3) ints) on a background colour drawn from ``rng`` (compresses well;
    content does not matter for cost)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for (x, y, bw, bh), c in zip(boxes, colours):
        draw.rectangle([x, y, x + bw, y + bh], fill=tuple(int(v) for v in c))
    return img


def _lvis_categories(version: str) -> List[dict]:
    """LVIS categories with detectron2's own metadata (ids 1..K, names, frequency group)."""
    if version == "LVISv1":
        from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES
        from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT

        counts = {c["id"]: c["image_count"] for c in LVIS_CATEGORY_IMAGE_COUNT}
    else:
        from detectron2.data.datasets.lvis_v0_5_categories import LVIS_CATEGORIES

        counts = {}
    cats = []
    for c in sorted(LVIS_CATEGORIES, key=lambda c: c["id"]):
        cats.append(
            dict(
                id=c["id"], name=c["name"], synset=c["synset"], synonyms=c["synonyms"],
                frequency=c["frequency"], image_count=counts.get(c["id"], 0), instance_count=0,
            )
        )  # fmt: skip
    return cats


def _lvis_split(cats, split_folder, num_images, first_id, per_image, rng, image_dir, every_class):
    """Images and annotations of one generated LVIS split.

    ``every_class``: LVIS v0.5's config counts class frequencies from its training set
    (detectron2 keeps no v0.5 counts), so its generated training set holds every class in
    1 (rare), 2 (common) or 3 (frequent) images, i.e. ordered as LVIS's groups.
    """
    h, w = LVIS_IMAGE_HW
    if every_class:
        times = {"r": 1, "c": 2, "f": 3}
        pairs = [c["id"] for c in cats for _ in range(times[c["frequency"]])]
        rng.shuffle(pairs)
        per_img = [[] for _ in range(num_images)]
        for i, cid in enumerate(pairs):
            per_img[i % num_images].append(cid)
        # a class twice in one image still counts one image: spread as evenly as possible
    else:
        per_img = [list(rng.choice([c["id"] for c in cats], per_image)) for _ in range(num_images)]
    images, anns = [], []
    for k, cids in enumerate(per_img):
        image_id = first_id + k
        n = len(cids)
        cols = int(max(1, round((n * w / h) ** 0.5)))
        rows = (n + cols - 1) // cols
        cell_w, cell_h = w / cols, h / rows
        boxes = []
        for j, cid in enumerate(cids):
            cx, cy = (j % cols) * cell_w, (j // cols) * cell_h
            bw = float(cell_w * rng.uniform(0.5, 0.9))
            bh = float(cell_h * rng.uniform(0.5, 0.9))
            x, y = float(cx + rng.uniform(0, cell_w - bw)), float(cy + rng.uniform(0, cell_h - bh))
            boxes.append((x, y, bw, bh))
            anns.append(
                dict(
                    id=len(anns) + first_id * 1000 + 1, image_id=image_id, category_id=int(cid),
                    bbox=[x, y, bw, bh], area=bw * bh,
                    segmentation=[[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
                )
            )  # fmt: skip
        file_name = f"{image_id:012d}.jpg"
        img = _shapes_image(h, w, boxes, rng.integers(0, 255, (len(boxes), 3)), rng)
        img.save(os.path.join(image_dir, split_folder, file_name), quality=90)
        images.append(
            dict(
                id=image_id, height=h, width=w, neg_category_ids=[], not_exhaustive_category_ids=[],
                coco_url=f"http://images.cocodataset.org/{split_folder}/{file_name}",
            )
        )  # fmt: skip
    return images, anns


def generate_lvis(out: str, version: str, num_train: int, num_val: int, seed: int = 0) -> None:
    """``<out>/datasets/lvis/lvis_{v0.5,v1}_{train,val}.json`` and images under
    ``<out>/datasets/coco/{train2017,val2017}``, as detectron2's builtin LVIS datasets expect."""
    import numpy as np

    tag = {"LVISv0.5": "v0.5", "LVISv1": "v1"}[version]
    root = os.path.join(out, "datasets")
    done = os.path.join(root, "lvis", f".generated_{tag}_{num_train}_{num_val}")
    if os.path.exists(done):
        return
    rng = np.random.default_rng(seed)
    coco = os.path.join(root, "coco")
    for split in ("train2017", "val2017"):
        os.makedirs(os.path.join(coco, split), exist_ok=True)
    os.makedirs(os.path.join(root, "lvis"), exist_ok=True)
    cats = _lvis_categories(version)
    base = 100000 if tag == "v1" else 200000
    splits = {
        "train": _lvis_split(cats, "train2017", num_train, base, 12, rng, coco, tag == "v0.5"),
        "val": _lvis_split(cats, "val2017", num_val, base + 50000, 12, rng, coco, False),
    }
    for split, (images, anns) in splits.items():
        with open(os.path.join(root, "lvis", f"lvis_{tag}_{split}.json"), "w") as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
    open(done, "w").close()


def generate_ade20k(out: str, num_train: int, num_val: int, seed: int = 0) -> None:
    """``<out>/data/ade/ADEChallengeData2016``: images, label maps (0 = unlabelled, class c
    stored as c + 1, the 150 classes of mmseg's ADE20KDataset) and ADE20K's own
    ``objectInfo150.txt`` (its pixel ratios), as the ADE20K configs expect."""
    import shutil

    import numpy as np
    from PIL import Image

    root = os.path.join(out, "data", "ade", "ADEChallengeData2016")
    done = os.path.join(root, f".generated_{num_train}_{num_val}")
    if os.path.exists(done):
        return
    os.makedirs(root, exist_ok=True)
    shutil.copy(ADE20K_OBJECT_INFO, os.path.join(root, "objectInfo150.txt"))
    rng = np.random.default_rng(seed)
    h, w = ADE20K_IMAGE_HW
    for split, n in (("training", num_train), ("validation", num_val)):
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        os.makedirs(os.path.join(root, "annotations", split), exist_ok=True)
        for k in range(n):
            label = np.zeros((h, w), np.uint8)
            for _ in range(40):
                y, x = rng.integers(0, h - 32), rng.integers(0, w - 32)
                label[y : y + rng.integers(16, 200), x : x + rng.integers(16, 200)] = rng.integers(
                    1, 151
                )
            palette = rng.integers(0, 255, (256, 3), dtype=np.uint8)
            Image.fromarray(palette[label]).save(
                os.path.join(root, "images", split, f"ADE_{split}_{k:08d}.jpg"), quality=90
            )
            Image.fromarray(label).save(
                os.path.join(root, "annotations", split, f"ADE_{split}_{k:08d}.png")
            )
    open(done, "w").close()


def generate_cls(out: str, dataset: str, seed: int = 0) -> None:
    """``<out>/<root>/`` of a long-tail classification config: its split files ('path label'
    lines, MMPretrain's ``CustomDataset`` format) and the images they name.

    The training list has the real dataset's number of classes, every one present, with
    images per class decaying exponentially from the real list's largest class to its smallest
    (the real extremes, not the real counts: 1280..5 for ImageNet-LT gives 230K lines against
    115.8K), so the many/medium/few groups all exist; the evaluation lists have the real
    images per class. The lines name 16 generated images of a size typical of the dataset
    (what the configs' resize and crop see; content does not matter). Training lines are
    shuffled; evaluation lines take the many, medium and few classes in turn, so that the
    first images of a list (``--cls-val-images``) hold every group.
    """
    import numpy as np

    from disalign_core import CLASSIFICATION_COUNT_BINS, groups_by_count

    spec = CLS_DATASETS[dataset]
    root = os.path.join(out, spec["root"])
    done = os.path.join(root, ".generated")
    if os.path.exists(done):
        return
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    h, w = spec["image_hw"]
    paths = []
    for k in range(16):
        boxes = [(int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2)), w // 3, h // 3)]
        img = _shapes_image(h, w, boxes, rng.integers(0, 255, (1, 3)), rng)
        paths.append(f"images/{k:02d}.jpg")
        img.save(os.path.join(root, paths[-1]), quality=90)
    k = spec["classes"]
    decay = np.log(spec["largest"] / spec["smallest"]) / (k - 1)
    counts = np.round(spec["largest"] * np.exp(-decay * np.arange(k))).astype(int)
    counts = counts[rng.permutation(k)]  # the frequent classes are not the first ids

    def write(name, labels):
        with open(os.path.join(root, name), "w") as f:
            f.writelines(f"{paths[i % len(paths)]} {y}\n" for i, y in enumerate(labels))

    write(spec["train"], rng.permutation(np.repeat(np.arange(k), counts)))
    groups = np.asarray(groups_by_count(counts.tolist(), *CLASSIFICATION_COUNT_BINS))
    for name, per_class in spec["evaluation"].items():
        by_group = [
            rng.permutation(np.repeat(np.flatnonzero(groups == g), per_class))
            for g in CLASSIFICATION_COUNT_BINS[1]
        ]
        turns = np.concatenate([np.arange(len(b)) * 3 + i for i, b in enumerate(by_group)])
        write(name, np.concatenate(by_group)[np.argsort(turns, kind="stable")])
    open(done, "w").close()
