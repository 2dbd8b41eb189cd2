#!/usr/bin/env python
"""Every shipped LVIS, ADE20K and long-tail classification config family, run at full size on CPU.

For each family (LVIS v0.5 and v1 x Mask / Cascade Mask R-CNN x linear / cosine head, ADE20K x
FCN / DeepLabV3+, with the backbone asked for, R-50 by default; ImageNet-LT ResNeXt-50 x linear /
cosine head, iNaturalist 2018 ResNet-50, Places-LT ResNet-152, each with its own backbone):

1. generated data of the config's size and the dataset's real class list (1230 / 1203 LVIS
   classes from detectron2's own LVIS metadata, the 150 ADE20K classes of mmseg's
   ``ADE20KDataset``; 1000 / 8142 / 365 classes in the long-tail split-file format, see
   ``generate_cls``), laid out where the configs look for it;
2. stage 1 with the shipped stage-1 config for a few iterations, through the user's entry
   point (``projects/DisAlign/train_net.py``; the stock ``tools/train.py`` of mmseg and
   MMPretrain), which writes a checkpoint and evaluates it with the config's evaluator
   (``LVISEvaluator``; ``LongTailIoUMetric``; ``LongTailAccuracy``);
3. stage 2 with the shipped stage-2 config from that checkpoint, then its evaluation;
4. (unless ``--no-timing``) cost at full size, each measurement in a fresh process, on one
   batch of the config's train loader and the stage-1 checkpoint: a stage-1 training
   iteration, a stage-2 (calibration) training iteration, and the floor of stage 2: the
   stage-2 model's training forward (losses included) under ``torch.no_grad()``. Median time
   and peak memory (rise of the process's peak RSS; see ``common.py``).

Only these settings differ from the shipped configs, and the script prints them:
- data paths: every run's working directory is ``--out``; detectron2 reads
  ``$DETECTRON2_DATASETS=<out>/datasets`` (its builtin ``lvis_v0.5_*`` / ``lvis_v1_*`` names),
  mmseg and MMPretrain the configs' own ``data/...`` folders under it; stage 2 reads the stage-1
  checkpoint that the stage-1 run wrote (detectron2: the config's own ``MODEL.WEIGHTS`` path;
  mmseg, MMPretrain: the stage-1 checkpoint option);
- iteration counts (``--iters``; the checkpoint and the evaluation come at the last one; the
  configs' LR warm-up is kept, so these few iterations train at a small LR). The epoch-based
  classification configs run one epoch of the first ``--iters`` x batch images of their
  training list (mmengine's ``dataset.indices``) and validate on the first
  ``--cls-val-images`` of their val list; the class counts of the GRW loss and the metric are
  those of the whole training list;
- the ImageNet initialisation (no hub access here): stage 1 starts from random weights
  (detectron2: with FrozenBN statistics set from one generated batch, ``det_init_weights``;
  Places-LT's ResNet-152: PyTorch's default initialisation instead of MMPretrain's ImageNet
  checkpoint);
- detectron2's ``MODEL.DEVICE`` (the configs leave detectron2's default, cuda): cpu here;
- detectron2's ``SOLVER.IMS_PER_BATCH`` 16 is the batch of all 8 GPUs the LVIS schedules are
  written for: one process runs one GPU's share (``--det-images-per-process``, default 2).
  mmseg's and MMPretrain's ``batch_size`` is already per GPU and is kept (unless
  ``--cls-images-per-process`` is given).

Usage::

    python benchmarks/full_size_configs.py --out output/full_size [--family NAME ...]
        [--backbone R_50 R_101 X_101_32x8d] [--iters 2] [--time-iters 2] [--no-timing]

(``--backbone`` chooses among the detection and segmentation configs; each classification
family has one backbone, its config's.)

It writes ``<out>/full_size_results.json`` and a markdown table ``full_size_results.md``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

from common import peak_memory_since, reset_peak_memory, run_isolated

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "projects", "DisAlign", "train_net.py")
# ADE20K's objectInfo150.txt (class pixel ratios; names as the dataset's release)
ADE20K_OBJECT_INFO = os.path.join(ROOT, "tests", "seg", "data", "objectInfo150.txt")

DET_BACKBONES = {"R_50": "R_50", "R_101": "R_101", "X_101_32x8d": "X_101_32x8d"}
SEG_BACKBONES = {"R_50": "r50", "R_101": "r101", "X_101_32x8d": None}  # mmseg ships no X-101 here

# LVIS images are resized to a shorter side of 640..800 (at most 1333): generate the largest.
LVIS_IMAGE_HW = (800, 1333)
# ADE20K images are resized to (2048, 512) with their ratio kept, then cropped to 512 x 512.
ADE20K_IMAGE_HW = (512, 683)


# Classification: each family's stage-1 and stage-2 config (configs/mmpretrain) and backbone.
CLS_FAMILIES = {
    "ImageNet-LT/resnext50": ("imagenet-lt", "resnext50-32x4d", "X-50-32x4d"),
    "ImageNet-LT/resnext50_cos": ("imagenet-lt", "resnext50-32x4d-cos", "X-50-32x4d"),
    "iNat2018/resnet50": ("inat2018", "resnet50", "R-50"),
    "Places-LT/resnet152": ("places-lt", "resnet152", "R-152"),
}
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


def families() -> Dict[str, dict]:
    """Family name -> which framework, and how to find its configs for a backbone."""
    out = {}
    for version in ("LVISv0.5", "LVISv1"):
        for arch in ("mask_rcnn", "cascade_mask_rcnn"):
            for head in ("", "_cos"):
                out[f"{version}/{arch}{head}"] = dict(
                    framework="det", version=version, arch=arch, head=head
                )
    for algo in ("fcn", "deeplabv3plus"):
        out[f"ADE20K/{algo}"] = dict(framework="seg", algo=algo)
    for name, (dataset, model, backbone) in CLS_FAMILIES.items():
        out[name] = dict(framework="cls", dataset=dataset, model=model, backbone=backbone)
    return out


def config_paths(family: dict, backbone: str) -> Optional[Dict[str, str]]:
    """Stage-1 and stage-2 config of a family for a backbone (None if not shipped)."""
    if family["framework"] == "det":
        d = os.path.join(ROOT, "configs", "detectron2", family["version"])
        name = f"{family['arch']}_{DET_BACKBONES[backbone]}_FPN_1x{family['head']}.yaml"
        return dict(stage1=os.path.join(d, name), stage2=os.path.join(d, "disalign_" + name))
    if family["framework"] == "cls":
        pattern = os.path.join(ROOT, "configs", "mmpretrain", "{}{}_4xb64-*_{}.py")
        stage1 = glob.glob(pattern.format("", family["model"], family["dataset"]))
        stage2 = glob.glob(pattern.format("disalign_", family["model"], family["dataset"]))
    else:
        bb = SEG_BACKBONES[backbone]
        if bb is None:
            return None
        d = os.path.join(ROOT, "configs", "mmseg")
        stage1 = glob.glob(os.path.join(d, f"{family['algo']}_{bb}-d8_4xb4-160k_ade20k-512x512.py"))
        stage2 = glob.glob(
            os.path.join(d, f"disalign_{family['algo']}_{bb}-d8_*-8k_ade20k-512x512.py")
        )
    if len(stage1) != 1 or len(stage2) != 1:
        raise FileNotFoundError(f"expected one stage-1 and one stage-2 config for {family}, "
                                f"found {stage1} and {stage2}")  # fmt: skip
    return dict(stage1=stage1[0], stage2=stage2[0])


def family_backbones(family: dict, asked: List[str]) -> List[str]:
    """The backbones a family runs with: the ones asked for, or a classification config's own."""
    return [family["backbone"]] if family["framework"] == "cls" else asked


