"""detectron2 demo scaffolding: a seeded long-tailed LVIS-format data generator and a tiny
from-scratch CPU backbone (with its ``MODEL.TINY_BACKBONE`` config keys).

Importing this package registers ``build_disalign_tiny_backbone`` and
``build_disalign_tiny_fpn_backbone`` in detectron2's ``BACKBONE_REGISTRY``. The configs under
``configs/detectron2/demo/`` and ``configs/detectron2/quick_schedules/`` use them: run those
with ``projects/DisAlign/train_net.py --demo``, or call ``add_tiny_backbone_config(cfg)``
before merging them.
"""

from .backbone import TinyConvNet, build_disalign_tiny_backbone, build_disalign_tiny_fpn_backbone
from .config import add_tiny_backbone_config
from .synthetic import generate_lvis_synthetic, long_tail_counts

__all__ = [
    "TinyConvNet",
    "add_tiny_backbone_config",
    "build_disalign_tiny_backbone",
    "build_disalign_tiny_fpn_backbone",
    "generate_lvis_synthetic",
    "long_tail_counts",
]
