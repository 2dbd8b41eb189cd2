"""benchmarks/gpu_check.py on a machine without a GPU: the one-line exit, the plan (--dry-run),
and its cost worker (fp32 and AMP) on a tiny detectron2 model on CPU."""

import importlib.util
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.py")
DEMO_CONFIGS = os.path.join(REPO, "configs", "detectron2", "demo")


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_no_gpu_one_line_exit_0(tmp_path):
    proc = _run(["--out", str(tmp_path / "gpu")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU"), proc.stdout
    assert not (tmp_path / "gpu").exists()


def test_dry_run_prints_the_plan(tmp_path):
    proc = _run(["--out", str(tmp_path / "gpu"), "--device", "cpu", "--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("cost LVISv1/mask_rcnn@R_50: configs/detectron2/LVISv1/mask_rcnn_R_50_FPN_1x.yaml",
                 "cost ADE20K/fcn@R_50: configs/mmseg/fcn_r50-d8_4xb4-160k_ade20k-512x512.py",
                 "tiny det: tools/demo/det_demo.py", "tiny seg:", "tiny cls:"):  # fmt: skip
        assert text in proc.stdout
    assert not (tmp_path / "gpu").exists()


def test_cost_worker_det_fp32_and_amp_on_cpu(tmp_path, monkeypatch):
    """The worker's stage-1, stage-2 and no-grad steps, fp32 and AMP (bfloat16 on CPU), on
    the demo's tiny Faster R-CNN (5 classes) with a hand-made batch."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances

    from disalign_demo.det import add_tiny_backbone_config
    from disalign_det import add_disalign_config

    gpu_check = _load()
    monkeypatch.chdir(tmp_path)  # the worker changes directory
    torch.set_num_threads(1)
    stage1 = os.path.join(DEMO_CONFIGS, "faster_rcnn_tiny_synth.yaml")
    stage2 = os.path.join(DEMO_CONFIGS, "disalign_faster_rcnn_tiny_synth.yaml")
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", "5", "MODEL.DISALIGN.REWEIGHT", "False",
            "SOLVER.IMS_PER_BATCH", "2"]  # fmt: skip
    cfg = get_cfg()
    add_disalign_config(cfg)
    add_tiny_backbone_config(cfg)
    cfg.merge_from_file(stage1)
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    ckpt = str(tmp_path / "stage1.pth")
    torch.save({"model": build_model(cfg).state_dict()}, ckpt)
    batch = []
    for k in range(2):
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor([[4.0, 6.0, 30.0, 28.0], [30.0, 30.0, 60.0, 62.0]]))
        inst.gt_classes = torch.tensor([k, 4])
        image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
        batch.append({"image": image, "height": 64, "width": 64, "instances": inst})
    batch_file = str(tmp_path / "batch.pt")
    torch.save(batch, batch_file)

    results = {}
    for precision in ("fp32", "amp"):
        for mode in gpu_check.MODES:
            spec = dict(framework="det", mode=mode, precision=precision, device="cpu",
                        stage1_cfg=stage1, stage2_cfg=stage2, batch_file=batch_file,
                        checkpoint=ckpt, out=str(tmp_path), time_iters=1, opts=opts, demo=True)  # fmt: skip
            results[precision, mode] = gpu_check.cost_worker(spec)
    for (precision, mode), r in results.items():
        assert r["precision"] == precision and r["mode"] == mode and r["device"] == "cpu"
        assert r["median_s"] > 0 and r["iters"] == 1


def test_amp_on_cpu_is_bfloat16_without_scaler():
    autocast, scaler = _load()._amp("cpu")
    with autocast():
        y = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert y.dtype == torch.bfloat16 and not scaler.is_enabled()
