"""Cost at full size: each measurement in a fresh process (``--worker``), on one batch of the
stage-2 config's train loader and the stage-1 checkpoint: a stage-1 training iteration, a
stage-2 (calibration) training iteration, and the stage-2 model's training forward under
``torch.no_grad()`` (the floor of stage 2). Median time and peak memory (``common.py``).

``det_model`` / ``mm_model`` build the measured model on a device; ``gpu_check.py`` uses them
too, for its fp32 and AMP measurements on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Sequence

from common import peak_memory_since, reset_peak_memory, run_isolated

from .families import SCRIPT, families, slug
from .overrides import det_env, det_overrides, get_stage2_weights, mm_config

# What one measurement runs: a stage-1 training iteration, a stage-2 (calibration) training
# iteration, the stage-2 model's training forward under torch.no_grad().
MODES = ("stage1", "stage2", "nograd")


def stage_config(mode: str, stage1_cfg: str, stage2_cfg: str) -> str:
    """The config a measurement builds its model from: stage 1's for "stage1", else stage 2's."""
    if mode not in MODES:
        raise ValueError(f"cost mode {mode!r}: expected one of {MODES}")
    return stage1_cfg if mode == "stage1" else stage2_cfg


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


def det_model(
    mode: str, stage1_cfg: str, stage2_cfg: str, opts: Sequence[str], checkpoint: str,
    device: str = "cpu", demo: bool = False,
):  # fmt: skip
    """(cfg, model) of a detectron2 measurement: the stage's config (mode "stage1": stage 1,
    else stage 2) with ``opts`` and ``MODEL.DEVICE`` ``device``, the stage-2 model frozen for
    calibration, weights from ``checkpoint``. ``demo``: add the demo's tiny backbone keys."""
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from disalign_det import DisAlignCheckpointer, add_disalign_config, freeze_for_calibration

    cfg = get_cfg()
    add_disalign_config(cfg)
    if demo:
        from disalign_demo.det import add_tiny_backbone_config

        add_tiny_backbone_config(cfg)
    cfg.merge_from_file(stage_config(mode, stage1_cfg, stage2_cfg))
    cfg.merge_from_list(list(opts) + ["MODEL.DEVICE", device])
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.MODEL.DISALIGN.FREEZE:
        freeze_for_calibration(model)
    DisAlignCheckpointer(model).load(checkpoint)
    return cfg, model


def mm_model(
    framework: str, mode: str, stage1_cfg: str, stage2_cfg: str, args, checkpoint: str,
    device: str = "cpu",
):  # fmt: skip
    """(cfg, model) of an mmseg or MMPretrain measurement: the stage's config with the run's
    overrides, the model built (the stage-2 model freezes here, as in the runner), its
    SyncBN reverted as mmengine's runner does without distribution, weights from
    ``checkpoint``, on ``device``."""
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.runner import load_checkpoint

    cfg_path = stage_config(mode, stage1_cfg, stage2_cfg)
    cfg, models = mm_config(framework, stage1_cfg, cfg_path, args)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(models.build(cfg.model))
    load_checkpoint(model, checkpoint, map_location="cpu")
    return cfg, model.to(device)


def det_worker(
    mode: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args,
    device: str = "cpu",
) -> dict:  # fmt: skip
    """One measurement in this process: mode "stage1", "stage2" or "nograd", on ``device``."""
    import torch
    from detectron2.solver import build_optimizer
    from detectron2.utils.events import EventStorage

    os.chdir(out)
    stage = 1 if mode == "stage1" else 2
    cfg, model = det_model(
        mode, stage1_cfg, stage2_cfg, det_overrides(args, stage), get_stage2_weights(stage2_cfg),
        device,
    )  # fmt: skip
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


def mm_worker(
    framework: str, mode: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args,
    ckpt: str, device: str = "cpu",
) -> dict:  # fmt: skip
    """One measurement in this process (mmseg or MMPretrain): mode "stage1", "stage2",
    "nograd", on ``device``."""
    import torch
    from mmengine.optim import build_optim_wrapper

    os.chdir(out)
    cfg, model = mm_model(framework, mode, stage1_cfg, stage2_cfg, args, ckpt, device)
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


def mm_save_batch(
    framework: str, stage1_cfg: str, stage2_cfg: str, out: str, batch_file: str, args
):
    """One batch of the stage-2 config's own train loader (mmseg or MMPretrain)."""
    import torch
    from mmengine.runner import Runner

    os.chdir(out)
    cfg, _ = mm_config(framework, stage1_cfg, stage2_cfg, args)
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg["num_workers"] = 0
    loader_cfg["persistent_workers"] = False
    torch.manual_seed(0)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    torch.save(next(iter(loader)), batch_file)


def measure_family(name: str, cfgs: dict, args, out: str, run: dict) -> dict:
    """A family's cost: the batch, then each mode in a fresh process; {mode: measure_steps's
    result, "ratios": stage 2 over stage 1 and over the no-grad floor, time and memory}.
    ``run``: the family's runs (its "stage1_checkpoint" for mmseg and MMPretrain)."""
    family = families()[name]
    fw = family["framework"]
    batch_file = os.path.join(out, "logs", f"{slug(name, cfgs)}_batch.pt")
    options = ["--out", out, "--iters", str(args.iters), "--time-iters", str(args.time_iters),
              "--det-images-per-process", str(args.det_images_per_process),
              "--cls-images-per-process", str(args.cls_images_per_process),
              "--cls-val-images", str(args.cls_val_images)]  # fmt: skip
    ckpt = run.get("stage1_checkpoint", "")
    argv = [
        SCRIPT,
        "--worker",
        fw,
        "batch",
        cfgs["stage1"],
        cfgs["stage2"],
        batch_file,
        ckpt,
        *options,
    ]
    subprocess.run([sys.executable, *argv], check=True, env=det_env(out) if fw == "det" else None)
    result = {}
    for mode in MODES:
        argv = [
            SCRIPT,
            "--worker",
            fw,
            mode,
            cfgs["stage1"],
            cfgs["stage2"],
            batch_file,
            ckpt,
            *options,
        ]
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
