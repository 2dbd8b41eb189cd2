#!/usr/bin/env python
"""Issue 17, detectron2 half: where does logit adjustment (LA) stand against DisAlign, and
which DisAlign option helps? A sweep on the demo's detection data and stage-1 model.

First run the demo (it generates the data and trains stage 1 into DEMO/det_stage1):

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python tools/demo/det_demo.py --output output/demo/det

then the sweep (about 25 min on one core; resumable, each finished run is kept):

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_det.py \\
        --demo-dir output/demo/det --output output/sweeps/det_sweep.json

Every run is ``projects/DisAlign/train_net.py --demo`` (``tools/demo/det_demo.py``'s
``run_stage``: disalign_det.engine in this process) with the demo's shipped configs plus
options, evaluated by LVISEvaluator on the demo's val split (box AP, AP_r/c/f, %):

- stage 1 as the demo trained it; also evaluated on the *training* split ("train_metrics");
- training-free, ``--eval-only`` of the stage-2 config with MODEL.WEIGHTS the stage-1 model:
  logit adjustment (MODEL.DISALIGN.POSTHOC.TYPE logit_adjustment, TAU in 0.25 .. 2) and
  tau-normalisation (tau_norm, TAU 0.5, 1);
- DisAlign stage 2 (the demo's stage-2 config: 300 iterations, LR 0.2, rho 0.8) with
  MODEL.DISALIGN.MARGIN_INIT zero (the paper) / prior, MODEL.DISALIGN.RHO in {0, 0.5, 0.8, 1, 2},
  at rho 0.8 SOLVER.BASE_LR 0.1x / 3x, and MARGIN_INIT prior_offset at rho 0, 0.5, 0.8, 1;
- held-out: a stage 1 trained on 80% of the training images (DATASETS.HELDOUT.FRACTION 0.2,
  PART stage1, SEED 0; the demo's stage-1 config otherwise), then DisAlign zero / prior at
  rho 0.8 calibrated on the withheld 20% (PART calibration), and LA tau=1 of that stage 1.

Output: the JSON of benchmarks/plot_sweeps.py's format (part "det"), rewritten after every run;
runs already in it are skipped unless --force. first_loss / final_loss: detectron2's
``total_loss`` of the first and the last record of OUTPUT_DIR/metrics.json (each the median
over the 20 iterations before it); the same for ``loss_cls`` in first_loss_cls /
final_loss_cls. ``calibration_stats`` of a DisAlign run: the trained calibration's confidence
sigma(x) and effective margin |sigma(x) beta| on the val images' boxes (``calibration_stats``).
Run folders: --work (default output/sweeps/det).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))

import det_demo  # noqa: E402  (tools/demo/det_demo.py: run_stage, the demo's config paths)

from disalign_det import engine  # noqa: E402

STAGE1_CFG = os.path.join(det_demo.DEMO_CONFIGS, "faster_rcnn_tiny_synth.yaml")
STAGE2_CFG = os.path.join(det_demo.DEMO_CONFIGS, "disalign_faster_rcnn_tiny_synth.yaml")
PAPER_RHO, DEFAULT_LR = 0.8, 0.2  # add_disalign_config's RHO; the demo stage-2 BASE_LR
HELDOUT = dict(fraction=0.2, seed=0)
LA_TAUS = (0.25, 0.5, 1.0, 1.5, 2.0)
TAU_NORM_TAUS = (0.5, 1.0)
RHOS = (0.0, 0.5, PAPER_RHO, 1.0, 2.0)
LR_FACTORS = (0.1, 3.0)


def plan():
    """Every run, the most informative first (see benchmarks/plot_sweeps.py)."""
    runs = []

    def disalign(init, rho, lr=DEFAULT_LR, data="train"):
        runs.append(dict(method="disalign", init=init, data=data, rho=rho, lr=lr, tau=None))

    def posthoc(method, tau, data="train"):
        runs.append(dict(method=method, init=None, data=data, rho=None, lr=None, tau=tau))

    for tau in LA_TAUS:
        posthoc("logit_adjustment", tau)
    for tau in TAU_NORM_TAUS:
        posthoc("tau_norm", tau)
    disalign("zero", PAPER_RHO)
    disalign("prior", PAPER_RHO)
    disalign("zero", PAPER_RHO, data="heldout")
    disalign("prior", PAPER_RHO, data="heldout")
    posthoc("logit_adjustment", 1.0, data="heldout")
    for rho in RHOS:
        if rho != PAPER_RHO:
            disalign("zero", rho)
            disalign("prior", rho)
    for factor in LR_FACTORS:
        disalign("zero", PAPER_RHO, lr=round(DEFAULT_LR * factor, 6))
    # The prior as a fixed offset outside the confidence (MARGIN_INIT prior_offset): stage 2
    # starts at exactly logit adjustment and learns a residual.
    for rho in (0.0, 0.5, PAPER_RHO, 1.0):
        disalign("prior_offset", rho)
    return runs


def run_key(run: dict) -> tuple:
    return tuple(run[k] for k in ("method", "init", "data", "rho", "lr", "tau"))


def run_name(run: dict) -> str:
    parts = [run["method"], run["data"]]
    if run["method"] == "disalign":
        parts += [run["init"], f"rho{run['rho']}", f"lr{run['lr']}"]
    else:
        parts.append(f"tau{run['tau']}")
    return "_".join(parts)


def reset_d2_loggers() -> None:
    """detectron2's default_setup adds stdout and log.txt handlers for every new OUTPUT_DIR;
    remove them after a run so that the next run's lines are not printed once per past run."""
    for name in ("detectron2", "fvcore", "d2"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def losses(output_dir: str) -> dict:
    """first/final total_loss and loss_cls from OUTPUT_DIR/metrics.json (None if absent)."""
    path = os.path.join(output_dir, "metrics.json")
    records = []
    if os.path.isfile(path):
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if "total_loss" in r]
    out = {}
    for key, field in (("loss", "total_loss"), ("loss_cls", "loss_cls")):
        out[f"first_{key}"] = float(records[0][field]) if records else None
        out[f"final_{key}"] = float(records[-1][field]) if records else None
    return out


