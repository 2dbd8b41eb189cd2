#!/usr/bin/env python
"""Where and why logit adjustment (LA) beats DisAlign on the demo's segmentation and
classification halves: a sweep of DisAlign's rho / LR / margin start / calibration data
against LA's and tau-norm's tau, each run with the framework's stock ``tools/train.py`` /
``tools/test.py`` on the demo's shipped stage-2 config and ``--cfg-options``.

Usage (after ``tools/demo/seg_demo.py --output output/demo/seg`` and ``tools/demo/cls_demo.py
--output output/demo/cls``, whose data and stage-1 checkpoint it reuses)::

    python benchmarks/sweep_mm.py --part seg [--demo output/demo/seg] [--force]
    python benchmarks/sweep_mm.py --part cls [--demo output/demo/cls] [--only la,paper,heldout]

Writes ``output/sweeps/<part>_sweep.json`` after every run (the lead's plot script reads it;
schema in the issue) and skips the runs already there unless ``--force``. Runs, most
informative first:

- ``la``: logit adjustment, tau in {0.25, 0.5, 1, 1.5, 2}; tau-norm, tau in {0.5, 1}
  (``tools/test.py`` of the stage-2 config on the stage-1 checkpoint with ``posthoc``);
- ``paper``: DisAlign, margin start zero and prior, at the paper's rho and at the shipped
  config's rho where it differs;
- ``heldout``: a stage 1 trained on the ``stage1`` part of a held-out split (fraction 0.2,
  seed 0; ``DisAlignHeldOutSubset``), then DisAlign (zero, prior; paper rho) calibrated on the
  ``calibration`` part, and LA tau = 1 of that stage 1;
- ``rho``: the rest of rho in {0, 0.5, paper, 1, 2}, both starts;
- ``lr``: DisAlign, zero start, paper rho, LR 0.1x and 3x the config's.

Besides the schema's fields, every run records its metrics on the training split
(``train_metrics``: the same evaluator with the test loader on the training images), and each
DisAlign run the learned calibration (``alpha``, ``beta``, mean over classes of the learned
margin) from its checkpoint; ``la_margin`` is the centred ``-log pi`` of the training prior.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import sys
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools", "demo"))

from mm_demo import Runner, mm_tool, schedule_options, test_metrics  # noqa: E402

HELDOUT_FRACTION, HELDOUT_SEED = 0.2, 0
LA_TAUS = (0.25, 0.5, 1.0, 1.5, 2.0)
TAU_NORM_TAUS = (0.5, 1.0)
# The stage-2 runs log every iteration: first/final loss = mean of the first/last 20.
LOSS_WINDOW = 20


class Part:
    """What differs between the two halves: configs, schedules, config keys, metrics."""

    def __init__(self, name: str):
        self.name = name
        if name == "seg":
            import seg_demo as demo

            self.framework, self.data_env = "mmseg", "DISALIGN_SEG_DATA"
            self.head, self.loss = "model.decode_head", "model.decode_head.loss_decode"
            self.scheduler = "param_scheduler.0"
            self.tail, self.overall = "tail_mIoU", "mIoU"
            self.paper_rho, self.prefix = 0.3, ""
            self.train_split = [
                "test_dataloader.dataset.data_prefix.img_path=images/training",
                "test_dataloader.dataset.data_prefix.seg_map_path=annotations/training",
            ]
            self.state_prefix = "decode_head.calibration"
        else:
            import cls_demo as demo

            self.framework, self.data_env = "mmpretrain", "DISALIGN_CLS_DATA"
            self.head, self.loss = "model.head", "model.head.loss"
            self.scheduler = "param_scheduler"
            self.tail, self.overall = "few_top1", "top1"
            self.paper_rho, self.prefix = 1.2, "accuracy/"
            self.train_split = ["test_dataloader.dataset.ann_file=meta/train.txt"]
            self.state_prefix = "head.calibration"
        self.stage1_cfg, self.stage2_cfg = demo.STAGE1_CFG, demo.STAGE2_CFG
        self.keys = demo.METRIC_KEYS
        self.n1, self.n2 = demo.SCHEDULES["full"]

    def shipped(self) -> Dict[str, float]:
        """The shipped stage-2 config's rho and LR."""
        from mmengine.config import Config

        os.environ.setdefault(self.data_env, "unused")
        cfg = Config.fromfile(self.stage2_cfg)
        loss = cfg.model.decode_head.loss_decode if self.name == "seg" else cfg.model.head.loss
        return {"rho": float(loss.rho), "lr": float(cfg.optim_wrapper.optimizer.lr)}


