"""Helpers of the MMSegmentation plugin tests: tiny heads and segmentors (built through mmseg's
registry after ``init_default_scope('mmseg')``) and running the tools. A module of its own (not
conftest) so that test files of tests/det and tests/seg import their helpers by distinct names."""

import copy
import os
import subprocess
import sys

import mmseg.models  # noqa: E402,F401  registers mmseg's components

import disalign_seg  # noqa: E402,F401  registers the plugin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MMSEG_TOOLS = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "tools")
NUM_CLASSES = 5

FCN_HEAD = dict(
    type="FCNHead",
    in_channels=8,
    channels=4,
    num_convs=1,
    concat_input=False,
    num_classes=NUM_CLASSES,
    norm_cfg=dict(type="BN", requires_grad=True),
    align_corners=False,
)
ASPP_HEAD = dict(
    type="DepthwiseSeparableASPPHead",
    in_channels=8,
    in_index=1,
    channels=4,
    dilations=(1, 2),
    c1_in_channels=4,
    c1_channels=2,
    num_classes=NUM_CLASSES,
    norm_cfg=dict(type="BN", requires_grad=True),
    align_corners=False,
)


def tiny_segmentor_cfg(decode_head, aux_loss_weight=0.4, segmentor="EncoderDecoder", **extra):
    """A tiny EncoderDecoder config: ResNetV1c-18 with 8 base channels, BN."""
    norm = dict(type="BN", requires_grad=True)
    return dict(
        type=segmentor,
        data_preprocessor=dict(
            type="SegDataPreProcessor", mean=[0.0] * 3, std=[1.0] * 3, size_divisor=8
        ),
        backbone=dict(
            type="ResNetV1c",
            depth=18,
            stem_channels=8,
            base_channels=8,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm,
            contract_dilation=True,
        ),
        decode_head=dict(decode_head, in_channels=64, in_index=3, channels=8),
        auxiliary_head=dict(
            type="FCNHead",
            in_channels=32,
            in_index=2,
            channels=4,
            num_convs=1,
            concat_input=False,
            num_classes=NUM_CLASSES,
            norm_cfg=norm,
            loss_decode=dict(type="CrossEntropyLoss", loss_weight=aux_loss_weight),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
        **extra,
    )


def disalign_head_cfg(head_cfg, **kwargs):
    """The stage-2 form of a head config: same arguments, type DisAlignHead."""
    cfg = copy.deepcopy(head_cfg)
    return dict(cfg, type="DisAlignHead", head=cfg["type"], **kwargs)


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