def calibration_stats(output_dir: str, dataset: str = "lvis_synth_val", images: int = 40) -> dict:
    """What the trained calibration does on the box features of ``images`` val images: the
    confidence sigma(x) (mean, 10th and 90th percentile over the boxes), the mean |sigma(x)
    beta_j| over boxes and classes (the effective margin) and the mean |alpha_j|. The model is
    the run's config.yaml and model_final.pth, built and loaded as train_net.py does."""
    from detectron2.config import get_cfg

    from disalign_demo.det import add_tiny_backbone_config
    from disalign_det import DisAlignCheckpointer, add_disalign_config
    from disalign_det.engine import Trainer

    cfg = get_cfg()
    add_disalign_config(cfg)
    add_tiny_backbone_config(cfg)
    cfg.merge_from_file(os.path.join(output_dir, "config.yaml"))
    cfg.MODEL.DISALIGN.REWEIGHT = False  # loss only
    model = Trainer.build_model(cfg)
    DisAlignCheckpointer(model).load(os.path.join(output_dir, "model_final.pth"))
    model.eval()
    predictor = model.roi_heads.box_predictor
    features = []
    hook = predictor.register_forward_hook(lambda m, i, o: features.append(i[0].detach()))
    try:
        with torch.no_grad():
            for i, batch in enumerate(Trainer.build_test_loader(cfg, dataset)):
                if i == images:
                    break
                model(batch)
    finally:
        hook.remove()
    x = torch.cat(features).flatten(1)  # (R, C)
    calibration = predictor.calibration
    with torch.no_grad():
        z = predictor.class_logits(x)[:, : predictor.num_classes]
        sigma = calibration.confidence(x, z).flatten()  # (R,)
        margin = sigma[:, None] * calibration.beta[None]  # (R, K)
    return {
        "sigma_mean": round(sigma.mean().item(), 4),
        "sigma_p10": round(sigma.quantile(0.1).item(), 4),
        "sigma_p90": round(sigma.quantile(0.9).item(), 4),
        "mean_abs_sigma_beta": round(margin.abs().mean().item(), 4),
        "mean_abs_alpha": round(calibration.alpha.abs().mean().item(), 4),
    }


