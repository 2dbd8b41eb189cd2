"""The catalogue: every shipped config family (LVIS detection, ADE20K segmentation, long-tail
classification), where its stage-1 and stage-2 configs are for a backbone, and the facts of
the OpenMMLab frameworks the runs and the cost workers need."""

from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCHMARKS)
# The entry point: the runs and the cost measurement re-invoke it with --worker, each
# measurement in a fresh process.
SCRIPT = os.path.join(BENCHMARKS, "full_size_configs.py")
TRAIN_NET = os.path.join(ROOT, "projects", "DisAlign", "train_net.py")

DET_BACKBONES = {"R_50": "R_50", "R_101": "R_101", "X_101_32x8d": "X_101_32x8d"}
SEG_BACKBONES = {"R_50": "r50", "R_101": "r101", "X_101_32x8d": None}  # mmseg ships no X-101 here


# Classification: each family's stage-1 and stage-2 config (configs/mmpretrain) and backbone.
CLS_FAMILIES = {
    "ImageNet-LT/resnext50": ("imagenet-lt", "resnext50-32x4d", "X-50-32x4d"),
    "ImageNet-LT/resnext50_cos": ("imagenet-lt", "resnext50-32x4d-cos", "X-50-32x4d"),
    "iNat2018/resnet50": ("inat2018", "resnet50", "R-50"),
    "Places-LT/resnet152": ("places-lt", "resnet152", "R-152"),
}


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


def slug(name: str, cfgs: dict) -> str:
    """A family's file-name stem for its logs, work dirs and batches: the stage-1 config's name
    and the dataset (e.g. ``mask_rcnn_R_50_FPN_1x_LVISv1``)."""
    return os.path.splitext(os.path.basename(cfgs["stage1"]))[0] + "_" + name.split("/")[0]
