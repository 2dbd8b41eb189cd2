"""A tiny from-scratch backbone with detectron2's FPN on top, for CPU tests and demos.
Importing this module registers its two builders in detectron2's ``BACKBONE_REGISTRY``; they
read ``MODEL.TINY_BACKBONE`` (``add_tiny_backbone_config``).

No pretrained weights can be downloaded here, and FrozenBN from scratch diverges: this
backbone uses trainable BN or GN. Its features are named like ResNet's (res2..res5, strides
4..32) so detectron2's FPN configs apply unchanged.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from torch import Tensor, nn

__all__ = ["TinyConvNet", "build_disalign_tiny_backbone", "build_disalign_tiny_fpn_backbone"]


class TinyConvNet(Backbone):
    """Stem (stride 2) and four stages of two 3x3 convs each, the first with stride 2.

    Args:
        in_channels (int): image channels.
        widths (sequence of int): channels of res2..res5.
        norm (str): detectron2 norm name ("BN", "GN", "SyncBN", "").
        out_features (sequence of str): which of res2..res5 to return.
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128),
        norm: str = "BN",
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
    ):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must give 4 stage widths (res2..res5), got {list(widths)}")

        def conv(cin: int, cout: int, stride: int) -> Conv2d:
            layer = Conv2d(
                cin, cout, 3, stride=stride, padding=1, bias=not norm, norm=get_norm(norm, cout)
            )
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            return layer

        self.stem = conv(in_channels, widths[0], 2)
        self.stage_names = ["res2", "res3", "res4", "res5"]
        cin = widths[0]
        for name, width in zip(self.stage_names, widths):
            self.add_module(
                name, nn.Sequential(conv(cin, width, 2), nn.ReLU(), conv(width, width, 1))
            )
            cin = width
        self._out_features = list(out_features)
        self._out_feature_channels = dict(zip(self.stage_names, widths))
        self._out_feature_strides = {n: 2 ** (i + 2) for i, n in enumerate(self.stage_names)}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(N, 3, H, W) images -> {name: (N, C_name, H / stride, W / stride)}."""
        out = {}
        x = F.relu(self.stem(x))
        for name in self.stage_names:
            x = F.relu(getattr(self, name)(x))
            if name in self._out_features:
                out[name] = x
        return out

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_disalign_tiny_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """TinyConvNet from MODEL.TINY_BACKBONE (outputs MODEL.RESNETS.OUT_FEATURES)."""
    return TinyConvNet(
        input_shape.channels,
        cfg.MODEL.TINY_BACKBONE.WIDTHS,
        cfg.MODEL.TINY_BACKBONE.NORM,
        cfg.MODEL.RESNETS.OUT_FEATURES,
    )


@BACKBONE_REGISTRY.register()
def build_disalign_tiny_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """TinyConvNet with detectron2's FPN (MODEL.FPN.*) and a max-pooled P6, as
    ``build_resnet_fpn_backbone``."""
    return FPN(
        bottom_up=build_disalign_tiny_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
