"""Config keys of the demo's tiny backbone (``MODEL.TINY_BACKBONE``)."""

from detectron2.config import CfgNode as CN

__all__ = ["add_tiny_backbone_config"]


def add_tiny_backbone_config(cfg: CN) -> None:
    """Add the ``MODEL.TINY_BACKBONE`` node, read by ``build_disalign_tiny_backbone`` and
    ``build_disalign_tiny_fpn_backbone``, to ``cfg`` (in place)."""
    cfg.MODEL.TINY_BACKBONE = CN()
    # Channels of the four stages (strides 4, 8, 16, 32; named res2..res5 like ResNet's).
    cfg.MODEL.TINY_BACKBONE.WIDTHS = [16, 32, 64, 128]
    # Normalization after each conv: "BN", "GN", "SyncBN" or "" (FrozenBN diverges from scratch).
    cfg.MODEL.TINY_BACKBONE.NORM = "BN"
