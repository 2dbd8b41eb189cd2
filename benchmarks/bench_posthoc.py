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
- for the classifier (MMPretrain) also the two re-training baselines of Kang et al. 2020, on
  the stage-1 features of the training images (frozen backbone, class-balanced sampling):
  cRT (the linear classifier re-initialised and re-trained) and LWS (a learned scale f_j per
  class, z_j -> f_j z_j); the trained classifier is written into the stage-1 model and
  evaluated by MMPretrain's runner like the others;
- DisAlign, the demo's stage-2 numbers (same stage-1 model).

Logit adjustment is the DisAlign calibration with sigma = 1, alpha = 0 and beta = -tau log pi,
so it runs through the same code path.

    python benchmarks/bench_posthoc.py --demo-dir output/demo [--framework det seg cls] [--tau 0.5 1.0]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tempfile

import torch

from disalign_core import logit_adjustment_margin, tau_normalize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_STAGE1 = os.path.join(ROOT, "configs/detectron2/demo/faster_rcnn_tiny_synth.yaml")
DET_STAGE2 = os.path.join(ROOT, "configs/detectron2/demo/disalign_faster_rcnn_tiny_synth.yaml")
SEG_STAGE1 = os.path.join(ROOT, "configs/mmseg/tiny/fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
SEG_STAGE2 = os.path.join(
    ROOT, "configs/mmseg/tiny/disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"
)
CLS_STAGE1 = os.path.join(
    ROOT, "configs/mmpretrain/tiny/resnet18-tiny_1xb64-400it_synthetic-32x32.py"
)
CLS_STAGE2 = os.path.join(
    ROOT, "configs/mmpretrain/tiny/disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py"
)
# cRT and LWS on cached features: iterations, batch, LR (SGD, momentum 0.9, cosine to 0), seed
RETRAIN = dict(iters=400, batch=64, lr=0.1, weight_decay=5e-4, seed=0)


def la_margin(counts, tau: float) -> torch.Tensor:
    """(K,) the centred logit-adjustment margin -tau log pi (core ``logit_adjustment_margin``)."""
    return logit_adjustment_margin(counts, tau).float()


def tau_normalize_(weight: torch.Tensor, tau: float) -> None:
    """In place: ``weight`` (K, ...) replaced by its tau-normalised rows (core ``tau_normalize``)."""
    weight.copy_(tau_normalize(weight, tau)[0])


# ----------------------------------------------------------------------------- detectron2
def det_posthoc(demo: str, taus) -> dict:
    from detectron2.config import get_cfg

    from disalign_demo.det import add_tiny_backbone_config
    from disalign_det import DisAlignCheckpointer, add_disalign_config, register_disalign_instances
    from disalign_det.engine import Trainer

    with open(os.path.join(demo, "det_results.json")) as f:
        demo_results = json.load(f)
    counts = demo_results["class_image_counts"]
    data = os.path.join(demo, "data")
    for split in ("train", "val"):
        register_disalign_instances(
            f"lvis_synth_{split}",
            os.path.join(data, f"lvis_synth_{split}.json"),
            os.path.join(data, "images", ""),
        )
    weights = os.path.join(demo, "det_stage1", "model_final.pth")
    tmp = tempfile.mkdtemp(prefix="posthoc_det_")

    def build(config, opts):
        cfg = get_cfg()
        add_disalign_config(cfg)
        add_tiny_backbone_config(cfg)
        cfg.merge_from_file(config)
        cfg.merge_from_list(
            ["MODEL.ROI_HEADS.NUM_CLASSES", str(len(counts)), "OUTPUT_DIR", tmp] + opts
        )
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
                    m.calibration.beta.copy_(la_margin(counts, tau))
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
        "model.decode_head.calibration": dict(
            use_magnitude=False, use_margin=True, confidence="none"
        ),
    }
    for tau in taus:

        def set_beta(m, tau=tau):
            m.decode_head.calibration.beta.copy_(la_margin(counts, tau))

        out[f"logit adjustment tau={tau}"] = evaluate(SEG_STAGE2, set_beta, la)
    for tau in taus:
        out[f"tau-normalisation tau={tau}"] = evaluate(
            SEG_STAGE1, lambda m, tau=tau: tau_normalize_(m.decode_head.conv_seg.weight, tau)
        )
    out["DisAlign (demo stage 2)"] = {k: demo_results["disalign"][k] for k in keys}
    return out


# ----------------------------------------------------------------------------- MMPretrain
def _class_balanced_batches(
    labels: torch.Tensor, num_classes: int, iters: int, batch: int, seed: int
):
    """Indices of ``iters`` batches: a class drawn uniformly, then an image of it uniformly."""
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    for _ in range(iters):
        classes = torch.randint(0, num_classes, (batch,), generator=g)
        yield torch.stack(
            [by_class[c][torch.randint(0, len(by_class[c]), (1,), generator=g)][0] for c in classes]
        )


