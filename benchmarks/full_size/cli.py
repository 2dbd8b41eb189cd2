"""The command line of ``benchmarks/full_size_configs.py``: its options, the hidden ``--worker``
mode (one step of a run or one cost measurement, in the fresh process the runs and
``measure_family`` start), and the loop over the families and backbones asked for, which
saves each result as it comes and ends with the table."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import List, Optional

import full_size

from .cost import MODES, det_save_batch, det_worker, measure_family, mm_save_batch, mm_worker
from .families import DET_BACKBONES, MM_FRAMEWORKS, ROOT, config_paths, families, family_backbones
from .overrides import default_device, summary
from .report import table
from .runs import det_init_weights, run_det_family, run_mm_family


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=full_size.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="output/full_size")
    parser.add_argument("--family", nargs="+", default=list(families()), choices=list(families()))
    parser.add_argument("--backbone", nargs="+", default=["R_50"], choices=list(DET_BACKBONES))
    parser.add_argument("--iters", type=int, default=2, help="training iterations per stage")
    parser.add_argument(
        "--time-iters", type=int, default=2, help="timed iterations per measurement"
    )
    parser.add_argument("--no-timing", action="store_true", help="runs only, no cost measurement")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="cost only, from an earlier run's checkpoints in --out",
    )
    parser.add_argument(
        "--results", default="full_size_results", help="name of the results .json/.md in --out"
    )
    parser.add_argument("--det-images-per-process", type=int, default=2)
    parser.add_argument("--det-train-images", type=int, default=8)
    parser.add_argument("--det-val-images", type=int, default=2)
    parser.add_argument("--seg-train-images", type=int, default=8)
    parser.add_argument("--seg-val-images", type=int, default=2)
    parser.add_argument(
        "--cls-images-per-process",
        type=int,
        default=0,
        help="classification batch per process (default 0: the config's own, 64)",
    )
    parser.add_argument("--cls-val-images", type=int, default=6)
    # FRAMEWORK MODE STAGE1_CFG STAGE2_CFG BATCH_FILE CHECKPOINT: one step in this process
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    return parser


def run_worker(args, out: str) -> int:
    """``--worker``: mode "batch" (save one train batch), "init" (detectron2's stand-in
    initialisation) or a cost mode ("stage1", "stage2", "nograd": prints one JSON line)."""
    fw, mode, stage1, stage2, batch_file, ckpt = args.worker
    frameworks, modes = ("det", *MM_FRAMEWORKS), ("batch", "init", *MODES)
    if fw not in frameworks or mode not in modes or (mode == "init" and fw != "det"):
        raise ValueError(
            f"--worker {fw} {mode}: expected a framework of {frameworks} and a mode of {modes} "
            "(init: det only)"
        )
    if mode == "batch":
        if fw == "det":
            det_save_batch(stage2, out, batch_file, args)
        else:
            mm_save_batch(fw, stage1, stage2, out, batch_file, args)
        return 0
    if mode == "init":
        det_init_weights(stage1, out, batch_file, args)
        return 0
    # the device of the runs, so that a GPU machine measures on its GPU (and measure_steps
    # reads CUDA time and memory there)
    device = default_device()
    if fw == "det":
        r = det_worker(mode, stage1, stage2, out, batch_file, args, device)
    else:
        r = mm_worker(fw, mode, stage1, stage2, out, batch_file, args, ckpt, device)
    print(json.dumps(r))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    if args.worker:
        return run_worker(args, out)

    print(summary(args, out), flush=True)
    path = os.path.join(out, args.results + ".json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    failures, n_runs = [], 0
    for name in args.family:
        for bb in family_backbones(families()[name], args.backbone):
            cfgs = config_paths(families()[name], bb)
            if cfgs is None:
                continue
            key, n_runs = f"{name}@{bb}", n_runs + 1
            print(f"\n=== {key}: {os.path.relpath(cfgs['stage1'], ROOT)} -> "
                  f"{os.path.relpath(cfgs['stage2'], ROOT)}", flush=True)  # fmt: skip
            start = time.time()
            try:
                if args.timing_only:
                    runs = os.path.join(out, "full_size_results.json")
                    earlier = json.load(open(runs)) if os.path.exists(runs) else {}
                    if key not in earlier:
                        raise KeyError(f"--timing-only: no earlier run of {key} in {runs}")
                    entry = {"run": earlier[key]["run"]}
                else:
                    runner = (
                        run_det_family if families()[name]["framework"] == "det" else run_mm_family
                    )
                    entry = {"run": runner(name, cfgs, args, out)}
                if not args.no_timing:
                    entry["cost"] = measure_family(name, cfgs, args, out, entry["run"])
            except Exception as e:  # report every family, then fail
                failures.append(key)
                print(f"=== {key}: FAILED\n{e}", flush=True)
                continue
            entry["seconds"] = round(time.time() - start, 1)
            results[key] = entry
            print(f"=== {key}: passed in {entry['seconds']:.0f} s; stage 1 {entry['run']['stage1']['metrics']}"
                  f"; stage 2 {entry['run']['stage2']['metrics']}", flush=True)  # fmt: skip
            if "cost" in entry:
                print(f"=== {key}: cost {json.dumps(entry['cost']['ratios'])}", flush=True)
            with open(path, "w") as f:
                json.dump(results, f, indent=1)
    with open(os.path.join(out, args.results + ".md"), "w") as f:
        f.write(table(results) + "\n")
    print("\n" + table(results))
    if failures:
        print(f"\nFAILED: {failures}")
        return 1
    print(f"\nall {n_runs} family x backbone runs passed")
    return 0