# ----------------------------------------------------------------------------- generated data
def _shapes_image(h: int, w: int, boxes, colours, rng):
    """An RGB image of flat shapes (compresses well; content does not matter for cost)."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for (x, y, bw, bh), c in zip(boxes, colours):
        draw.rectangle([x, y, x + bw, y + bh], fill=tuple(int(v) for v in c))
    return np.asarray(img), img


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
        _, img = _shapes_image(h, w, boxes, rng.integers(0, 255, (len(boxes), 3)), rng)
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
        _, img = _shapes_image(h, w, boxes, rng.integers(0, 255, (1, 3)), rng)
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


# ----------------------------------------------------------------------------- the runs
def _run(cmd: List[str], cwd: str, env: dict, log_path: str) -> str:
    """Run a command, its output to ``log_path``; raise with the log's tail if it fails."""
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    text = open(log_path).read()
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}) after {time.time() - start:.0f} s: "
            f"{' '.join(cmd)}\n--- last lines of {log_path}:\n" + "\n".join(text.splitlines()[-40:])
        )
    return text


def _det_copypaste(log: str) -> Dict[str, Dict[str, float]]:
    """detectron2's ``copypaste:`` lines of the last evaluation -> {task: {metric: value}}."""
    out, lines = {}, [
        ln.split("copypaste: ", 1)[1] for ln in log.splitlines() if "copypaste: " in ln
    ]
    for i in range(len(lines) - 2):
        m = re.match(r"Task: (\w+)", lines[i])
        if m:
            keys, values = lines[i + 1].split(","), lines[i + 2].split(",")
            out[m.group(1)] = {k: float(v) for k, v in zip(keys, values)}
    return out


