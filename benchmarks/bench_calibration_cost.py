#!/usr/bin/env python
"""Cost of DisAlign, measured against the same model and data in the same run.

For detectron2 (the demo's tiny Faster R-CNN config) and MMSegmentation (the tiny FCN config):

1. one calibration-stage training iteration (everything frozen but alpha, beta and the
   confidence) against one stage-1 training iteration: median time and peak memory;
2. inference latency of the calibrated model against the same weights without calibration.

Each training configuration runs in its own process (peak memory is per process, see
benchmarks/common.py); the two inference models run interleaved in one process. Inputs are
random images (and random boxes / label maps) of the configs' size; the weights are random but
identical for both models of a pair.

    python benchmarks/bench_calibration_cost.py [--framework det seg] [--iters 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# common.py beside this script; the checkout's packages, whether or not this environment
# installed them all (disalign_demo).
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), ROOT]
from common import measure, ratio_line, run_isolated, time_calls  # noqa: E402

DET_STAGE1 = "configs/detectron2/demo/faster_rcnn_tiny_synth.yaml"
DET_STAGE2 = "configs/detectron2/demo/disalign_faster_rcnn_tiny_synth.yaml"
SEG_STAGE1 = "configs/mmseg/tiny/fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py"
SEG_STAGE2 = "configs/mmseg/tiny/disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py"


# ----------------------------------------------------------------------------- detectron2
def _det_model(config: str):
    import torch
    from detectron2.config import get_cfg

    from disalign_demo.det import add_tiny_backbone_config
    from disalign_det import add_disalign_config
    from disalign_det.engine import Trainer

    cfg = get_cfg()
    add_disalign_config(cfg)
    add_tiny_backbone_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.MODEL.DISALIGN.REWEIGHT:
        # Frequencies only set the loss weights; any long-tailed counts cost the same.
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "disalign_bench_counts.json")
        with open(path, "w") as f:
            json.dump([max(1, 400 // (i + 1)) for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)], f)
        cfg.MODEL.DISALIGN.FREQUENCY_FILE = path
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    return cfg, model, Trainer


def _det_batch(cfg, n: int, with_targets: bool):
    import torch
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    size = cfg.INPUT.MIN_SIZE_TEST
    batch = []
    for _ in range(n):
        d = {
            "image": torch.randint(0, 255, (3, size, size), generator=g).float(),
            "height": size,
            "width": size,
        }
        if with_targets:
            xy = torch.rand(4, 2, generator=g) * size * 0.6
            wh = 8 + torch.rand(4, 2, generator=g) * size * 0.3
            inst = Instances((size, size))
            inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1).clamp(max=size - 1))
            inst.gt_classes = torch.randint(0, cfg.MODEL.ROI_HEADS.NUM_CLASSES, (4,), generator=g)
            d["instances"] = inst
        batch.append(d)
    return batch


def det_train_worker(config: str, iters: int) -> dict:
    cfg, model, trainer_cls = _det_model(config)
    optimizer = trainer_cls.build_optimizer(cfg, model)
    batch = _det_batch(cfg, cfg.SOLVER.IMS_PER_BATCH, with_targets=True)
    model.train()
    from detectron2.utils.events import EventStorage

    def step():
        losses = sum(model(batch).values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()

    with EventStorage(0):
        return measure(step, iters, warmup=2)


def det_infer_worker(iters: int) -> dict:
    import torch

    cfg, plain, _ = _det_model(DET_STAGE1)
    _, calibrated, _ = _det_model(DET_STAGE2)
    # Same weights; the calibration starts at the identity, so both make the same detections.
    missing = calibrated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert all(".calibration." in k for k in missing), missing
    batch = _det_batch(cfg, 8, with_targets=False)
    plain.eval(), calibrated.eval()
    times = {"plain": [], "calibrated": []}
    with torch.no_grad():
        for _ in range(iters):  # interleaved rounds: both see the same machine state
            for name, m in (("plain", plain), ("calibrated", calibrated)):
                times[name] += time_calls(lambda: m(batch), 1, warmup=1)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


# ----------------------------------------------------------------------------- MMSegmentation
def _seg_model(config: str):
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import disalign_seg  # noqa: F401  (registration)

    cfg = Config.fromfile(os.path.join(ROOT, config))
    init_default_scope("mmseg")
    num_classes = cfg.model.decode_head.num_classes
    if cfg.model.decode_head.loss_decode.get("type") == "GRWCrossEntropyLoss":
        cfg.model.decode_head.loss_decode.class_frequencies = [
            max(1, 10000 // (i + 1) ** 2) for i in range(num_classes)
        ]
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if torch.cuda.is_available():
        model = model.cuda()
    return cfg, model


def _seg_batch(model, cfg, n: int, training: bool):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    g = torch.Generator().manual_seed(0)
    h, w = cfg.crop_size
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8))
        s = SegDataSample()
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, cfg.model.decode_head.num_classes, (1, h, w), generator=g)
        )
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(s)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=training)


def seg_train_worker(config: str, iters: int) -> dict:
    from mmengine.optim import build_optim_wrapper

    cfg, model = _seg_model(config)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = _seg_batch(model, cfg, cfg.train_dataloader.batch_size, training=True)
    model.train()

    def step():
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optim_wrapper.update_params(loss)

    return measure(step, iters, warmup=2)


def seg_infer_worker(iters: int) -> dict:
    import torch

    cfg, plain = _seg_model(SEG_STAGE1)
    _, calibrated = _seg_model(SEG_STAGE2)
    missing = calibrated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert all(".calibration." in k for k in missing), missing
    data = _seg_batch(plain, cfg, 8, training=False)
    plain.eval(), calibrated.eval()
    times = {"plain": [], "calibrated": []}
    with torch.no_grad():
        for _ in range(iters):
            for name, m in (("plain", plain), ("calibrated", calibrated)):
                times[name] += time_calls(lambda: m(**data, mode="predict"), 1, warmup=1)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


WORKERS = {
    ("det", "stage1"): lambda n: det_train_worker(DET_STAGE1, n),
    ("det", "calibration"): lambda n: det_train_worker(DET_STAGE2, n),
    ("det", "inference"): det_infer_worker,
    ("seg", "stage1"): lambda n: seg_train_worker(SEG_STAGE1, n),
    ("seg", "calibration"): lambda n: seg_train_worker(SEG_STAGE2, n),
    ("seg", "inference"): seg_infer_worker,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--framework", nargs="+", default=["det", "seg"], choices=["det", "seg"])
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[tuple(args.worker)](args.iters)))
        return 0

    me = os.path.abspath(__file__)
    results, lines = {}, []
    for fw in args.framework:
        r = {
            mode: run_isolated([me, "--worker", fw, mode, "--iters", str(args.iters)])
            for mode in ("stage1", "calibration", "inference")
        }
        results[fw] = r
        name = "detectron2" if fw == "det" else "MMSegmentation"
        s1, s2, inf = r["stage1"], r["calibration"], r["inference"]
        lines += [
            f"[{name}] stage-1 iteration {s1['median_s'] * 1e3:.1f} ms, peak +{s1['peak_bytes'] / 2**20:.1f} MiB; "
            f"calibration iteration {s2['median_s'] * 1e3:.1f} ms, peak +{s2['peak_bytes'] / 2**20:.1f} MiB",
            f"[{name}] "
            + ratio_line(
                "calibration / stage-1 iteration time", s2["median_s"], s1["median_s"], 0.5
            ),
            f"[{name}] "
            + ratio_line(
                "calibration / stage-1 peak memory", s2["peak_bytes"], s1["peak_bytes"], 0.6
            ),
            f"[{name}] inference plain {inf['plain'] * 1e3:.1f} ms, calibrated {inf['calibrated'] * 1e3:.1f} ms (batch 8)",
            f"[{name}] "
            + ratio_line(
                "calibrated / plain inference latency", inf["calibrated"], inf["plain"], 1.03
            ),
        ]
        print("\n".join(lines[-5:]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
