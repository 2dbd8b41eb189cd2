#!/usr/bin/env python
"""GPU check: DisAlign's stage-2 cost at full size on a CUDA GPU, and one tiny stage 1 -> stage 2
-> evaluation per framework on it.

    python benchmarks/gpu_check.py --out output/gpu

1. Cost at full size, for LVIS v1 Mask R-CNN R-50 (``configs/detectron2/LVISv1/``) and ADE20K
   FCN R-50 (``configs/mmseg/``): ``benchmarks/full_size_configs.py`` generates data of the
   config's size, runs the shipped stage-1 and stage-2 configs for ``--iters`` iterations with
   the user's entry points (train_net.py, mmseg's tools/train.py; both on the GPU) and their
   evaluators, and saves one batch of the stage-2 train loader. Then, each in a fresh process
   on that batch and the stage-1 checkpoint: a stage-1 training iteration, a stage-2
   (calibration) training iteration and the stage-2 model's training forward under
   ``torch.no_grad()`` (the floor of stage 2), in fp32 and AMP (``torch.autocast`` float16
   with a ``GradScaler``, as detectron2's AMPTrainer and mmengine's AmpOptimWrapper do).
   Median wall time of ``--time-iters`` iterations after one warm-up, and peak memory:
   ``torch.cuda.max_memory_allocated`` (absolute, weights included) and its rise above the
   memory allocated before the first iteration. The overrides of the shipped configs are
   full_size_configs.py's (it prints them; its code is the ``benchmarks/full_size`` package,
   whose runs, batch and model building this script reuses): its per-process detectron2 batch
   of 2 images, the configs' own mmseg batch.
2. Tiny runs on the GPU, one per framework: detectron2 (tools/demo/det_demo.py's tiny
   Faster R-CNN, ``--quick`` schedule, with MODEL.DEVICE cuda), MMSegmentation and MMPretrain
   (tools/demo/seg_demo.py / cls_demo.py ``--quick``; mmengine puts them on the GPU when one
   is visible): stage 1 -> DisAlign stage 2 -> evaluation.

Writes ``<out>/gpu_check.json`` (environment, every measurement, the tiny runs' metrics,
failures) and ``<out>/gpu_check.md`` (the tables it prints); logs under ``<out>/``.

Exit codes:
    0  every check passed, or there is no CUDA GPU (then it prints one line,
       "gpu_check: no CUDA GPU ...", and runs nothing);
    1  a check failed (each one is tried; the JSON and the tables say which);
    2  bad command line.

``--device cpu`` runs the same on CPU (slow: full size on CPU takes many minutes per family;
AMP is then bfloat16 autocast without a GradScaler), ``--dry-run`` only prints what would run
and checks that the configs and scripts exist. ``--skip-cost`` / ``--skip-tiny`` leave out a
part.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS_DEMO = os.path.join(ROOT, "tools", "demo")
# benchmarks/ is a folder of scripts, not an installed package: on sys.path, its full_size
# package (full_size_configs.py's code) and its common module import as top-level names; ROOT
# for the checkout's own packages. The full_size imports stay inside the functions, after main
# has hidden the GPU for --device cpu.
for _p in (HERE, ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

NO_GPU_EXIT = 0
COST_FAMILIES = ("LVISv1/mask_rcnn", "ADE20K/fcn")
BACKBONE = "R_50"
MODES = ("stage1", "stage2", "nograd")
PRECISIONS = ("fp32", "amp")
TINY_PARTS = ("det", "seg", "cls")
# det_demo.py --quick: 12 classes, stage 1 20 iterations, stage 2 10
TINY_DET_DATA = dict(num_classes=12, num_frequent=3, num_common=4, val_instances_per_class=3)
TINY_DET_SCHEDULES = (
    ["SOLVER.MAX_ITER", "20", "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()"],
    ["SOLVER.MAX_ITER", "10", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()"],
)
TINY_METRICS = {
    "det": ("AP", "APr", "APc", "APf"),
    "seg": ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU"),
    "cls": ("top1", "many_top1", "medium_top1", "few_top1"),
}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="output/gpu", help="output folder")
    parser.add_argument(
        "--device", default="cuda", choices=("cuda", "cpu"), help="default cuda (see above)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--skip-cost", action="store_true", help="no full-size cost measurement")
    parser.add_argument("--skip-tiny", action="store_true", help="no tiny runs")
    parser.add_argument("--family", nargs="+", default=list(COST_FAMILIES), choices=COST_FAMILIES)
    parser.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument(
        "--iters", type=int, default=2, help="training iterations per stage of the full runs"
    )
    parser.add_argument(
        "--time-iters", type=int, default=5, help="timed iterations per measurement"
    )
    parser.add_argument(
        "--det-images-per-process",
        type=int,
        default=2,
        help="detectron2 batch (one GPU's share of the configs' 16 over 8 GPUs)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def full_size_args(args) -> argparse.Namespace:
    """The options the full_size package's functions read (full_size_configs.py's defaults,
    ours where shared)."""
    return argparse.Namespace(
        iters=args.iters,
        time_iters=args.time_iters,
        det_images_per_process=args.det_images_per_process,
        det_train_images=8,
        det_val_images=2,
        seg_train_images=8,
        seg_val_images=2,
        cls_images_per_process=0,
        cls_val_images=6,
    )


def device_env(device: str) -> dict:
    """The environment of the child processes: on --device cpu, no GPU visible to them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ----------------------------------------------------------------------------- cost workers
