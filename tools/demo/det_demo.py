#!/usr/bin/env python
"""The detectron2 half of the DisAlign demo: on generated long-tailed LVIS-format data, train
stage 1 and DisAlign stage 2 with projects/DisAlign/train_net.py's code (disalign_det.engine),
evaluate both with LVISEvaluator, and write DIR/det_results.json.

    python tools/demo/det_demo.py --output output/demo [--quick]

det_results.json: {"stage1": {"AP", "APr", "APc", "APf"}, "disalign": {...}} (box AP, in %),
"class_names", "class_image_counts" (training images per class), "alpha", "beta" (the learned
magnitude and margin per class), "per_class_change" (the figure and table of
tools/compare_results.py: each category's box AP change against its training images, from the
predictions both evaluations wrote), "commands" (the equivalent command lines), "seconds".
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import torch

from disalign_demo.det import add_tiny_backbone_config, generate_lvis_synthetic
from disalign_det import engine

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRAIN_NET = os.path.join(REPO, "projects", "DisAlign", "train_net.py")
COMPARE = os.path.join(REPO, "tools", "compare_results.py")
DEMO_CONFIGS = os.path.join(REPO, "configs", "detectron2", "demo")
METRICS = ("AP", "APr", "APc", "APf")


def run_stage(argv, commands):
    """Run train_net.py --demo's code in this process with the given command line; return box
    metrics."""
    command = ["python", os.path.relpath(TRAIN_NET), "--demo", *argv]
    commands.append(" ".join(shlex.quote(a) for a in command))
    args = engine.argument_parser().parse_args(argv)
    results = engine.main(args, config_hooks=[add_tiny_backbone_config])
    return {k: float(results["bbox"][k]) for k in METRICS}


def first_calibration(checkpoint_path):
    """alpha and beta of the first calibration in a stage-2 checkpoint, as lists."""
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["model"]
    prefix = sorted(k[: -len("alpha")] for k in state if k.endswith("calibration.alpha"))[0]
    return state[prefix + "alpha"].tolist(), state[prefix + "beta"].tolist()


def per_class_change(out, stage1_dir, stage2_dir, info, commands):
    """Run tools/compare_results.py (the command a user runs) on the predictions LVISEvaluator
    wrote in both OUTPUT_DIRs: LVISEval per category, no model runs again. Returns the paths
    of its figure and table."""
    figure = os.path.join(out, "per_class_change_det.png")
    table = os.path.join(out, "per_class_det.json")
    argv = [
        "--framework", "det", "--stage1", stage1_dir, "--stage2", stage2_dir,
        "--gt", info["val_json"], "--frequencies", info["train_json"],  # training image counts
        "--plot", figure, "--json", table,
        "--title", "detectron2 demo: box AP per category, DisAlign - stage 1",
    ]  # fmt: skip
    commands.append(shlex.join(["python", os.path.relpath(COMPARE), *argv]))
    print("[det_demo] per-class change: tools/compare_results.py", flush=True)
    subprocess.run([sys.executable, COMPARE, *argv], check=True)
    return {"figure": figure, "json": table}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (for tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1, see below)"
    )
    args = parser.parse_args(argv)
    # Tiny models on 64x64 images: one thread is faster than two here, and much faster when
    # the other core is busy (seen: 0.13 s vs 6.6 s per stage-1 iteration, batch 8).
    torch.set_num_threads(args.threads)
    start = time.time()
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)

    if args.quick:
        data_kw = dict(num_classes=12, num_frequent=3, num_common=4, val_instances_per_class=3)
        stage_opts = [["SOLVER.MAX_ITER", "20", "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()"],
                      ["SOLVER.MAX_ITER", "10", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()"]]  # fmt: skip
    else:
        data_kw, stage_opts = {}, [[], []]
    print(f"[det_demo] generating the long-tailed LVIS-format data in {out}/data", flush=True)
    info = generate_lvis_synthetic(os.path.join(out, "data"), seed=args.seed, **data_kw)
    counts = info["train_image_counts"]
    common = [
        "--register", "lvis_synth_train", info["train_json"], info["image_root"],
        "--register", "lvis_synth_val", info["val_json"], info["image_root"],
    ]  # fmt: skip
    num_classes = ["MODEL.ROI_HEADS.NUM_CLASSES", str(len(counts))]

    commands = []
    stage1_dir, stage2_dir = os.path.join(out, "det_stage1"), os.path.join(out, "det_disalign")
    print("[det_demo] stage 1: joint learning", flush=True)
    stage1 = run_stage(
        [*common, "--config-file", os.path.join(DEMO_CONFIGS, "faster_rcnn_tiny_synth.yaml"),
         *num_classes, *stage_opts[0], "OUTPUT_DIR", stage1_dir],
        commands,
    )  # fmt: skip
    print("[det_demo] stage 2: DisAlign calibration", flush=True)
    disalign = run_stage(
        [*common, "--config-file", os.path.join(DEMO_CONFIGS, "disalign_faster_rcnn_tiny_synth.yaml"),
         *num_classes, *stage_opts[1], "MODEL.WEIGHTS", os.path.join(stage1_dir, "model_final.pth"),
         "OUTPUT_DIR", stage2_dir],
        commands,
    )  # fmt: skip
    alpha, beta = first_calibration(os.path.join(stage2_dir, "model_final.pth"))
    change = per_class_change(out, stage1_dir, stage2_dir, info, commands)

    results = {
        "stage1": stage1,
        "disalign": disalign,
        "class_names": info["class_names"],
        "class_image_counts": counts,
        "alpha": alpha,
        "beta": beta,
        "per_class_change": change,
        "commands": commands,
        "seconds": round(time.time() - start, 1),
    }
    with open(os.path.join(out, "det_results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n[det_demo] box AP on the generated val split (LVISEvaluator, %)")
    print(f"{'':10s}" + "".join(f"{m:>8s}" for m in METRICS))
    for name, row in (("stage 1", stage1), ("DisAlign", disalign)):
        print(f"{name:10s}" + "".join(f"{row[m]:8.2f}" for m in METRICS))
    print(f"[det_demo] wrote {os.path.join(out, 'det_results.json')} in {results['seconds']} s")
    return results


if __name__ == "__main__":
    main()
