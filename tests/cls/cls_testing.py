"""Helpers of the MMPretrain plugin tests: tiny heads and classifiers (built through
MMPretrain's registry after ``init_default_scope('mmpretrain')``), a tiny generated dataset and
running the stock tools. A module of its own (not conftest) so that test files of tests/det,
tests/seg and tests/cls import their helpers by distinct names."""

import os
import subprocess
import sys

import mmpretrain
import mmpretrain.models  # noqa: F401  registers MMPretrain's components
import torch
from mmpretrain.structures import DataSample

import disalign_cls  # noqa: F401  registers the plugin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MMPRETRAIN_TOOLS = os.path.join(os.path.dirname(mmpretrain.__file__), ".mim", "tools")
TINY = os.path.join(REPO, "configs", "mmpretrain", "tiny")
NUM_CLASSES = 5
CHANNELS = 8
COUNTS = [150, 60, 25, 9, 3]  # many, medium, medium, few, few
CALIBRATION = {"alpha", "beta", "confidence_weight", "confidence_bias"}

LINEAR_HEAD = dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=CHANNELS)
COSINE_HEAD = dict(type="CosineClsHead", num_classes=NUM_CLASSES, in_channels=CHANNELS)
STACKED_HEAD = dict(
    type="StackedLinearClsHead",
    num_classes=NUM_CLASSES,
    in_channels=CHANNELS,
    mid_channels=[6],
    act_cfg=dict(type="ReLU"),
)


def disalign_head_cfg(head_cfg, **kwargs):
    """The stage-2 form of a head config: the same arguments, type DisAlignClsHead."""
    return dict(head_cfg, type="DisAlignClsHead", head=head_cfg["type"], **kwargs)


def tiny_classifier_cfg(head, classifier="ImageClassifier", **extra):
    """A tiny ImageClassifier config: ResNet-18 with 4 base channels (8-d feature), BN."""
    return dict(
        type=classifier,
        backbone=dict(type="ResNet", depth=18, stem_channels=4, base_channels=1, out_indices=(3,)),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(head, in_channels=CHANNELS),
        **extra,
    )


def batch(n=6, size=32, num_classes=NUM_CLASSES, seed=None):
    """A data batch as the dataloader gives it: uint8-range images and labelled samples."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    inputs = [torch.rand(3, size, size, generator=g) * 255 for _ in range(n)]
    labels = torch.randint(0, num_classes, (n,), generator=g)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return dict(inputs=inputs, data_samples=samples)


def run_tool(args, env=None, timeout=300):
    """Run a script with the test's Python, fail with its output on a non-zero exit."""
    full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable] + list(args),
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{out[-6000:]}"
    return out
