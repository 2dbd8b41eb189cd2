"""The runs of a family: generated data, stage 1 with the shipped stage-1 config through the
user's entry point (detectron2: ``projects/DisAlign/train_net.py``; mmseg and MMPretrain: their
stock ``tools/train.py``), its checkpoint, stage 2 with the shipped stage-2 config from that
checkpoint, and each stage's evaluation with the config's evaluator, read from the log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Dict, List

from .data import generate_ade20k, generate_cls, generate_lvis
from .families import MM_FRAMEWORKS, SCRIPT, TRAIN_NET, families, slug
from .overrides import det_env, det_overrides, mm_overrides


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
    """Stage 1 and stage 2 of a detectron2 family with train_net.py, after the generated LVIS
    data and the stand-in initialisation (``det_init_weights``, in a fresh process); each
    stage's LVIS box and mask metrics."""
    family = families()[name]
    generate_lvis(out, family["version"], args.det_train_images, args.det_val_images)
    env, res = det_env(out), {}
    init_file = os.path.join(out, "logs", f"{slug(name, cfgs)}_init.pth")
    argv = [SCRIPT, "--worker", "det", "init", cfgs["stage1"], cfgs["stage2"], init_file, "", "--out", out,
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
        log_path = os.path.join(out, "logs", f"{slug(name, cfgs)}_stage{stage}.log")
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
    work1 = os.path.join(out, "work_dirs", slug(name, cfgs) + "_stage1")
    work2 = os.path.join(out, "work_dirs", slug(name, cfgs) + "_stage2")
    ckpt1 = os.path.join(work1, fw["checkpoint"].format(iters=args.iters))
    overrides = mm_overrides(family["framework"], cfgs["stage1"], args)
    for stage, cfg, work, extra in (
        (1, cfgs["stage1"], work1, []),
        (2, cfgs["stage2"], work2, [f"model.stage1_checkpoint={ckpt1}"]),
    ):
        cmd = [sys.executable, os.path.join(tools, "train.py"), cfg, "--work-dir", work,
               "--cfg-options", *overrides, *extra]  # fmt: skip
        log_path = os.path.join(out, "logs", f"{slug(name, cfgs)}_stage{stage}.log")
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