def _retrain(params, logits_fn, feats, labels, num_classes):
    """SGD (momentum 0.9, cosine LR) of ``params`` on class-balanced batches of cached features."""
    cfg = RETRAIN
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["iters"])
    for idx in _class_balanced_batches(
        labels, num_classes, cfg["iters"], cfg["batch"], cfg["seed"]
    ):
        loss = torch.nn.functional.cross_entropy(logits_fn(feats[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def crt_classifier(feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """cRT: a new linear classifier trained on frozen features with class-balanced sampling.

    Returns:
        (weight (K, C), bias (K,)).
    """
    torch.manual_seed(RETRAIN["seed"])
    fc = torch.nn.Linear(feats.shape[1], num_classes)
    torch.nn.init.normal_(fc.weight, std=0.01)
    torch.nn.init.zeros_(fc.bias)
    _retrain(fc.parameters(), fc, feats, labels, num_classes)
    return fc.weight.detach(), fc.bias.detach()


def lws_scales(feats: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """LWS: per-class scales f (K,) of the stage-1 logits, z_j -> f_j z_j, learned on frozen
    features with class-balanced sampling (the classifier itself stays fixed)."""
    f = torch.ones(weight.shape[0], requires_grad=True)
    _retrain([f], lambda x: (x @ weight.t() + bias) * f, feats, labels, weight.shape[0])
    return f.detach()


def cls_posthoc(demo: str, taus) -> dict:
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    import disalign_cls  # noqa: F401  (registration)

    with open(os.path.join(demo, "cls_results.json")) as f:
        demo_results = json.load(f)
    data = os.path.join(demo, "data")
    os.environ["DISALIGN_CLS_DATA"] = data
    counts = demo_results["class_image_counts"]
    k = len(counts)
    ckpts = glob.glob(os.path.join(demo, "stage1", "iter_*.pth"))
    ckpt = max(ckpts, key=lambda p: int(re.findall(r"iter_(\d+)", p)[-1]))
    keys = ["top1", "many_top1", "medium_top1", "few_top1"]

    def runner_for(config, model_opts=None):
        cfg = Config.fromfile(config)
        if model_opts:
            cfg.merge_from_dict(model_opts)
        cfg.work_dir = tempfile.mkdtemp(prefix="posthoc_cls_")
        cfg.load_from = None
        runner = Runner.from_cfg(cfg)
        load_checkpoint(runner.model, ckpt, map_location="cpu")
        return runner

    def evaluate(config, edit, model_opts=None):
        runner = runner_for(config, model_opts)
        with torch.no_grad():
            edit(runner.model)
        metrics = runner.test()
        return {key: float(metrics[f"accuracy/{key}"]) for key in keys}

    out = {"stage 1": evaluate(CLS_STAGE1, lambda m: None)}
    la = {
        "model.freeze_for_calibration": False,
        "model.stage1_checkpoint": None,
        "model.head.calibration": dict(use_magnitude=False, use_margin=True, confidence="none"),
    }
    for tau in taus:

        def set_beta(m, tau=tau):
            m.head.calibration.beta.copy_(la_margin(counts, tau))

        out[f"logit adjustment tau={tau}"] = evaluate(CLS_STAGE2, set_beta, la)
    for tau in taus:
        out[f"tau-normalisation tau={tau}"] = evaluate(
            CLS_STAGE1, lambda m, tau=tau: tau_normalize_(m.head.fc.weight, tau)
        )

    # Stage-1 features of the training images (test pipeline: no augmentation).
    runner = runner_for(CLS_STAGE1)
    model = runner.model.eval()
    loader_cfg = dict(runner.cfg.test_dataloader)
    loader_cfg["dataset"] = dict(loader_cfg["dataset"], ann_file="meta/train.txt")
    feats, labels = [], []
    with torch.no_grad():
        for batch in Runner.build_dataloader(loader_cfg):
            batch = model.data_preprocessor(batch, False)
            feats.append(model.extract_feat(batch["inputs"], stage="pre_logits"))
            labels.append(torch.cat([s.gt_label for s in batch["data_samples"]]))
    feats, labels = torch.cat(feats), torch.cat(labels)
    weight, bias = crt_classifier(feats, labels, k)

    def set_fc(m, weight=weight, bias=bias):
        m.head.fc.weight.copy_(weight)
        m.head.fc.bias.copy_(bias)

    out["cRT"] = evaluate(CLS_STAGE1, set_fc)
    w1, b1 = model.head.fc.weight.detach().clone(), model.head.fc.bias.detach().clone()
    f = lws_scales(feats, labels, w1, b1)
    out["LWS"] = evaluate(CLS_STAGE1, lambda m: set_fc(m, w1 * f[:, None], b1 * f))
    out["DisAlign (demo stage 2)"] = {key: demo_results["disalign"][key] for key in keys}
    return out


def table(rows: dict) -> str:
    keys = list(next(iter(rows.values())).keys())
    base = rows["stage 1"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        cells = [
            f"{r[k]:.1f}" + ("" if name == "stage 1" else f" ({r[k] - base[k]:+.1f})") for k in keys
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="output/demo", help="--output folder of run_demo.py")
    parser.add_argument(
        "--framework", nargs="+", default=["det", "seg", "cls"], choices=["det", "seg", "cls"]
    )
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
        results[fw] = {"det": det_posthoc, "seg": seg_posthoc, "cls": cls_posthoc}[fw](
            demo, args.tau
        )
    titles = {
        "det": "detectron2, box AP",
        "seg": "MMSegmentation, IoU/Acc",
        "cls": "MMPretrain, top-1 (%)",
    }
    for fw, rows in results.items():
        print(f"\n## {titles[fw]} (changes against stage 1 in brackets)\n")
        print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