class Sweep:
    def __init__(self, args):
        self.demo = os.path.abspath(args.demo_dir)
        self.output = os.path.abspath(args.output)
        self.work = os.path.abspath(args.work)
        self.force = args.force
        with open(os.path.join(self.demo, "det_results.json")) as f:
            self.demo_results = json.load(f)
        data = os.path.join(self.demo, "data")
        images = os.path.join(data, "images", "")
        self.common = [
            "--register", "lvis_synth_train", os.path.join(data, "lvis_synth_train.json"), images,
            "--register", "lvis_synth_val", os.path.join(data, "lvis_synth_val.json"), images,
        ]  # fmt: skip
        # As --register does in every run (and it skips registered names); calibration_stats
        # reads the val split without a run.
        engine.register_datasets([self.common[i + 1 : i + 4] for i in (0, 4)])
        self.num_classes = [
            "MODEL.ROI_HEADS.NUM_CLASSES",
            str(len(self.demo_results["class_names"])),
        ]
        self.stage1_weights = os.path.join(self.demo, "det_stage1", "model_final.pth")
        self.heldout_dir = os.path.join(self.work, "heldout_stage1")
        self.heldout_opts = [
            "DATASETS.HELDOUT.FRACTION", str(HELDOUT["fraction"]),
            "DATASETS.HELDOUT.SEED", str(HELDOUT["seed"]),
        ]  # fmt: skip
        self.results = self._load()

    def _load(self) -> dict:
        base = {
            "part": "det",
            "tail_metric": "APr",
            "overall_metric": "AP",
            "paper_rho": PAPER_RHO,
            "default_lr": DEFAULT_LR,
            "stage1": None,
            "heldout_stage1": None,
            "runs": [],
        }
        if os.path.isfile(self.output) and not self.force:
            with open(self.output) as f:
                base.update(json.load(f))
        return base

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.output), exist_ok=True)
        tmp = self.output + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=2)
        os.replace(tmp, self.output)

    def train_net(self, argv: list, output_dir: str) -> tuple:
        """Run train_net.py --demo ARGV in this process in a fresh OUTPUT_DIR; returns
        (box metrics, command, seconds)."""
        shutil.rmtree(output_dir, ignore_errors=True)
        commands = []
        start = time.time()
        try:
            metrics = det_demo.run_stage([*self.common, *argv, "OUTPUT_DIR", output_dir], commands)
        finally:
            reset_d2_loggers()
        return metrics, commands[0], round(time.time() - start, 1)

    def stage1(self) -> None:
        if self.results["stage1"] is not None:
            return
        print("[sweep_det] stage 1 on the training split", flush=True)
        train_metrics, command, _ = self.train_net(
            ["--eval-only", "--config-file", STAGE1_CFG, *self.num_classes,
             "MODEL.WEIGHTS", self.stage1_weights, "DATASETS.TEST", "('lvis_synth_train',)"],
            os.path.join(self.work, "stage1_on_train"),
        )  # fmt: skip
        self.results["stage1"] = {
            "metrics": self.demo_results["stage1"],
            "train_metrics": train_metrics,
            "command": self.demo_results["commands"][0],
            "train_metrics_command": command,
        }
        self.save()

    def heldout_stage1(self) -> str:
        weights = os.path.join(self.heldout_dir, "model_final.pth")
        if self.results["heldout_stage1"] is not None and os.path.isfile(weights):
            return weights
        print("[sweep_det] held-out stage 1 (stage1 part)", flush=True)
        metrics, command, seconds = self.train_net(
            ["--config-file", STAGE1_CFG, *self.num_classes, *self.heldout_opts,
             "DATASETS.HELDOUT.PART", "stage1"],
            self.heldout_dir,
        )  # fmt: skip
        self.results["heldout_stage1"] = {
            "fraction": HELDOUT["fraction"],
            "seed": HELDOUT["seed"],
            "metrics": metrics,
            "seconds": seconds,
            "command": command,
        }
        self.save()
        return weights

    def run(self, run: dict) -> None:
        weights = self.stage1_weights
        opts = []
        if run["data"] == "heldout":
            weights = self.heldout_stage1()
        if run["method"] == "disalign":
            argv = ["--config-file", STAGE2_CFG]
            opts = ["MODEL.DISALIGN.MARGIN_INIT", run["init"], "MODEL.DISALIGN.RHO",
                    str(run["rho"]), "SOLVER.BASE_LR", str(run["lr"])]  # fmt: skip
            if run["data"] == "heldout":
                opts += [*self.heldout_opts, "DATASETS.HELDOUT.PART", "calibration"]
        else:
            argv = ["--eval-only", "--config-file", STAGE2_CFG]
            opts = ["MODEL.DISALIGN.POSTHOC.TYPE", run["method"],
                    "MODEL.DISALIGN.POSTHOC.TAU", str(run["tau"])]  # fmt: skip
        output_dir = os.path.join(self.work, "runs", run_name(run))
        print(f"[sweep_det] {run_name(run)}", flush=True)
        metrics, command, seconds = self.train_net(
            [*argv, *self.num_classes, "MODEL.WEIGHTS", weights, *opts], output_dir
        )
        entry = dict(run, metrics=metrics)
        if run["method"] == "disalign":
            entry.update(losses(output_dir))
            entry["calibration_stats"] = calibration_stats(output_dir)
        entry.update(seconds=seconds, command=command)
        self.results["runs"] = [r for r in self.results["runs"] if run_key(r) != run_key(run)] + [
            entry
        ]
        self.save()
        print(
            f"[sweep_det] {run_name(run)}: "
            + ", ".join(f"{k} {metrics[k]:.2f}" for k in det_demo.METRICS)
            + f" ({seconds} s)",
            flush=True,
        )

    def main(self, only=None) -> None:
        self.stage1()
        done = {run_key(r) for r in self.results["runs"]}
        for run in plan():
            if only and not any(s in run_name(run) for s in only):
                continue
            if run_key(run) in done and not self.force:
                continue
            self.run(run)
        # Runs of an earlier version of this script: the calibration's statistics afterwards.
        for entry in self.results["runs"]:
            output_dir = os.path.join(self.work, "runs", run_name(entry))
            if entry["method"] == "disalign" and "calibration_stats" not in entry:
                if os.path.isfile(os.path.join(output_dir, "model_final.pth")):
                    entry["calibration_stats"] = calibration_stats(output_dir)
                    self.save()
        print(f"[sweep_det] wrote {self.output}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", default="output/demo/det", help="det_demo.py --output")
    parser.add_argument("--output", default="output/sweeps/det_sweep.json")
    parser.add_argument("--work", default="output/sweeps/det", help="folder of the runs")
    parser.add_argument("--force", action="store_true", help="rerun runs already in --output")
    parser.add_argument("--only", nargs="*", help="only runs whose name contains one of these")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    Sweep(args).main(args.only)


if __name__ == "__main__":
    main()