def heldout_config(base: str, out: str, name: str, part: str) -> str:
    """A config file that is ``base`` with ``train_dataloader.dataset`` wrapped in
    ``DisAlignHeldOutSubset`` (the README's snippet); returns its path."""
    path = os.path.join(out, f"{name}.py")
    with open(path, "w") as f:
        f.write(
            f"_base_ = {base!r}\n"
            "train_dataloader = dict(dataset=dict(_delete_=True, type='DisAlignHeldOutSubset',\n"
            "    dataset={{_base_.train_dataloader.dataset}},\n"
            f"    fraction={HELDOUT_FRACTION}, part={part!r}, seed={HELDOUT_SEED}))\n"
        )
    return path


def heldout_test_config(base: str, out: str, name: str, part: str, data_env: str, data: str) -> str:
    """A config file that is ``base`` testing on ``part`` of the held-out split of its
    training set (the training dataset with the test pipeline, wrapped); returns its path."""
    from mmengine.config import Config

    old = os.environ.get(data_env)
    os.environ[data_env] = data  # the configs read their data folder from it
    try:
        cfg = Config.fromfile(base)
    finally:
        if old is None:
            os.environ.pop(data_env)
        else:
            os.environ[data_env] = old
    plain = cfg.to_dict()
    dataset = dict(plain["train_dataloader"]["dataset"])
    dataset["pipeline"] = plain["test_dataloader"]["dataset"]["pipeline"]
    path = os.path.join(out, f"{name}.py")
    with open(path, "w") as f:
        f.write(
            f"_base_ = {base!r}\n"
            "test_dataloader = dict(dataset=dict(_delete_=True, type='DisAlignHeldOutSubset',\n"
            f"    dataset={dataset!r},\n"
            f"    fraction={HELDOUT_FRACTION}, part={part!r}, seed={HELDOUT_SEED}))\n"
        )
    return path


def loss_curve(work_dir: str) -> List[float]:
    """The training loss of every logged iteration (mmengine's json scalar log)."""
    logs = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "2*.json")))
    if not logs:
        return []
    losses = []
    with open(logs[-1]) as f:
        for line in f:
            entry = json.loads(line)
            if "loss" in entry:
                losses.append(float(entry["loss"]))
    return losses


def mean(values: List[float]) -> Optional[float]:
    return round(sum(values) / len(values), 5) if values else None