def det_env(out: str) -> dict:
    return dict(os.environ, DETECTRON2_DATASETS=os.path.join(out, "datasets"), PYTHONUNBUFFERED="1")


def det_overrides(args, stage: int) -> List[str]:
    import torch

    opts = [
        "SOLVER.MAX_ITER", str(args.iters),
        "SOLVER.IMS_PER_BATCH", str(args.det_images_per_process),
        "SOLVER.CHECKPOINT_PERIOD", str(args.iters),
        "TEST.EVAL_PERIOD", "0",
        "MODEL.DEVICE", "cuda" if torch.cuda.is_available() else "cpu",
    ]  # fmt: skip
    return opts


def det_init_weights(stage1_cfg: str, out: str, init_file: str, args) -> None:
    """Stands in for the ImageNet initialisation, which cannot be downloaded here.

    Random ResNet weights behind detectron2's FrozenBN (statistics 0 / 1) blow activations up
    by orders of magnitude, so the untrained detector scores no box above the LVIS threshold
    and the evaluator has nothing to evaluate. As a pretrained backbone would, the frozen
    statistics here normalise each layer: one forward pass over a generated batch sets every
    FrozenBN's mean and variance to those of its input. Only the backbone is written, like an
    ImageNet checkpoint.
    """
    import torch
    from detectron2.config import get_cfg
    from detectron2.data import build_detection_train_loader
    from detectron2.layers import FrozenBatchNorm2d
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng

    from disalign_det import add_disalign_config

    os.chdir(out)
    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(stage1_cfg)
    cfg.merge_from_list(det_overrides(args, 1) + ["DATALOADER.NUM_WORKERS", "0"])
    seed_all_rng(0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = next(iter(build_detection_train_loader(cfg)))

    def set_statistics(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    backbone = model.backbone.bottom_up
    hooks = [
        m.register_forward_pre_hook(set_statistics)
        for m in backbone.modules()
        if isinstance(m, FrozenBatchNorm2d)
    ]
    with torch.no_grad():
        backbone(model.preprocess_image(batch).tensor)
    for h in hooks:
        h.remove()
    state = {f"backbone.bottom_up.{k}": v for k, v in backbone.state_dict().items()}
    torch.save({"model": state, "__author__": "full_size_configs.py"}, init_file)


def run_det_family(name: str, cfgs: dict, args, out: str) -> dict:
    family = families()[name]
    generate_lvis(out, family["version"], args.det_train_images, args.det_val_images)
    env, res = det_env(out), {}
    init_file = os.path.join(out, "logs", f"{_slug(name, cfgs)}_init.pth")
    me = os.path.abspath(__file__)
    argv = [me, "--worker", "det", "init", cfgs["stage1"], cfgs["stage2"], init_file, "", "--out", out,
            "--iters", str(args.iters), "--det-images-per-process", str(args.det_images_per_process)]  # fmt: skip
    subprocess.run([sys.executable, *argv], check=True, env=env)
    for stage in (1, 2):
        cmd = [
            sys.executable,
            TRAIN_NET,
            "--config-file",
            cfgs[f"stage{stage}"],
            *det_overrides(args, stage),
        ]
        if stage == 1:
            cmd += ["MODEL.WEIGHTS", init_file]
        log_path = os.path.join(out, "logs", f"{_slug(name, cfgs)}_stage{stage}.log")
        start = time.time()
        log = _run(cmd, out, env, log_path)
        res[f"stage{stage}"] = dict(
            command=" ".join(cmd[1:]),
            seconds=round(time.time() - start, 1),
            metrics=_det_copypaste(log),
        )
        metrics = res[f"stage{stage}"]["metrics"]
        # LVISEvaluator returns NaN when the model predicted nothing: then nothing was evaluated.
        for task in ("bbox", "segm"):
            values = [
                metrics.get(task, {}).get(k, float("nan")) for k in ("AP", "APr", "APc", "APf")
            ]
            if not all(v == v for v in values):
                raise RuntimeError(f"{name} stage {stage}: no LVIS {task} metrics in {log_path}")
    return res


# The OpenMMLab frameworks: package (its .mim/tools and default scope), plugin, the checkpoint
# the stage-1 run writes, the validation line of the log, and the metrics it must hold.
MM_FRAMEWORKS = {
    "seg": dict(
        package="mmseg", plugin="disalign_seg", checkpoint="iter_{iters}.pth",
        val_line="Iter(val)", required=("mIoU", "tail_mIoU"),
    ),
    "cls": dict(
        package="mmpretrain", plugin="disalign_cls", checkpoint="epoch_1.pth",
        val_line="Epoch(val)",
        required=("accuracy/top1", "accuracy/many_top1", "accuracy/medium_top1", "accuracy/few_top1"),
    ),
}  # fmt: skip


def mm_overrides(framework: str, stage1_cfg: str, args) -> List[str]:
    """``--cfg-options`` of an mmseg or MMPretrain run (the overrides in the docstring)."""
    n = args.iters
    if framework == "seg":
        return [
            f"train_cfg.max_iters={n}",
            f"train_cfg.val_interval={n}",
            f"default_hooks.checkpoint.interval={n}",
            "default_hooks.logger.interval=1",
            # no ImageNet initialisation here (open-mmlab://resnet50_v1c needs a download)
            "model.pretrained=None",
        ]
    from mmengine.config import Config

    stage1 = Config.fromfile(stage1_cfg)
    batch = args.cls_images_per_process or stage1.train_dataloader.batch_size
    opts = [
        "train_cfg.max_epochs=1",
        "train_cfg.val_interval=1",
        "default_hooks.checkpoint.interval=1",
        "default_hooks.logger.interval=1",
        f"train_dataloader.batch_size={batch}",
        f"train_dataloader.dataset.indices={n * batch}",
        f"val_dataloader.dataset.indices={args.cls_val_images}",
    ]
    if (stage1.model.backbone.get("init_cfg") or {}).get("type") == "Pretrained":
        opts.append("model.backbone.init_cfg=None")  # the ImageNet checkpoint needs a download
    return opts


def _mm_metrics(log: str, val_line: str, metric: str) -> Dict[str, float]:
    """The last validation line of an mmengine log with ``metric`` -> {metric: value}."""
    found = {}
    for line in log.splitlines():
        if val_line in line and f" {metric}: " in line:
            found = {
                k: float(v)
                for k, v in re.findall(r"([\w/]+): (-?[\d.]+|nan)", line.split(val_line)[1])
            }
    return found


def run_mm_family(name: str, cfgs: dict, args, out: str) -> dict:
    """Stage 1 and stage 2 with the framework's stock tools/train.py (mmseg or MMPretrain)."""
    import importlib

    family = families()[name]
    fw = MM_FRAMEWORKS[family["framework"]]
    package = importlib.import_module(fw["package"])
    tools = os.path.join(os.path.dirname(package.__file__), ".mim", "tools")
    if family["framework"] == "seg":
        generate_ade20k(out, args.seg_train_images, args.seg_val_images)
    else:
        generate_cls(out, family["dataset"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = {}
    work1 = os.path.join(out, "work_dirs", _slug(name, cfgs) + "_stage1")
    work2 = os.path.join(out, "work_dirs", _slug(name, cfgs) + "_stage2")
    ckpt1 = os.path.join(work1, fw["checkpoint"].format(iters=args.iters))
    overrides = mm_overrides(family["framework"], cfgs["stage1"], args)
    for stage, cfg, work, extra in (
        (1, cfgs["stage1"], work1, []),
        (2, cfgs["stage2"], work2, [f"model.stage1_checkpoint={ckpt1}"]),
    ):
        cmd = [sys.executable, os.path.join(tools, "train.py"), cfg, "--work-dir", work,
               "--cfg-options", *overrides, *extra]  # fmt: skip
        log_path = os.path.join(out, "logs", f"{_slug(name, cfgs)}_stage{stage}.log")
        start = time.time()
        log = _run(cmd, out, env, log_path)
        metrics = _mm_metrics(log, fw["val_line"], fw["required"][0])
        if not all(metrics.get(k, float("nan")) == metrics.get(k) for k in fw["required"]):
            raise RuntimeError(f"{name} stage {stage}: no long-tail metrics in {log_path}")
        res[f"stage{stage}"] = dict(
            command=" ".join(cmd[1:]), seconds=round(time.time() - start, 1), metrics=metrics
        )
    res["stage1_checkpoint"] = ckpt1
    return res


def _slug(name: str, cfgs: dict) -> str:
    return os.path.splitext(os.path.basename(cfgs["stage1"]))[0] + "_" + name.split("/")[0]


# ----------------------------------------------------------------------------- cost workers
def measure_steps(step, iters: int) -> dict:
    """Median wall and CPU seconds of ``iters`` calls after one warm-up call, and the peak
    memory above the usage before the warm-up (so first-call allocations count).

    CPU seconds (``time.process_time``, all threads of this process) hardly change when other
    jobs share the machine; wall seconds do. Ratios use CPU seconds on CPU, wall on CUDA.
    """
    import statistics

    import torch

    baseline = reset_peak_memory()
    step()
    wall, cpu = [], []
    for _ in range(iters):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        w, c = time.perf_counter(), time.process_time()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return dict(
        wall_s=statistics.median(wall),
        cpu_s=statistics.median(cpu),
        median_s=statistics.median(wall if torch.cuda.is_available() else cpu),
        peak_bytes=peak_memory_since(baseline),
        iters=iters,
    )


def det_worker(
    mode: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args
) -> dict:
    """One measurement in this process: mode "stage1", "stage2" or "nograd"."""
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer
    from detectron2.utils.events import EventStorage

    from disalign_det import DisAlignCheckpointer, add_disalign_config, freeze_for_calibration

    os.chdir(out)
    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(stage1_cfg if mode == "stage1" else stage2_cfg)
    cfg.merge_from_list(det_overrides(args, 1 if mode == "stage1" else 2))
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.MODEL.DISALIGN.FREEZE:
        freeze_for_calibration(model)
    stage1_weights = get_stage2_weights(stage2_cfg)
    DisAlignCheckpointer(model).load(stage1_weights)
    batch = torch.load(batch_file, weights_only=False)
    model.train()
    if mode == "nograd":

        def step():
            with torch.no_grad():
                model(batch)

    else:
        optimizer = build_optimizer(cfg, model)

        def step():
            losses = sum(model(batch).values())
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()

    with EventStorage(0):
        return measure_steps(step, args.time_iters)


def get_stage2_weights(stage2_cfg: str) -> str:
    from detectron2.config import get_cfg

    from disalign_det import add_disalign_config

    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(stage2_cfg)
    return cfg.MODEL.WEIGHTS


def det_save_batch(stage2_cfg: str, out: str, batch_file: str, args) -> None:
    """One batch of the stage-2 config's own train loader (same augmentation as stage 1)."""
    import torch
    from detectron2.config import get_cfg
    from detectron2.data import build_detection_train_loader
    from detectron2.utils.env import seed_all_rng

    from disalign_det import add_disalign_config

    os.chdir(out)
    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(stage2_cfg)
    cfg.merge_from_list(det_overrides(args, 2) + ["DATALOADER.NUM_WORKERS", "0"])
    seed_all_rng(0)
    batch = next(iter(build_detection_train_loader(cfg)))
    torch.save(batch, batch_file)


def _mm_framework(framework: str, stage1_cfg: str, cfg_path: str, args):
    """(config with the run's overrides, the framework's MODELS) for an mmseg/MMPretrain worker;
    the plugin is imported (registration) and the framework's default scope set."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    fw = MM_FRAMEWORKS[framework]
    importlib.import_module(fw["plugin"])
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(_cfg_options(mm_overrides(framework, stage1_cfg, args)))
    init_default_scope(fw["package"])
    return cfg, importlib.import_module(fw["package"] + ".registry").MODELS


def mm_worker(
    framework: str, mode: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args,
    ckpt: str,
) -> dict:  # fmt: skip
    """One measurement in this process (mmseg or MMPretrain): mode "stage1", "stage2", "nograd"."""
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import load_checkpoint

    os.chdir(out)
    cfg_path = stage1_cfg if mode == "stage1" else stage2_cfg
    cfg, models = _mm_framework(framework, stage1_cfg, cfg_path, args)
    torch.manual_seed(0)
    model = models.build(cfg.model)  # the stage-2 model freezes here, as in the runner
    model = revert_sync_batchnorm(model)  # as mmengine's runner does without distribution
    load_checkpoint(model, ckpt, map_location="cpu")
    data = model.data_preprocessor(torch.load(batch_file, weights_only=False), training=True)
    model.train()
    if mode == "nograd":

        def step():
            with torch.no_grad():
                model(**data, mode="loss")

    else:
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

        def step():
            loss, _ = model.parse_losses(model(**data, mode="loss"))
            optim_wrapper.update_params(loss)

    return measure_steps(step, args.time_iters)


def _cfg_options(opts: List[str]) -> dict:
    from mmengine.config import DictAction

    out = {}
    for o in opts:
        k, v = o.split("=", 1)
        out[k] = DictAction._parse_iterable(v)
    return out


def mm_save_batch(
    framework: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args
):
    """One batch of the stage-2 config's own train loader (mmseg or MMPretrain)."""
    import torch
    from mmengine.runner import Runner

    os.chdir(out)
    cfg, _ = _mm_framework(framework, stage1_cfg, stage2_cfg, args)
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg["num_workers"] = 0
    loader_cfg["persistent_workers"] = False
    torch.manual_seed(0)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    torch.save(next(iter(loader)), batch_file)


def measure_family(name: str, cfgs: dict, args, out: str, run: dict) -> dict:
    family = families()[name]
    fw = family["framework"]
    batch_file = os.path.join(out, "logs", f"{_slug(name, cfgs)}_batch.pt")
    me = os.path.abspath(__file__)
    common = ["--out", out, "--iters", str(args.iters), "--time-iters", str(args.time_iters),
              "--det-images-per-process", str(args.det_images_per_process),
              "--cls-images-per-process", str(args.cls_images_per_process),
              "--cls-val-images", str(args.cls_val_images)]  # fmt: skip
    ckpt = run.get("stage1_checkpoint", "")
    argv = [me, "--worker", fw, "batch", cfgs["stage1"], cfgs["stage2"], batch_file, ckpt, *common]
    subprocess.run([sys.executable, *argv], check=True, env=det_env(out) if fw == "det" else None)
    result = {}
    for mode in ("stage1", "stage2", "nograd"):
        argv = [me, "--worker", fw, mode, cfgs["stage1"], cfgs["stage2"], batch_file, ckpt, *common]
        if fw == "det":
            os.environ["DETECTRON2_DATASETS"] = os.path.join(out, "datasets")
        result[mode] = run_isolated(argv)
    s1, s2, ng = result["stage1"], result["stage2"], result["nograd"]
    result["ratios"] = dict(
        stage2_over_stage1_time=s2["median_s"] / s1["median_s"],
        stage2_over_nograd_time=s2["median_s"] / ng["median_s"],
        stage2_over_stage1_memory=s2["peak_bytes"] / max(1, s1["peak_bytes"]),
        stage2_over_nograd_memory=s2["peak_bytes"] / max(1, ng["peak_bytes"]),
    )
    return result


# ----------------------------------------------------------------------------- report
def table(results: dict) -> str:
    lines = [
        "| family | backbone | stage 1 | stage 2 | stage-1 it. | stage-2 it. | no-grad fwd | "
        "stage 2 / stage 1 | stage 2 / no-grad | peak MiB s1 / s2 / no-grad |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        name, bb = key.rsplit("@", 1)
        m1, m2 = r["run"]["stage1"]["metrics"], r["run"]["stage2"]["metrics"]
        if "bbox" in m1:
            ev1 = f"box AP {m1['bbox']['AP']:.2f}, mask AP {m1.get('segm', {}).get('AP', float('nan')):.2f}"
            ev2 = f"box AP {m2['bbox']['AP']:.2f}, mask AP {m2.get('segm', {}).get('AP', float('nan')):.2f}"
        elif "mIoU" in m1:
            ev1 = f"mIoU {m1['mIoU']:.2f}, tail {m1['tail_mIoU']:.2f}"
            ev2 = f"mIoU {m2['mIoU']:.2f}, tail {m2['tail_mIoU']:.2f}"
        else:
            ev1 = f"top-1 {m1['accuracy/top1']:.2f}, few {m1['accuracy/few_top1']:.2f}"
            ev2 = f"top-1 {m2['accuracy/top1']:.2f}, few {m2['accuracy/few_top1']:.2f}"
        c = r.get("cost")
        if c:
            ratio = c["ratios"]
            cost = (
                f"{c['stage1']['median_s']:.1f} s | {c['stage2']['median_s']:.1f} s | "
                f"{c['nograd']['median_s']:.1f} s | **{ratio['stage2_over_stage1_time']:.2f}x** | "
                f"**{ratio['stage2_over_nograd_time']:.2f}x** | "
                f"{c['stage1']['peak_bytes'] / 2**20:.0f} / {c['stage2']['peak_bytes'] / 2**20:.0f} / "
                f"{c['nograd']['peak_bytes'] / 2**20:.0f}"
            )
        else:
            cost = " | ".join(["-"] * 6)
        lines.append(f"| {name} | {bb} | {ev1} | {ev2} | {cost} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="output/full_size")
    parser.add_argument("--family", nargs="+", default=list(families()), choices=list(families()))
    parser.add_argument("--backbone", nargs="+", default=["R_50"], choices=list(DET_BACKBONES))
    parser.add_argument("--iters", type=int, default=2, help="training iterations per stage")
    parser.add_argument(
        "--time-iters", type=int, default=2, help="timed iterations per measurement"
    )
    parser.add_argument("--no-timing", action="store_true", help="runs only, no cost measurement")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="cost only, from an earlier run's checkpoints in --out",
    )
    parser.add_argument(
        "--results", default="full_size_results", help="name of the results .json/.md in --out"
    )
    parser.add_argument("--det-images-per-process", type=int, default=2)
    parser.add_argument("--det-train-images", type=int, default=8)
    parser.add_argument("--det-val-images", type=int, default=2)
    parser.add_argument("--seg-train-images", type=int, default=8)
    parser.add_argument("--seg-val-images", type=int, default=2)
    parser.add_argument(
        "--cls-images-per-process",
        type=int,
        default=0,
        help="classification batch per process (default 0: the config's own, 64)",
    )
    parser.add_argument("--cls-val-images", type=int, default=6)
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)

    if args.worker:
        fw, mode, stage1, stage2, batch_file, ckpt = args.worker
        if mode == "batch":
            if fw == "det":
                det_save_batch(stage2, out, batch_file, args)
            else:
                mm_save_batch(fw, stage1, stage2, out, batch_file, args)
            return 0
        if mode == "init":
            det_init_weights(stage1, out, batch_file, args)
            return 0
        if fw == "det":
            r = det_worker(mode, stage1, stage2, out, batch_file, args)
        else:
            r = mm_worker(fw, mode, stage1, stage2, out, batch_file, args, ckpt)
        print(json.dumps(r))
        return 0

    print(
        "Overrides of the shipped configs (everything else is as shipped):\n"
        f"  data paths: working directory {out} (DETECTRON2_DATASETS={out}/datasets; mmseg's "
        "data/ade/ADEChallengeData2016 under it; stage 2 reads the stage-1 checkpoint just written)\n"
        f"  iterations: {args.iters} per stage (checkpoint and evaluation at the last one)\n"
        "  classification: one epoch of the first iterations x batch images of the training list, "
        f"validation on the first {args.cls_val_images} images of the val list "
        "(class counts from the whole training list)\n"
        "  ImageNet initialisation: random weights instead (detectron2: with FrozenBN statistics set "
        "from one generated batch, see det_init_weights; Places-LT: PyTorch's default init)\n"
        "  detectron2 MODEL.DEVICE: cpu when there is no GPU\n"
        f"  detectron2 SOLVER.IMS_PER_BATCH: {args.det_images_per_process} per process "
        "(one GPU's share of the 8-GPU batch of 16); mmseg's per-GPU batch_size kept; "
        "MMPretrain's per-GPU batch_size "
        + (f"{args.cls_images_per_process}" if args.cls_images_per_process else "kept"),
        flush=True,
    )
    path = os.path.join(out, args.results + ".json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    failures, n_runs = [], 0
    for name in args.family:
        for bb in family_backbones(families()[name], args.backbone):
            cfgs = config_paths(families()[name], bb)
            if cfgs is None:
                continue
            key, n_runs = f"{name}@{bb}", n_runs + 1
            print(f"\n=== {key}: {os.path.relpath(cfgs['stage1'], ROOT)} -> "
                  f"{os.path.relpath(cfgs['stage2'], ROOT)}", flush=True)  # fmt: skip
            start = time.time()
            try:
                if args.timing_only:
                    runs = os.path.join(out, "full_size_results.json")
                    earlier = json.load(open(runs)) if os.path.exists(runs) else {}
                    if key not in earlier:
                        raise KeyError(f"--timing-only: no earlier run of {key} in {runs}")
                    entry = {"run": earlier[key]["run"]}
                else:
                    runner = (
                        run_det_family if families()[name]["framework"] == "det" else run_mm_family
                    )
                    entry = {"run": runner(name, cfgs, args, out)}
                if not args.no_timing:
                    entry["cost"] = measure_family(name, cfgs, args, out, entry["run"])
            except Exception as e:  # report every family, then fail
                failures.append(key)
                print(f"=== {key}: FAILED\n{e}", flush=True)
                continue
            entry["seconds"] = round(time.time() - start, 1)
            results[key] = entry
            print(f"=== {key}: passed in {entry['seconds']:.0f} s; stage 1 {entry['run']['stage1']['metrics']}"
                  f"; stage 2 {entry['run']['stage2']['metrics']}", flush=True)  # fmt: skip
            if "cost" in entry:
                print(f"=== {key}: cost {json.dumps(entry['cost']['ratios'])}", flush=True)
            with open(path, "w") as f:
                json.dump(results, f, indent=1)
    with open(os.path.join(out, args.results + ".md"), "w") as f:
        f.write(table(results) + "\n")
    print("\n" + table(results))
    if failures:
        print(f"\nFAILED: {failures}")
        return 1
    print(f"\nall {n_runs} family x backbone runs passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
