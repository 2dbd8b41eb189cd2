#!/usr/bin/env python
"""The main job: DisAlign on built-in long-tailed data, with detectron2, MMSegmentation and
MMPretrain.

Runs ``det_demo.py`` (Mask R-CNN-style detector, LVIS metrics), ``seg_demo.py`` (FCN,
ADE20K-style head/body/tail metrics) and ``cls_demo.py`` (ResNet-18 classifier, many/medium/few
top-1) one after the other, each training stage 1 and then the DisAlign calibration stage from
its checkpoint, then prints one table of stage 1 against DisAlign and writes plots:

- ``calibration_vs_frequency.png``: learned magnitude alpha and margin beta against class
  frequency (the supplement's Figure 1);
- ``groups_before_after.png``: per-group metrics of stage 1 and DisAlign;
- ``<part>/per_class_change_<part>.png``: each class's change (box AP, IoU and Acc, top-1)
  against its training frequency, drawn by ``tools/compare_results.py`` from the two
  evaluations' outputs (the command each half runs; see its ``commands``).

Usage::

    python tools/demo/run_demo.py --output output/demo [--quick] [--only det|seg|cls]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

DET_ROWS = [("AP", "det"), ("APr", "det"), ("APc", "det"), ("APf", "det")]
SEG_ROWS = [
    (k, "seg")
    for k in [
        "mIoU",
        "mAcc",
        "head_mIoU",
        "body_mIoU",
        "tail_mIoU",
        "head_mAcc",
        "body_mAcc",
        "tail_mAcc",
    ]
]
CLS_ROWS = [(k, "cls") for k in ["top1", "many_top1", "medium_top1", "few_top1"]]
PARTS = ("det", "seg", "cls")
TITLES = {"det": "detectron2", "seg": "MMSegmentation", "cls": "MMPretrain"}


def run_part(name: str, out: str, quick: bool) -> dict:
    """Run ``<name>_demo.py`` in a subprocess (its log streams through) and load its JSON."""
    script = os.path.join(HERE, f"{name}_demo.py")
    cmd = [sys.executable, script, "--output", os.path.join(out, name)] + (
        ["--quick"] if quick else []
    )
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.time()
    subprocess.run(cmd, check=True)
    with open(os.path.join(out, name, f"{name}_results.json")) as f:
        result = json.load(f)
    result.setdefault("seconds", time.time() - start)
    print(f"=== {name}: done in {time.time() - start:.0f} s", flush=True)
    return result


def format_table(results: dict) -> str:
    """A markdown table: metric | stage 1 | DisAlign | change."""
    lines = ["| framework | metric | stage 1 | DisAlign | change |", "|---|---|---|---|---|"]
    for rows, part, label in [
        (DET_ROWS, "det", "detectron2 (box)"),
        (SEG_ROWS, "seg", "MMSegmentation"),
        (CLS_ROWS, "cls", "MMPretrain (top-1)"),
    ]:
        if part not in results:
            continue
        r = results[part]
        for key, _ in rows:
            a, b = r["stage1"].get(key), r["disalign"].get(key)
            if a is None or b is None:
                continue
            lines.append(f"| {label} | {key} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    return "\n".join(lines)


def plot(results: dict, out: str) -> list:
    """Write the two figures; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    parts = [p for p in PARTS if p in results]
    fig, axes = plt.subplots(len(parts), 2, figsize=(10, 3.6 * len(parts)), squeeze=False)
    for row, part in enumerate(parts):
        r = results[part]
        freq = np.asarray(r.get("class_image_counts") or r.get("class_pixel_counts"), dtype=float)
        xlabel = "labelled pixels per class" if part == "seg" else "training images per class"
        order = np.argsort(-freq)
        for col, key, sym in [(0, "alpha", "magnitude α"), (1, "beta", "margin β")]:
            ax = axes[row, col]
            vals = r.get(key)
            if vals is None:
                ax.set_visible(False)
                continue
            vals = np.asarray(vals, dtype=float)
            ax.scatter(freq[order], vals[order], s=14, c=np.log10(freq[order] + 1), cmap="viridis")
            ax.set_xscale("log")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(sym)
            ax.set_title(f"{TITLES[part]}: learned {sym}")
    fig.suptitle("DisAlign calibration against class frequency (cf. supplement Fig. 1)")
    fig.tight_layout()
    path = os.path.join(out, "calibration_vs_frequency.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    groups = {
        "det": ["APr", "APc", "APf", "AP"],
        "seg": ["tail_mIoU", "body_mIoU", "head_mIoU", "mIoU"],
        "cls": ["few_top1", "medium_top1", "many_top1", "top1"],
    }
    group_titles = {
        "det": "detectron2, box AP",
        "seg": "MMSegmentation, IoU (%)",
        "cls": "MMPretrain, top-1 (%)",
    }
    fig, axes = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 3.8), squeeze=False)
    for col, part in enumerate(parts):
        ax = axes[0, col]
        keys = groups[part]
        x = np.arange(len(keys))
        before = [results[part]["stage1"][k] for k in keys]
        after = [results[part]["disalign"][k] for k in keys]
        ax.bar(x - 0.2, before, 0.4, label="stage 1")
        ax.bar(x + 0.2, after, 0.4, label="DisAlign")
        for xi, (b, a) in enumerate(zip(before, after)):
            ax.annotate(f"{a - b:+.1f}", (xi + 0.2, a), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [k.replace("_", " ") for k in keys])
        ax.set_title(group_titles[part])
        ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "groups_before_after.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="output/demo", help="folder for data, logs, results")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (smoke test)")
    parser.add_argument("--only", choices=list(PARTS), help="run one framework only")
    args = parser.parse_args(argv)

    os.makedirs(args.output, exist_ok=True)
    start = time.time()
    results = {}
    for part in PARTS:
        if args.only in (None, part):
            results[part] = run_part(part, args.output, args.quick)

    table = format_table(results)
    figures = plot(results, args.output)
    figures += [
        r["per_class_change"]["figure"] for r in results.values() if "per_class_change" in r
    ]
    total = time.time() - start
    report = (
        f"# DisAlign demo results\n\nCommand: `{' '.join([os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:]))}`"
        f"  \nTotal time: {total / 60:.1f} min\n\n{table}\n"
    )
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n" + table)
    print(f"\nTotal time {total / 60:.1f} min. Results: {os.path.join(args.output, 'results.md')}")
    for p in figures:
        print(f"Figure: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