def calibration_state(ckpt: str, prefix: str) -> dict:
    """The learned alpha and beta (and the mean margin sigma*beta at sigma = 0.5) of a
    stage-2 checkpoint."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    alpha = state[f"{prefix}.alpha"].flatten().tolist()
    beta = state[f"{prefix}.beta"].flatten().tolist()
    return {"alpha": [round(a, 4) for a in alpha], "beta": [round(b, 4) for b in beta]}


def la_margin(part: Part, data: str) -> List[float]:
    """The centred ``-log pi`` of the training prior (LA's margin at tau = 1; core
    ``logit_adjustment_margin``)."""
    from disalign_core import logit_adjustment_margin, read_class_frequencies

    if part.name == "seg":
        counts, _ = read_class_frequencies(os.path.join(data, "pixel_frequencies.json"))
    else:
        counts, _ = read_class_frequencies(os.path.join(data, "meta", "class_counts.json"))
    return [round(float(v), 4) for v in logit_adjustment_margin(counts, 1.0)]


class Sweep:
    def __init__(
        self, part: Part, demo: str, out: str, force: bool, train_metrics: bool, record_root: str
    ):
        self.part, self.force, self.with_train = part, force, train_metrics
        self.record_root = record_root
        self.data = os.path.join(demo, "data")
        self.ckpt1 = os.path.join(demo, "stage1", f"iter_{part.n1}.pth")
        for path in (self.data, self.ckpt1):
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{path} does not exist: run tools/demo/{part.name}_demo.py --output {demo} "
                    "first (its data and stage-1 checkpoint are reused)"
                )
        self.work = os.path.join(out, part.name)
        self.cfg_dir = os.path.join(self.work, "configs")
        os.makedirs(self.cfg_dir, exist_ok=True)
        self.path = os.path.join(out, f"{part.name}_sweep.json")
        self.run = Runner(f"{part.name} sweep", part.data_env, self.data)
        self.train_tool = mm_tool(part.framework, "train.py")
        self.test_tool = mm_tool(part.framework, "test.py")
        shipped = part.shipped()
        self.rho0, self.lr0 = shipped["rho"], shipped["lr"]
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.result = json.load(f)
        else:
            self.result = {}
        self.result.update(
            part=part.name,
            tail_metric=part.tail,
            overall_metric=part.overall,
            paper_rho=part.paper_rho,
            default_lr=self.lr0,
            config_rho=self.rho0,
            stage2_iters=part.n2,
            la_margin=la_margin(part, self.data),
        )
        self.result.setdefault("stage1", None)
        self.result.setdefault("heldout_stage1", None)
        self.result.setdefault("runs", [])
        self.save()

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.result, f, indent=1)
        os.replace(tmp, self.path)

    def command(self, args: list) -> str:
        line = f"{self.part.data_env}={self.data} " + shlex.join([sys.executable] + args)
        # Run from a copy of the repository (--record-root): record the repository's paths.
        return line.replace(ROOT + os.sep, self.record_root + os.sep)

    def test(self, step, cfg, ckpt, work_dir, options=()) -> (Dict[str, float], str):
        args = [self.test_tool, cfg, ckpt, "--work-dir", work_dir]
        if options:
            args += ["--cfg-options", *options]
        self.run(step, args)
        return test_metrics(work_dir, self.part.keys, self.part.prefix), self.command(args)

    def both_splits(self, step, cfg, ckpt, work_dir, options=(), train_cfg=None) -> dict:
        """Metrics on the test split and (if on) on the training data: the whole training
        split, or the config ``train_cfg`` (a held-out part) where given."""
        metrics, cmd = self.test(step, cfg, ckpt, work_dir + "_test", options)
        entry = {"metrics": metrics, "command": cmd}
        if self.with_train:
            if train_cfg:
                tm, tcmd = self.test(f"{step} (its training part)", train_cfg, ckpt,
                                     work_dir + "_train_test", options)  # fmt: skip
            else:
                tm, tcmd = self.test(f"{step} (training split)", cfg, ckpt,
                                     work_dir + "_train_test",
                                     list(options) + self.part.train_split)  # fmt: skip
            entry.update(train_metrics=tm, train_command=tcmd)
        return entry

    def part_config(self, stage: int, part: str) -> str:
        """The stage-``stage`` config testing on ``part`` of the held-out split."""
        base = self.part.stage1_cfg if stage == 1 else self.part.stage2_cfg
        return heldout_test_config(base, self.cfg_dir, f"test_stage{stage}_on_{part}", part,
                                   self.part.data_env, self.data)  # fmt: skip

    # ---- the runs ---------------------------------------------------------------------------

    def stage1(self) -> None:
        if self.result["stage1"] and not self.force:
            return
        entry = self.both_splits(
            "demo stage 1", self.part.stage1_cfg, self.ckpt1, os.path.join(self.work, "stage1")
        )
        self.result["stage1"] = entry
        self.save()

    def heldout_stage1(self) -> str:
        """Train (once) the stage 1 on the held-out split's stage1 part; its checkpoint."""
        w = os.path.join(self.work, "heldout_stage1")
        ckpt = os.path.join(w, f"iter_{self.part.n1}.pth")
        done = self.result["heldout_stage1"]
        if done and os.path.exists(ckpt) and not self.force:
            return ckpt
        cfg = heldout_config(self.part.stage1_cfg, self.cfg_dir, "heldout_stage1", "stage1")
        args = [self.train_tool, cfg, "--work-dir", w, "--cfg-options",
                *schedule_options(self.part.n1, self.part.scheduler), "randomness.seed=0"]  # fmt: skip
        start = time.time()
        self.run(f"held-out stage 1 ({self.part.n1} iterations on the stage1 part)", args)
        seconds = time.time() - start
        # train_metrics: on the part it trained on; calibration_part_metrics: on the withheld
        # training images it never saw (what stage 2 calibrates on).
        entry = self.both_splits("held-out stage 1", self.part.stage1_cfg, ckpt, w,
                                 train_cfg=self.part_config(1, "stage1"))  # fmt: skip
        cal, cal_cmd = self.test("held-out stage 1 on the calibration part",
                                 self.part_config(1, "calibration"), ckpt,
                                 w + "_calibration_test")  # fmt: skip
        self.result["heldout_stage1"] = dict(
            fraction=HELDOUT_FRACTION,
            seed=HELDOUT_SEED,
            metrics=entry["metrics"],
            train_metrics=entry.get("train_metrics"),
            calibration_part_metrics=cal,
            seconds=round(seconds, 1),
            command=self.command(args) + " && " + entry["command"],
            calibration_part_command=cal_cmd,
        )
        self.save()
        return ckpt

    def find(self, key: dict) -> Optional[int]:
        for i, run in enumerate(self.result["runs"]):
            if all(run.get(k) == v for k, v in key.items()):
                return i
        return None

    def record(self, key: dict, entry: dict) -> None:
        i = self.find(key)
        entry = dict(key, **entry)
        if i is None:
            self.result["runs"].append(entry)
        else:
            self.result["runs"][i] = entry
        self.save()
        m = entry["metrics"]
        print(
            f"[{self.part.name} sweep] {key}: {self.part.tail} {m[self.part.tail]:.2f} "
            f"{self.part.overall} {m[self.part.overall]:.2f}",
            flush=True,
        )

    def posthoc(self, method: str, tau: float, data: str = "train") -> None:
        key = dict(method=method, init=None, data=data, rho=None, lr=None, tau=tau)
        if self.find(key) is not None and not self.force:
            return
        ckpt = self.ckpt1 if data == "train" else self.heldout_stage1()
        name = f"{method}_tau{tau}" + ("_heldout" if data == "heldout" else "")
        opts = [f"{self.part.head}.posthoc.type={method}", f"{self.part.head}.posthoc.tau={tau}"]
        start = time.time()
        # held out: the training-data metrics are those on the calibration part
        train_cfg = self.part_config(2, "calibration") if data == "heldout" else None
        entry = self.both_splits(name, self.part.stage2_cfg, ckpt, os.path.join(self.work, name),
                                 opts, train_cfg=train_cfg)  # fmt: skip
        entry["seconds"] = round(time.time() - start, 1)
        self.record(key, entry)

    def disalign(self, init: str, rho: float, lr: float, data: str = "train") -> None:
        key = dict(method="disalign", init=init, data=data, rho=rho, lr=lr, tau=None)
        if self.find(key) is not None and not self.force:
            return
        p = self.part
        ckpt1 = self.ckpt1 if data == "train" else self.heldout_stage1()
        cfg = p.stage2_cfg
        if data == "heldout":
            cfg = heldout_config(p.stage2_cfg, self.cfg_dir, "heldout_stage2", "calibration")
        name = f"disalign_{init}_rho{rho}_lr{lr}" + ("_heldout" if data == "heldout" else "")
        w = os.path.join(self.work, name)
        opts = [f"model.stage1_checkpoint={ckpt1}", *schedule_options(p.n2, p.scheduler),
                "default_hooks.logger.interval=1", "randomness.seed=0",
                f"{p.loss}.rho={rho}", f"optim_wrapper.optimizer.lr={lr}"]  # fmt: skip
        if init != "zero":  # "prior", "prior_offset"
            opts.append(f"{p.head}.calibration.margin_init={init}")
        args = [self.train_tool, cfg, "--work-dir", w, "--cfg-options", *opts]
        start = time.time()
        self.run(f"DisAlign {init} rho={rho} lr={lr} data={data}", args)
        seconds = time.time() - start
        ckpt2 = os.path.join(w, f"iter_{p.n2}.pth")
        train_cfg = self.part_config(2, "calibration") if data == "heldout" else None
        # Test with the training's calibration options, as a user tests with the config that
        # trained the checkpoint (prior_offset's offset comes from the config's frequencies).
        test_opts = [f"{p.head}.calibration.margin_init={init}"] if init != "zero" else []
        entry = self.both_splits(name, p.stage2_cfg, ckpt2, w, test_opts, train_cfg=train_cfg)
        losses = loss_curve(w)
        entry.update(
            first_loss=mean(losses[:LOSS_WINDOW]),
            final_loss=mean(losses[-LOSS_WINDOW:]),
            seconds=round(seconds, 1),
            command=self.command(args) + " && " + entry["command"],
            calibration=calibration_state(ckpt2, p.state_prefix),
        )
        self.record(key, entry)