def _amp(device: str):
    """(autocast context factory, GradScaler) of AMP on ``device``."""
    import torch

    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    return (lambda: torch.autocast(device_type=device, dtype=dtype)), scaler


def cost_worker(spec: dict) -> dict:
    """One measurement in this process. ``spec``: framework ("det"/"seg"), mode ("stage1",
    "stage2", "nograd"), precision ("fp32"/"amp"), device, stage1_cfg, stage2_cfg, batch_file,
    checkpoint (the stage-1 checkpoint), opts (detectron2 options), full_size_args (mmseg: the
    options of full_size's overrides), out (working directory), time_iters, demo (add the
    demo's tiny backbone keys: for tests). The model is full_size's (``det_model`` /
    ``mm_model``) on ``device``; the step adds AMP."""
    import contextlib

    import torch
    from full_size.cost import det_model, measure_steps, mm_model

    device, mode = spec["device"], spec["mode"]
    amp = spec["precision"] == "amp"
    autocast, scaler = _amp(device) if amp else (contextlib.nullcontext, None)
    os.chdir(spec["out"])
    batch = torch.load(spec["batch_file"], weights_only=False)
    if spec["framework"] == "det":
        from detectron2.solver import build_optimizer
        from detectron2.utils.events import EventStorage

        cfg, model = det_model(
            mode, spec["stage1_cfg"], spec["stage2_cfg"], spec["opts"], spec["checkpoint"],
            device, demo=spec.get("demo", False),
        )  # fmt: skip
        optimizer = build_optimizer(cfg, model) if mode != "nograd" else None

        def losses():
            return sum(model(batch).values())

        storage = EventStorage(0)
    else:
        from mmengine.optim import build_optim_wrapper

        cfg, model = mm_model(
            spec["framework"], mode, spec["stage1_cfg"], spec["stage2_cfg"],
            spec["full_size_args"], spec["checkpoint"], device,
        )  # fmt: skip
        data = model.data_preprocessor(batch, training=True)
        optimizer = None
        if mode != "nograd":
            optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer

        def losses():
            loss, _ = model.parse_losses(model(**data, mode="loss"))
            return loss

        storage = contextlib.nullcontext()
    model.train()

    if mode == "nograd":

        def step():
            with torch.no_grad(), autocast():
                losses()

    else:

        def step():
            with autocast():
                loss = losses()
            optimizer.zero_grad()
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()

    with storage:
        result = measure_steps(step, spec["time_iters"])
    if device == "cuda":
        result["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
    result.update(device=device, precision=spec["precision"], mode=mode)
    return result


def _slug(name: str) -> str:
    return name.replace("/", "_").replace(".", "")


def measure_family(name: str, args, out: str, log: List[str]) -> dict:
    """Full-size runs of one family (full_size_configs.py) and its cost per precision."""
    from common import run_isolated
    from full_size.families import SCRIPT, config_paths, families
    from full_size.overrides import det_env, det_overrides, get_stage2_weights
    from full_size.runs import run_det_family, run_mm_family

    fargs = full_size_args(args)
    family = families()[name]
    fw = family["framework"]
    cfgs = config_paths(family, BACKBONE)
    env = det_env(out) if fw == "det" else None
    if fw == "det":
        os.environ["DETECTRON2_DATASETS"] = os.path.join(out, "datasets")
    runner = run_det_family if fw == "det" else run_mm_family
    start = time.time()
    run = runner(name, cfgs, fargs, out)  # generated data, stage 1, stage 2, evaluations
    log.append(f"{name}: full-size stage 1 and stage 2 in {time.time() - start:.0f} s")
    if fw == "det":
        ckpt = get_stage2_weights(cfgs["stage2"])  # relative to out, as the configs say
        ckpt = os.path.join(out, ckpt)
    else:
        ckpt = run["stage1_checkpoint"]
    batch_file = os.path.join(out, "logs", f"{_slug(name)}_gpu_batch.pt")
    worker = [SCRIPT, "--worker", fw, "batch",
              cfgs["stage1"], cfgs["stage2"], batch_file, ckpt, "--out", out,
              "--iters", str(args.iters),
              "--det-images-per-process", str(args.det_images_per_process)]  # fmt: skip
    subprocess.run([sys.executable, *worker], check=True, env=env)
    result = {"configs": cfgs, "run": run}
    for precision in args.precision:
        r = {}
        for mode in MODES:
            spec = dict(
                framework=fw, mode=mode, precision=precision, device=args.device,
                stage1_cfg=cfgs["stage1"], stage2_cfg=cfgs["stage2"], batch_file=batch_file,
                checkpoint=ckpt, out=out, time_iters=args.time_iters,
                opts=det_overrides(fargs, 1 if mode == "stage1" else 2) if fw == "det" else [],
                full_size_args=vars(fargs),
            )  # fmt: skip
            r[mode] = run_isolated([os.path.abspath(__file__), "--worker", json.dumps(spec)])
        r["ratios"] = dict(
            stage2_over_stage1_time=r["stage2"]["median_s"] / r["stage1"]["median_s"],
            stage2_over_nograd_time=r["stage2"]["median_s"] / r["nograd"]["median_s"],
            stage2_over_stage1_memory=r["stage2"]["peak_bytes"] / max(1, r["stage1"]["peak_bytes"]),
        )  # fmt: skip
        result[precision] = r
    return result


# ----------------------------------------------------------------------------- tiny runs
def tiny_det_worker(spec: dict) -> dict:
    """det_demo.py's --quick run (its code: disalign_det.engine, as train_net.py --demo) with
    MODEL.DEVICE set to the device."""
    sys.path.insert(0, TOOLS_DEMO)
    import det_demo

    from disalign_demo.det import generate_lvis_synthetic

    out = spec["out"]
    info = generate_lvis_synthetic(os.path.join(out, "data"), seed=0, **TINY_DET_DATA)
    common = [
        "--register", "lvis_synth_train", info["train_json"], info["image_root"],
        "--register", "lvis_synth_val", info["val_json"], info["image_root"],
    ]  # fmt: skip
    device = [
        "MODEL.DEVICE",
        spec["device"],
        "MODEL.ROI_HEADS.NUM_CLASSES",
        str(len(info["class_names"])),
    ]
    commands: List[str] = []
    s1, s2 = os.path.join(out, "stage1"), os.path.join(out, "disalign")
    stage1 = det_demo.run_stage(
        [*common, "--config-file", os.path.join(det_demo.DEMO_CONFIGS, "faster_rcnn_tiny_synth.yaml"),
         *TINY_DET_SCHEDULES[0], *device, "OUTPUT_DIR", s1],
        commands,
    )  # fmt: skip
    disalign = det_demo.run_stage(
        [*common, "--config-file",
         os.path.join(det_demo.DEMO_CONFIGS, "disalign_faster_rcnn_tiny_synth.yaml"),
         *TINY_DET_SCHEDULES[1], *device, "MODEL.WEIGHTS", os.path.join(s1, "model_final.pth"),
         "OUTPUT_DIR", s2],
        commands,
    )  # fmt: skip
    results = {"stage1": stage1, "disalign": disalign, "commands": commands}
    with open(os.path.join(out, "det_results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def run_tiny(part: str, args, out: str) -> dict:
    """One framework's tiny stage 1 -> stage 2 -> evaluation on the device; its metrics."""
    folder = os.path.join(out, "tiny", part)
    os.makedirs(folder, exist_ok=True)
    log_path = os.path.join(out, "logs", f"tiny_{part}.log")
    start = time.time()
    if part == "det":
        spec = dict(kind="tiny_det", out=folder, device=args.device)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    else:
        script = os.path.join(TOOLS_DEMO, f"{part}_demo.py")
        cmd = [sys.executable, script, "--quick", "--output", folder]
    with open(log_path, "w") as f:
        proc = subprocess.run(cmd, env=device_env(args.device), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(open(log_path).read().splitlines()[-30:])
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n--- {log_path}:\n{tail}")
    with open(os.path.join(folder, f"{part}_results.json")) as f:
        results = json.load(f)
    return {
        "stage1": {k: results["stage1"][k] for k in TINY_METRICS[part]},
        "disalign": {k: results["disalign"][k] for k in TINY_METRICS[part]},
        "seconds": round(time.time() - start, 1),
        "log": log_path,
    }


# ----------------------------------------------------------------------------- report
def environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}", gpus=torch.cuda.device_count())  # fmt: skip
    return env


def tables(results: dict) -> str:
    mib = 2**20
    lines = [
        "| family | precision | stage-1 it. | stage-2 it. | no-grad fwd | stage 2 / stage 1 | "
        "stage 2 / no-grad | peak MiB s1 / s2 / no-grad (max allocated) | "
        "rise MiB s1 / s2 / no-grad |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.get("cost", {}).items():
        for precision in PRECISIONS:
            if precision not in r:
                continue
            c = r[precision]
            peak = " / ".join(
                f"{c[m].get('max_memory_allocated_bytes', float('nan')) / mib:.0f}" for m in MODES
            )
            rise = " / ".join(f"{c[m]['peak_bytes'] / mib:.0f}" for m in MODES)
            times = " | ".join(f"{c[m]['median_s'] * 1000:.0f} ms" for m in MODES)
            ratio = c["ratios"]
            lines.append(
                f"| {name} | {precision} | {times} | {ratio['stage2_over_stage1_time']:.2f}x | "
                f"{ratio['stage2_over_nograd_time']:.2f}x | {peak} | {rise} |"
            )
    lines += ["", "| framework | metric | stage 1 | DisAlign | seconds |", "|---|---|---|---|---|"]
    for part, r in results.get("tiny", {}).items():
        for k in TINY_METRICS[part]:
            lines.append(
                f"| {part} | {k} | {r['stage1'][k]:.2f} | {r['disalign'][k]:.2f} | {r['seconds']} |"
            )
    return "\n".join(lines)


def plan(args, out: str) -> List[str]:
    """What a run does (and a check that the configs and scripts it needs exist)."""
    from full_size.families import config_paths, families

    lines = []
    if not args.skip_cost:
        for name in args.family:
            cfgs = config_paths(families()[name], BACKBONE)
            for p in cfgs.values():
                if not os.path.isfile(p):
                    raise FileNotFoundError(p)
            lines.append(
                f"cost {name}@{BACKBONE}: {os.path.relpath(cfgs['stage1'], ROOT)} -> "
                f"{os.path.relpath(cfgs['stage2'], ROOT)}, {args.iters} iterations each, then "
                f"{'/'.join(MODES)} x {'/'.join(args.precision)}, {args.time_iters} timed "
                f"iterations each on {args.device}"
            )
    if not args.skip_tiny:
        for part in TINY_PARTS:
            script = os.path.join(TOOLS_DEMO, f"{part}_demo.py")
            if not os.path.isfile(script):
                raise FileNotFoundError(script)
            lines.append(f"tiny {part}: {os.path.relpath(script, ROOT)} --quick on {args.device}")
    lines.append(f"results: {os.path.join(out, 'gpu_check.json')} and gpu_check.md")
    return lines


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        if spec.get("kind") == "tiny_det":
            tiny_det_worker(spec)
        else:
            if "full_size_args" in spec:
                spec["full_size_args"] = argparse.Namespace(**spec["full_size_args"])
            print(json.dumps(cost_worker(spec)))
        return 0

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # this process and every child: CPU only
    import torch

    out = os.path.abspath(args.out)
    if args.device == "cuda" and not torch.cuda.is_available() and not args.dry_run:
        print(
            "gpu_check: no CUDA GPU (torch.cuda.is_available() is False): nothing measured, "
            f"exit {NO_GPU_EXIT}; run it on a machine with a GPU (or --device cpu / --dry-run)"
        )
        return NO_GPU_EXIT
    steps = plan(args, out)
    print("gpu_check plan:\n  " + "\n  ".join(steps), flush=True)
    if args.dry_run:
        if args.device == "cuda" and not torch.cuda.is_available():
            print("gpu_check: --dry-run; no CUDA GPU here, so a real run would stop at once")
        return 0

    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    results: Dict[str, dict] = {"environment": environment(args.device), "cost": {}, "tiny": {}}
    failures, log = [], []
    path = os.path.join(out, "gpu_check.json")

    def save():
        results["failures"], results["log"] = failures, log
        with open(path, "w") as f:
            json.dump(results, f, indent=1)

    if not args.skip_cost:
        for name in args.family:
            print(f"\n=== cost {name}@{BACKBONE} on {args.device}", flush=True)
            try:
                results["cost"][f"{name}@{BACKBONE}"] = measure_family(name, args, out, log)
            except Exception as e:  # try every check, then fail
                failures.append(f"cost {name}: {type(e).__name__}: {e}")
                print(f"=== cost {name}: FAILED\n{e}", flush=True)
            save()
    if not args.skip_tiny:
        for part in TINY_PARTS:
            print(f"\n=== tiny {part} on {args.device}", flush=True)
            try:
                results["tiny"][part] = run_tiny(part, args, out)
            except Exception as e:
                failures.append(f"tiny {part}: {type(e).__name__}: {e}")
                print(f"=== tiny {part}: FAILED\n{e}", flush=True)
            save()
    save()
    text = tables(results)
    with open(os.path.join(out, "gpu_check.md"), "w") as f:
        f.write(text + "\n")
    print("\n" + text)
    print(f"\nwrote {path}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("gpu_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
