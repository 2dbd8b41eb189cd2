#!/usr/bin/env python
"""DisAlign against post-hoc long-tail baselines on the same stage-1 model.

Uses the stage-1 checkpoints and data of the demo (``make demo``, or
``python tools/demo/run_demo.py --output DIR``) and evaluates, with each framework's own
evaluator on the demo's val split:

- stage 1 as trained;
- logit adjustment (Menon et al. 2021): z_j - tau * log(pi_j), pi the training class prior;
  for the detector only the K foreground logits move, as in DisAlign, and the shift is
  centred (mean 0 over the classes) so that it re-ranks classes without moving them all
  against the background (for the segmenter's softmax a common shift changes nothing);
- tau-normalisation (Kang et al. 2020): classifier rows w_j / |w_j|^tau (biases kept);
- DisAlign, the demo's stage-2 numbers (same stage-1 model).

Logit adjustment is the DisAlign calibration with sigma = 1, alpha = 0 and beta = -tau log pi,
so it runs through the same code path.

    python benchmarks/bench_posthoc.py --demo-dir output/demo [--framework det seg] [--tau 0.5 1.0]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_STAGE1 = os.path.join(ROOT, "configs/detectron2/demo/faster_rcnn_tiny_synth.yaml")
DET_STAGE2 = os.path.join(ROOT, "configs/detectron2/demo/disalign_faster_rcnn_tiny_synth.yaml")
SEG_STAGE1 = os.path.join(ROOT, "configs/mmseg/tiny/fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
SEG_STAGE2 = os.path.join(
    ROOT, "configs/mmseg/tiny/disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"
)


def centred_log_prior(counts) -> torch.Tensor:
    """(K,) log pi_j minus its mean over the K classes."""
    c = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    log_pi = (c / c.sum()).log()
    return (log_pi - log_pi.mean()).float()


def tau_normalize_(weight: torch.Tensor, tau: float) -> None:
    """In place: each row (class) of ``weight`` (K, ...) divided by its norm to the power tau."""
    norms = weight.flatten(1).norm(dim=1).clamp(min=1e-12)
    weight.div_(norms.pow(tau).view(-1, *([1] * (weight.dim() - 1))))


# ----------------------------------------------------------------------------- detectron2
def det_posthoc(demo: str, taus) -> dict:
    from detectron2.config import get_cfg

    sys.path.insert(0, os.path.join(ROOT, "projects", "DisAlign"))
    from train_net import Trainer  # noqa: E402

    from disalign_det import DisAlignCheckpointer, add_disalign_config, register_disalign_instances

    with open(os.path.join(demo, "det_results.json")) as f:
        demo_results = json.load(f)
    counts = demo_results["class_image_counts"]
    data = os.path.join(demo, "data")
    for split in ("train", "val"):
        register_disalign_instances(
            f"lvis_synth_{split}", os.path.join(data, f"lvis_synth_{split}.json"), os.path.join(data, "images", "")
        )
    weights = os.path.join(demo, "det_stage1", "model_final.pth")
    tmp = tempfile.mkdtemp(prefix="posthoc_det_")

    def build(config, opts):
        cfg = get_cfg()
        add_disalign_config(cfg)
        cfg.merge_from_file(config)
        cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", str(len(counts)), "OUTPUT_DIR", tmp] + opts)
        model = Trainer.build_model(cfg)
        DisAlignCheckpointer(model).load(weights)
        return cfg, model

    def evaluate(cfg, model):
        res = Trainer.test(cfg, model)
        return {k: float(res["bbox"][k]) for k in ("AP", "APr", "APc", "APf")}

    out = {}
    cfg, model = build(DET_STAGE1, ["MODEL.WEIGHTS", weights])
    out["stage 1"] = evaluate(cfg, model)
    la_opts = [
        "MODEL.WEIGHTS", weights, "MODEL.DISALIGN.CONFIDENCE", "none", "MODEL.DISALIGN.MAGNITUDE", "False",
        "MODEL.DISALIGN.FREEZE", "False", "MODEL.DISALIGN.REWEIGHT", "False",
    ]  # fmt: skip
    for tau in taus:
        cfg, model = build(DET_STAGE2, la_opts)
        with torch.no_grad():
            for m in model.modules():
                if hasattr(m, "calibration") and m.calibration is not None:
                    m.calibration.beta.copy_(-tau * centred_log_prior(counts))
        out[f"logit adjustment tau={tau}"] = evaluate(cfg, model)
    for tau in taus:
        cfg, model = build(DET_STAGE1, ["MODEL.WEIGHTS", weights])
        with torch.no_grad():
            cls = model.roi_heads.box_predictor.cls_score.weight
            tau_normalize_(cls[: len(counts)], tau)  # foreground rows; background row kept
        out[f"tau-normalisation tau={tau}"] = evaluate(cfg, model)
    out["DisAlign (demo stage 2)"] = demo_results["disalign"]
    return out


# ----------------------------------------------------------------------------- MMSegmentation
def seg_posthoc(demo: str, taus) -> dict:
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    import disalign_seg  # noqa: F401  (registration)
    from disalign_core import read_class_frequencies

    with open(os.path.join(demo, "seg_results.json")) as f:
        demo_results = json.load(f)
    data = os.path.join(demo, "data")
    os.environ["DISALIGN_SEG_DATA"] = data
    counts, _ = read_class_frequencies(os.path.join(data, "pixel_frequencies.json"))
    ckpts = glob.glob(os.path.join(demo, "stage1", "iter_*.pth"))
    ckpt = max(ckpts, key=lambda p: int(re.findall(r"iter_(\d+)", p)[-1]))
    keys = ["mIoU", "mAcc", "head_mIoU", "body_mIoU", "tail_mIoU", "tail_mAcc"]

    def evaluate(config, edit, model_opts=None):
        cfg = Config.fromfile(config)
        if model_opts:
            cfg.merge_from_dict(model_opts)
        cfg.work_dir = tempfile.mkdtemp(prefix="posthoc_seg_")
        cfg.load_from = None
        runner = Runner.from_cfg(cfg)
        load_checkpoint(runner.model, ckpt, map_location="cpu")
        with torch.no_grad():
            edit(runner.model)
        metrics = runner.test()
        return {k: float(metrics[k]) for k in keys}

    out = {"stage 1": evaluate(SEG_STAGE1, lambda m: None)}
    la = {
        "model.freeze_for_calibration": False,
        "model.decode_head.calibration": dict(use_magnitude=False, use_margin=True, confidence="none"),
    }
    for tau in taus:
        def set_beta(m, tau=tau):
            m.decode_head.calibration.beta.copy_(-tau * centred_log_prior(counts))

        out[f"logit adjustment tau={tau}"] = evaluate(SEG_STAGE2, set_beta, la)
    for tau in taus:
        out[f"tau-normalisation tau={tau}"] = evaluate(
            SEG_STAGE1, lambda m, tau=tau: tau_normalize_(m.decode_head.conv_seg.weight, tau)
        )
    out["DisAlign (demo stage 2)"] = {k: demo_results["disalign"][k] for k in keys}
    return out


def table(rows: dict) -> str:
    keys = list(next(iter(rows.values())).keys())
    base = rows["stage 1"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        cells = [f"{r[k]:.1f}" + ("" if name == "stage 1" else f" ({r[k] - base[k]:+.1f})") for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", default="output/demo", help="--output folder of run_demo.py")
    parser.add_argument("--framework", nargs="+", default=["det", "seg"], choices=["det", "seg"])
    parser.add_argument("--tau", nargs="+", type=float, default=[0.5, 1.0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    for fw in args.framework:
        demo = os.path.join(args.demo_dir, fw)
        if not os.path.isfile(os.path.join(demo, f"{fw}_results.json")):
            raise FileNotFoundError(
                f"no demo results in {demo}: run `python tools/demo/run_demo.py --output {args.demo_dir}` first"
            )
        results[fw] = (det_posthoc if fw == "det" else seg_posthoc)(demo, args.tau)
    for fw, rows in results.items():
        print(f"\n## {'detectron2, box AP' if fw == 'det' else 'MMSegmentation, IoU/Acc'} "
              "(changes against stage 1 in brackets)\n")
        print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
