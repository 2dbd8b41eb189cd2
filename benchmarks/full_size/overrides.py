"""The settings that differ from the shipped configs, in one place: detectron2's options and
environment, the mmseg / MMPretrain ``--cfg-options`` (and the config they make), the device,
where stage 2 finds the stage-1 checkpoint, and the summary the command prints of them (the
package docstring gives each one's reason)."""

from __future__ import annotations

import os
from typing import List

from .families import MM_FRAMEWORKS


def default_device() -> str:
    """The device of the runs and the cost workers: the GPU when there is one (detectron2's
    configs leave its default, cuda; mmengine's runner takes the GPU itself), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def det_env(out: str) -> dict:
    """The environment of a detectron2 process: its builtin LVIS datasets under ``<out>/datasets``."""
    return dict(os.environ, DETECTRON2_DATASETS=os.path.join(out, "datasets"), PYTHONUNBUFFERED="1")


def det_overrides(args, stage: int) -> List[str]:
    """detectron2 options (``KEY VALUE`` list) of stage ``stage`` (1 or 2; both the same)."""
    opts = [
        "SOLVER.MAX_ITER", str(args.iters),
        "SOLVER.IMS_PER_BATCH", str(args.det_images_per_process),
        # the batch above is already one process's: no auto-scaling to the number of processes
        # (the stage-2 configs' REFERENCE_WORLD_SIZE 8 would assert 2 % 8 == 0 and fail)
        "SOLVER.REFERENCE_WORLD_SIZE", "0",
        "SOLVER.CHECKPOINT_PERIOD", str(args.iters),
        "TEST.EVAL_PERIOD", "0",
        "MODEL.DEVICE", default_device(),
    ]  # fmt: skip
    return opts


def get_stage2_weights(stage2_cfg: str) -> str:
    """The stage-1 checkpoint a detectron2 stage-2 config reads: its own ``MODEL.WEIGHTS``
    (a path relative to the working directory, ``--out``)."""
    from detectron2.config import get_cfg

    from disalign_det import add_disalign_config

    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(stage2_cfg)
    return cfg.MODEL.WEIGHTS


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


def cfg_options(opts: List[str]) -> dict:
    """``key=value`` strings -> the dict ``Config.merge_from_dict`` takes, values parsed as
    mmengine's ``--cfg-options`` parses them (tools/train.py's ``DictAction``)."""
    from mmengine.config import DictAction

    out = {}
    for o in opts:
        k, v = o.split("=", 1)
        out[k] = DictAction._parse_iterable(v)
    return out


def mm_config(framework: str, stage1_cfg: str, cfg_path: str, args):
    """(config with the run's overrides, the framework's MODELS) for an mmseg/MMPretrain worker;
    the plugin is imported (registration) and the framework's default scope set."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    fw = MM_FRAMEWORKS[framework]
    importlib.import_module(fw["plugin"])
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict(cfg_options(mm_overrides(framework, stage1_cfg, args)))
    init_default_scope(fw["package"])
    return cfg, importlib.import_module(fw["package"] + ".registry").MODELS


def summary(args, out: str) -> str:
    """What the command prints first: every override of the shipped configs for this run."""
    return (
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
        "(one GPU's share of the 8-GPU batch of 16; SOLVER.REFERENCE_WORLD_SIZE 0: no "
        "auto-scaling); mmseg's per-GPU batch_size kept; "
        "MMPretrain's per-GPU batch_size "
        + (f"{args.cls_images_per_process}" if args.cls_images_per_process else "kept")
    )