def plan(sweep: Sweep, only: Optional[set]) -> List[tuple]:
    """The runs in the issue's order: (group, callable, args)."""
    p, lr0 = sweep.part, sweep.lr0
    rhos = []
    for r in (p.paper_rho, sweep.rho0, 0.0, 0.5, 1.0, 2.0):
        if r not in rhos:
            rhos.append(r)
    first = rhos[:2] if sweep.rho0 != p.paper_rho else rhos[:1]
    steps = [("la", sweep.posthoc, ("logit_adjustment", t)) for t in LA_TAUS]
    steps += [("la", sweep.posthoc, ("tau_norm", t)) for t in TAU_NORM_TAUS]
    steps += [("paper", sweep.disalign, (i, r, lr0)) for r in first for i in ("zero", "prior")]
    steps += [
        ("heldout", sweep.disalign, (i, p.paper_rho, lr0, "heldout")) for i in ("zero", "prior")
    ]
    steps += [("heldout", sweep.posthoc, ("logit_adjustment", 1.0, "heldout"))]
    steps += [
        ("rho", sweep.disalign, (i, r, lr0)) for r in rhos[len(first) :] for i in ("zero", "prior")
    ]
    steps += [("lr", sweep.disalign, ("zero", p.paper_rho, round(lr0 * f, 6))) for f in (0.1, 3.0)]
    # The prior as a fixed offset outside the confidence: stage 2 starts at exactly LA.
    offset_rhos = [r for r in (0.0, 0.5, p.paper_rho, 1.0) if r in rhos]
    steps += [("prior_offset", sweep.disalign, ("prior_offset", r, lr0)) for r in offset_rhos]
    return [s for s in steps if only is None or s[0] in only]  # fmt: skip


def table(path: str) -> str:
    """The sweep JSON at ``path`` as a Markdown table (val and training-data metrics)."""
    with open(path) as f:
        d = json.load(f)
    tail, overall = d["tail_metric"], d["overall_metric"]

    def cell(m, k):
        return f"{m[k]:.2f}" if m and m.get(k) is not None else "-"

    def loss(v):
        return f"{v:.3f}" if v is not None else "-"

    rows = [
        f"| method | init | data | rho | lr | tau | {tail} | {overall} | train {tail} | "
        f"train {overall} | first loss | final loss | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    s1 = d.get("stage1") or {}
    rows.append(f"| stage 1 | | train | | | | {cell(s1.get('metrics'), tail)} | "
                f"{cell(s1.get('metrics'), overall)} | {cell(s1.get('train_metrics'), tail)} | "
                f"{cell(s1.get('train_metrics'), overall)} | | | |")  # fmt: skip
    h = d.get("heldout_stage1")
    if h:
        rows.append(f"| held-out stage 1 | | stage1 part | | | | {cell(h['metrics'], tail)} | "
                    f"{cell(h['metrics'], overall)} | {cell(h.get('train_metrics'), tail)} | "
                    f"{cell(h.get('train_metrics'), overall)} | | | {h.get('seconds', '')} |")  # fmt: skip
        c = h.get("calibration_part_metrics")
        rows.append(f"| (same, on the calibration part) | | | | | | | | {cell(c, tail)} | "
                    f"{cell(c, overall)} | | | |")  # fmt: skip
    for r in d["runs"]:
        rows.append(
            "| " + " | ".join(str(r.get(k)) if r.get(k) is not None else "" for k in
                              ("method", "init", "data", "rho", "lr", "tau"))
            + f" | {cell(r['metrics'], tail)} | {cell(r['metrics'], overall)} | "
            f"{cell(r.get('train_metrics'), tail)} | {cell(r.get('train_metrics'), overall)} | "
            f"{loss(r.get('first_loss'))} | {loss(r.get('final_loss'))} | {r.get('seconds', '')} |"
        )  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("seg", "cls"), required=True)
    parser.add_argument("--demo", help="the demo's output folder (default output/demo/<part>)")
    parser.add_argument("--out", default=os.path.join(ROOT, "output", "sweeps"))
    parser.add_argument("--force", action="store_true", help="rerun runs already recorded")
    parser.add_argument(
        "--only",
        help="comma-separated groups: la, paper, heldout, rho, lr, prior_offset (default all)",
    )
    parser.add_argument(
        "--no-train-metrics", action="store_true", help="skip the tests on the training split"
    )
    parser.add_argument(
        "--record-root",
        default=ROOT,
        help="the repository path to write in the recorded commands, when this script runs "
        "from a copy of it (a snapshot that other work does not change during the sweep)",
    )
    parser.add_argument(
        "--table", action="store_true", help="print the recorded sweep as a table and stop"
    )
    args = parser.parse_args()
    if args.table:
        print(table(os.path.join(os.path.abspath(args.out), f"{args.part}_sweep.json")))
        return
    part = Part(args.part)
    demo = os.path.abspath(args.demo or os.path.join(ROOT, "output", "demo", args.part))
    sweep = Sweep(part, demo, os.path.abspath(args.out), args.force, not args.no_train_metrics,
                  os.path.abspath(args.record_root))  # fmt: skip
    only = set(args.only.split(",")) if args.only else None
    start = time.time()
    sweep.stage1()
    for group, fn, fn_args in plan(sweep, only):
        fn(*fn_args)
    print(f"[{part.name} sweep] {time.time() - start:.0f} s; {sweep.path}", flush=True)


if __name__ == "__main__":
    main()
